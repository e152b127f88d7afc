//! The MCP client: tools from Model Context Protocol servers, each a tool named
//! `<server>__<tool>` with the server's JSON Schema, called by the agent like any tool
//! (arguments checked at the host, output bounded and scrubbed).
//!
//! - A stdio server runs as a child that confines itself before it executes the
//!   server (`oxydra-host mcp-exec`: rlimits, no_new_privs, Landlock to the directories
//!   its config names, seccomp with no network sockets), with no environment but what
//!   its config lists.
//! - An HTTP server is reached through a forwarder that holds it to the web tools'
//!   egress policy (`[tools.web]`), with the credentials its config names added by the
//!   host.
//! - Each server is supervised: started again with backoff when it stops, its tools
//!   answering with a clear error meanwhile; `tools/list_changed` refreshes its tools.

pub mod config;
mod forward;
pub mod launch;
mod result;
mod server;

pub use config::{McpConfig, ServerConfig};
pub use launch::{BRIDGE_DIR_ENV, BRIDGE_ENV, PLAN_ENV, StdioCommand};
pub use server::{Launcher, Manager, Options, ServerStatus, ToolInfo};
