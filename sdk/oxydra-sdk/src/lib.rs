//! Write Oxydra tools as WebAssembly components without touching WIT.
//!
//! ```ignore
//! use oxydra_sdk::{tool, ToolError};
//!
//! /// Count the lines of a text file.
//! #[tool(tier = "read-only")]
//! fn line_count(
//!     /// Virtual path, e.g. /shared/notes.md
//!     path: String,
//! ) -> Result<String, ToolError> {
//!     let text = oxydra_sdk::fs::read_to_string(&path, 1 << 20)?;
//!     Ok(text.lines().count().to_string())
//! }
//!
//! oxydra_sdk::export_tool!(LineCount);
//! ```
//!
//! The `#[tool]` attribute derives the JSON Schema from the signature and doc comments;
//! `export_tool!` emits the component glue for `oxydra:tool/tool@0.1.0`. The component
//! imports only the host functions its code calls, and the host grants it the
//! narrowest profile that covers them.
//!
//! What a tool can call, by module:
//!
//! - [`fs`], [`vault`], [`agent`]: workspace files, the vault, delegation.
//! - [`settings`]: the operator's `[tools.<tool_name>]` table from `agent.toml`, as JSON
//!   (never secrets).
//! - [`web`] (feature `web`): HTTP GET through the host's egress policy, for tools in
//!   the `web` profile (`web_fetch`, `web_search`).
//! - [`scheduler`] (feature `scheduler`): the calling user's scheduled jobs, for the
//!   tools of the `scheduler` profile (`schedule_create`, …).
//! - [`memory`] (feature `memory`): the calling user's notes and the calling session's
//!   scratchpad, for the tools of the `memory` profile (`memory_search`, …).
//! - [`url`]: form-urlencoding of query values and resolving relative links; plain
//!   functions, no host calls.
//! - [`llm`] (feature `llm`): writing an LLM provider adapter.
//! - [`channel`] (feature `channel`): writing a chat channel (Telegram): the
//!   `oxydra:channel` types, the host's emit/state/log, HTTP helpers, and
//!   `export_channel!`.

// The derive macros name `::oxydra_sdk::…`; this lets the SDK use them itself (the
// schedule_* argument enums in `scheduler`).
extern crate self as oxydra_sdk;

pub mod agent;
mod bindings;
#[cfg(feature = "channel")]
pub mod channel;
mod error;
pub mod fs;
#[cfg(any(feature = "llm", feature = "web", feature = "channel"))]
mod http_target;
#[cfg(feature = "llm")]
pub mod llm;
#[cfg(feature = "memory")]
pub mod memory;
#[cfg(feature = "outbox")]
pub mod outbox;
#[cfg(feature = "scheduler")]
pub mod scheduler;
mod schema;
pub mod settings;
#[cfg(feature = "shell")]
pub mod shell;
pub mod url;
mod validate;
pub mod vault;
#[cfg(feature = "web")]
pub mod web;

pub use error::ToolError;
pub use oxydra_sdk_macros::{
    ToolEnum, export_channel, export_provider, export_step, export_tool, tool,
};
pub use schema::ArgSchema;
pub use validate::validate_arguments;

/// The WIT version of `oxydra:tool` this SDK builds components against. The host reads it
/// from the component's export name (`oxydra:tool/tool@0.1.0`) before instantiating.
pub const WIT_VERSION: &str = "0.1.0";

/// How much a call can change the world.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SafetyTier {
    ReadOnly,
    SideEffecting,
    Privileged,
}

/// A tool: what `#[tool]` implements for you.
pub trait Tool {
    const NAME: &'static str;
    const DESCRIPTION: &'static str;
    const TIER: SafetyTier;
    /// JSON Schema of the arguments object.
    fn schema() -> serde_json::Value;
    /// `arguments` is the JSON object the model sent.
    fn invoke(arguments: &str) -> Result<String, ToolError>;
}

/// What one step of a multi-step tool returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepOutput {
    /// Handed to the next step as its input.
    pub data: Vec<u8>,
    /// Shown to the model when this is the last step.
    pub message: String,
}

/// What a step function receives besides its arguments.
#[derive(Debug, Clone, Default)]
pub struct StepContext {
    /// Shared by every step of one call; use it in logs and messages.
    pub operation_id: String,
    /// The previous step's `data` (empty for the first step).
    pub input: Vec<u8>,
}

/// One step of a multi-step tool (see `oxydra:tool/step`). Its arguments schema is the
/// tool's: every step receives the same arguments.
pub trait Step {
    const NAME: &'static str;
    const DESCRIPTION: &'static str;
    const TIER: SafetyTier;
    fn schema() -> serde_json::Value;
    fn run(operation_id: &str, arguments: &str, input: Vec<u8>) -> Result<StepOutput, ToolError>;
}

/// Parse `arguments`, check it against `schema`, and deserialize it.
/// Used by the code `#[tool]` generates.
pub fn parse_arguments<T: serde::de::DeserializeOwned>(
    arguments: &str,
    schema: &serde_json::Value,
) -> Result<T, ToolError> {
    let value: serde_json::Value = serde_json::from_str(arguments)
        .map_err(|e| ToolError::InvalidArguments(format!("arguments are not valid JSON: {e}")))?;
    validate_arguments(&value, schema)?;
    serde_json::from_value(value).map_err(|e| ToolError::InvalidArguments(e.to_string()))
}

#[doc(hidden)]
pub mod __private {
    pub use serde;
    pub use serde_json;
    pub use wit_bindgen;
}
