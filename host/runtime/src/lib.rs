//! Oxydra's component host: the wasmtime engine, the profile linkers, the capability
//! implementations, limits, and the compiled-component cache.

pub mod bindings;
pub mod bundle;
pub mod cache;
pub mod capabilities;
pub mod delegation;
pub mod engine;
pub mod host;
mod kernel;
pub mod limits;
mod linker;
pub mod llm;
pub mod profiles;
mod state;
mod tools;

pub use capabilities::paths::Workspace;
pub use host::{
    CallError, ComponentHost, ComponentSpec, HostConfig, LoadedTool, Tier, ToolDescriptor, ToolSpec,
};
pub use limits::Limits;
pub use profiles::{LoadError, Profile};
