//! Bindings for every host import a tool may call. A component imports only the
//! functions it actually calls, so binding the union here widens no grant.

wit_bindgen::generate!({
    path: ["wit/v0.1/tool", "wit/v0.1/fs", "wit/v0.1/vault", "wit/v0.1/llm", "wit/v0.1/agent", "wit/v0.1/sdk"],
    world: "oxydra:sdk/guest-imports",
    generate_all,
});

/// `oxydra:llm/types` only: no functions, so no imports.
#[cfg(feature = "llm")]
pub mod llm {
    wit_bindgen::generate!({
        path: ["wit/v0.1/tool", "wit/v0.1/fs", "wit/v0.1/vault", "wit/v0.1/llm", "wit/v0.1/agent", "wit/v0.1/sdk"],
        world: "oxydra:sdk/llm-types",
        generate_all,
        // No function uses these types here; the adapters and the export glue do.
        generate_unused_types: true,
    });
}
