//! One module per top-level subcommand.

pub mod catalog;
pub mod chat;
pub mod component;
pub mod config;
pub mod llm;
pub mod mcp;
pub mod memory;
pub mod model;
pub mod run;
pub mod runner;
pub mod schedule;
pub mod serve;
pub mod tool;
pub mod tui;
