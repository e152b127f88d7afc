//! Bindings for every host import a tool may call. A component imports only the
//! functions it actually calls, so binding the union here widens no grant.

wit_bindgen::generate!({
    path: ["../../wit/v0.1/tool", "../../wit/v0.1/fs", "../../wit/v0.1/vault", "../../wit/v0.1/sdk"],
    world: "oxydra:sdk/guest-imports",
    generate_all,
});
