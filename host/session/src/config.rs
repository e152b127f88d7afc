//! Layered configuration: built-in defaults → `/etc/oxydra` → `~/.config/oxydra` →
//! `./.oxydra` → `OXYDRA__A__B` environment variables → `--set a.b=value` flags.
//!
//! Every layer is checked on its own before it is merged (unknown keys and wrong types
//! are errors that name the file or variable, the key, and the line), so a mistake is
//! reported where it was made.

pub mod agent;
mod layers;
pub mod memory;
pub mod runner;
pub mod scheduler;
pub mod web;

pub use agent::{AgentConfig, ComponentsConfig};
pub use layers::{ConfigError, Sources, load_agent, load_runner, load_user};
pub use runner::{RunnerConfig, UserConfig};
pub use scheduler::SchedulerConfig;
pub use web::ToolsConfig;
