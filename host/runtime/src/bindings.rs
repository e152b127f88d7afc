//! Every `bindgen!` of the host, one module per profile world (WIT 0.1). The rest of the
//! host uses the conversions in this module, never the generated types directly.

/// `file-read-write`: generates `oxydra:fs/{types,read,write}` and the tool export.
pub mod file_read_write {
    wasmtime::component::bindgen!({
        path: ["../../wit/deps/io.wit", "../../wit/deps/clocks.wit", "../../wit/deps/random.wit", "../../wit/deps/filesystem.wit", "../../wit/deps/sockets.wit", "../../wit/deps/cli.wit", "../../wit/deps/http.wit", "../../wit/v0.1/tool", "../../wit/v0.1/fs", "../../wit/v0.1/vault", "../../wit/v0.1/llm", "../../wit/v0.1/agent", "../../wit/v0.1/profiles"],
        world: "oxydra:profiles/file-read-write",
    });
}

/// `file-read-only`: reuses the interfaces generated above.
pub mod file_read_only {
    wasmtime::component::bindgen!({
        path: ["../../wit/deps/io.wit", "../../wit/deps/clocks.wit", "../../wit/deps/random.wit", "../../wit/deps/filesystem.wit", "../../wit/deps/sockets.wit", "../../wit/deps/cli.wit", "../../wit/deps/http.wit", "../../wit/v0.1/tool", "../../wit/v0.1/fs", "../../wit/v0.1/vault", "../../wit/v0.1/llm", "../../wit/v0.1/agent", "../../wit/v0.1/profiles"],
        world: "oxydra:profiles/file-read-only",
        with: {
            "oxydra:fs/types": super::file_read_write::oxydra::fs::types,
            "oxydra:fs/read": super::file_read_write::oxydra::fs::read,
            "oxydra:tool/types": super::file_read_write::oxydra::tool::types,
        },
    });
}

/// `vault-read-step`: generates `oxydra:vault/read` and the step export.
pub mod vault_read_step {
    wasmtime::component::bindgen!({
        path: ["../../wit/deps/io.wit", "../../wit/deps/clocks.wit", "../../wit/deps/random.wit", "../../wit/deps/filesystem.wit", "../../wit/deps/sockets.wit", "../../wit/deps/cli.wit", "../../wit/deps/http.wit", "../../wit/v0.1/tool", "../../wit/v0.1/fs", "../../wit/v0.1/vault", "../../wit/v0.1/llm", "../../wit/v0.1/agent", "../../wit/v0.1/profiles"],
        world: "oxydra:profiles/vault-read-step",
        with: {
            "oxydra:tool/types": super::file_read_write::oxydra::tool::types,
        },
    });
}

/// `vault-write-step`.
pub mod vault_write_step {
    wasmtime::component::bindgen!({
        path: ["../../wit/deps/io.wit", "../../wit/deps/clocks.wit", "../../wit/deps/random.wit", "../../wit/deps/filesystem.wit", "../../wit/deps/sockets.wit", "../../wit/deps/cli.wit", "../../wit/deps/http.wit", "../../wit/v0.1/tool", "../../wit/v0.1/fs", "../../wit/v0.1/vault", "../../wit/v0.1/llm", "../../wit/v0.1/agent", "../../wit/v0.1/profiles"],
        world: "oxydra:profiles/vault-write-step",
        with: {
            "oxydra:fs/types": super::file_read_write::oxydra::fs::types,
            "oxydra:fs/write": super::file_read_write::oxydra::fs::write,
            "oxydra:tool/types": super::file_read_write::oxydra::tool::types,
        },
    });
}

/// `delegation`: generates `oxydra:agent/delegate`.
pub mod delegation {
    wasmtime::component::bindgen!({
        path: ["../../wit/deps/io.wit", "../../wit/deps/clocks.wit", "../../wit/deps/random.wit", "../../wit/deps/filesystem.wit", "../../wit/deps/sockets.wit", "../../wit/deps/cli.wit", "../../wit/deps/http.wit", "../../wit/v0.1/tool", "../../wit/v0.1/fs", "../../wit/v0.1/vault", "../../wit/v0.1/llm", "../../wit/v0.1/agent", "../../wit/v0.1/profiles"],
        world: "oxydra:profiles/delegation",
        with: {
            "oxydra:tool/types": super::file_read_write::oxydra::tool::types,
        },
    });
}

/// `llm-provider`: the provider export; its WASI imports are wasmtime-wasi(-http)'s.
pub mod llm_provider {
    wasmtime::component::bindgen!({
        path: ["../../wit/deps/io.wit", "../../wit/deps/clocks.wit", "../../wit/deps/random.wit", "../../wit/deps/filesystem.wit", "../../wit/deps/sockets.wit", "../../wit/deps/cli.wit", "../../wit/deps/http.wit", "../../wit/v0.1/tool", "../../wit/v0.1/fs", "../../wit/v0.1/vault", "../../wit/v0.1/llm", "../../wit/v0.1/agent", "../../wit/v0.1/profiles"],
        world: "oxydra:profiles/llm-provider",
        with: {
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        },
        require_store_data_send: true,
    });
}

pub use file_read_write::oxydra::fs::types::{Entry, EntryKind, FsError, Metadata};
pub use file_read_write::oxydra::tool::types::{SafetyTier, ToolError, ToolInfo};
pub use vault_read_step::oxydra::vault::read::VaultError;
