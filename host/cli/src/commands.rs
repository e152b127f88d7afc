//! One module per top-level subcommand.

pub mod component;
pub mod config;
pub mod tool;
