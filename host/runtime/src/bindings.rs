//! Every `bindgen!` of the host (WIT 0.1). One macro carries the WIT path list, and the
//! worlds are split by direction:
//!
//! - [`imports`]: ONE union world of every oxydra interface any tool profile may import.
//!   It generates each capability's host trait and `add_to_linker` exactly once; which
//!   of them a profile's linker gets is decided by the profile table, not by bindings.
//! - [`tool`], [`step`], [`provider`]: export-only worlds, one per export kind, that
//!   reuse the union world's types through `with`. They are only typed views of a
//!   component's exports (`*Pre::new` checks the exports, never the imports).
//!
//! The profile worlds of `wit/v0.1/profiles` stay the contract for component authors;
//! the host enforces them with the profile table and per-profile linkers instead of one
//! generated world each. The rest of the host uses the conversions in this module,
//! never the generated types directly.

/// `bindgen!` over the host's WIT packages; the arguments are the remaining options.
macro_rules! oxydra_bindgen {
    ($($options:tt)*) => {
        wasmtime::component::bindgen!({
            path: [
                "../../wit/deps/io.wit",
                "../../wit/deps/clocks.wit",
                "../../wit/deps/random.wit",
                "../../wit/deps/filesystem.wit",
                "../../wit/deps/sockets.wit",
                "../../wit/deps/cli.wit",
                "../../wit/deps/http.wit",
                "../../wit/v0.1/tool",
                "../../wit/v0.1/fs",
                "../../wit/v0.1/vault",
                "../../wit/v0.1/llm",
                "../../wit/v0.1/agent",
                "../../wit/v0.1/scheduler",
                "../../wit/v0.1/memory",
                "../../wit/v0.1/channel",
                "../../wit/v0.1/shell",
                "../../wit/v0.1/profiles",
            ],
            $($options)*
        });
    };
}

/// The union of every capability a tool profile may import.
pub mod imports {
    oxydra_bindgen!(
        inline: "
            package oxydra:host@0.1.0;
            world tool-imports {
                import oxydra:tool/types@0.1.0;
                import oxydra:fs/types@0.1.0;
                import oxydra:fs/read@0.1.0;
                import oxydra:fs/write@0.1.0;
                import oxydra:vault/read@0.1.0;
                import oxydra:agent/delegate@0.1.0;
                import oxydra:scheduler/jobs@0.1.0;
                import oxydra:memory/store@0.1.0;
                import oxydra:channel/outbox@0.1.0;
                import oxydra:shell/exec@0.1.0;
                import oxydra:tool/settings@0.1.0;
            }
        ",
        world: "oxydra:host/tool-imports",
    );
}

/// A tool's export, `oxydra:tool/tool`.
pub mod tool {
    oxydra_bindgen!(
        inline: "
            package oxydra:host@0.1.0;
            world tool-export {
                export oxydra:tool/tool@0.1.0;
            }
        ",
        world: "oxydra:host/tool-export",
        with: {
            "oxydra:tool/types": super::imports::oxydra::tool::types,
        },
    );
}

/// A step's export, `oxydra:tool/step`.
pub mod step {
    oxydra_bindgen!(
        inline: "
            package oxydra:host@0.1.0;
            world step-export {
                export oxydra:tool/step@0.1.0;
            }
        ",
        world: "oxydra:host/step-export",
        with: {
            "oxydra:tool/types": super::imports::oxydra::tool::types,
        },
    );
}

/// A provider's export, `oxydra:llm/provider` (its `wasi:http` imports are linked from
/// wasmtime-wasi-http, see `llm.rs`).
pub mod provider {
    oxydra_bindgen!(
        inline: "
            package oxydra:host@0.1.0;
            world provider-export {
                export oxydra:llm/provider@0.1.0;
            }
        ",
        world: "oxydra:host/provider-export",
    );
}

/// What a channel component imports from the host, `oxydra:channel/host` (its
/// `wasi:http` is linked from wasmtime-wasi-http, see `channels.rs`).
pub mod channel_imports {
    oxydra_bindgen!(
        inline: "
            package oxydra:host@0.1.0;
            world channel-imports {
                import oxydra:channel/host@0.1.0;
            }
        ",
        world: "oxydra:host/channel-imports",
    );
}

/// A channel's export, `oxydra:channel/channel`.
pub mod channel {
    oxydra_bindgen!(
        inline: "
            package oxydra:host@0.1.0;
            world channel-export {
                export oxydra:channel/channel@0.1.0;
            }
        ",
        world: "oxydra:host/channel-export",
        with: {
            "oxydra:channel/types": super::channel_imports::oxydra::channel::types,
        },
    );
}

pub use imports::oxydra::agent::delegate::{Delegation, Outcome};
/// `oxydra:scheduler/jobs`: the host's [`crate::scheduling::Jobs`] speaks these types.
pub mod jobs {
    pub use super::imports::oxydra::scheduler::jobs::{
        CadenceKind, Job, JobStatus, NewJob, Notify, OutputPage, Page, Patch, Query, Run, RunStatus,
    };
}
/// `oxydra:memory/store`: the host's [`crate::memory::Memory`] speaks these types.
pub mod memory {
    pub use super::imports::oxydra::memory::store::{Hit, Note, Query, Source};
}
pub use imports::oxydra::fs::types::{Entry, EntryKind, FsError, Metadata};
pub use imports::oxydra::tool::types::{SafetyTier, ToolError, ToolInfo};
pub use imports::oxydra::vault::read::VaultError;
