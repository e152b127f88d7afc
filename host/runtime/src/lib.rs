//! Oxydra's component host: the wasmtime engine, the profile linkers, the capability
//! implementations, limits, and the compiled-component cache.
//!
//! Layout: `kernel` is the core (engine, cache, the one checked load, the one trap
//! classifier); `tools` and `llm` are the kinds built on it, each with its own linker and
//! store state; `host` is the public facade over them. What a profile or a capability
//! is lives in two tables, `profiles::PROFILES` and `capabilities::CAPABILITIES`
//! (docs/adr/0007-profiles-as-data.md).

pub mod bindings;
pub mod bundle;
pub mod cache;
pub mod capabilities;
pub mod channels;
pub mod context;
pub mod delegation;
pub mod engine;
pub mod host;
mod kernel;
pub mod limits;
mod linker;
pub mod llm;
pub mod memory;
pub mod profiles;
pub mod scheduling;
mod state;
mod tools;

pub use capabilities::paths::Workspace;
pub use capabilities::web::{Resolver, WebAccess};
pub use context::CallContext;
pub use host::{
    CallError, ComponentHost, ComponentSpec, ExternalTool, HostConfig, LoadedTool, Tier,
    ToolDescriptor, ToolSource, ToolSpec,
};
pub use limits::Limits;
pub use profiles::{LoadError, Profile};
pub use state::CallWeb;
