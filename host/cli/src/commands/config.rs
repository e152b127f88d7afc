//! `oxydra-host config validate`.

use crate::Failure;
use clap::Subcommand;
use oxydra_session::config::{self, Sources};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Load every layer of agent.toml and runner.toml, and every users/<id>.toml, and
    /// report the first mistake with its file and key.
    Validate,
}

pub fn run(cmd: ConfigCommand, sources: &Sources) -> Result<(), Failure> {
    let ConfigCommand::Validate = cmd;
    let agent = config::load_agent(sources)?;
    let runner = config::load_runner(sources)?;
    let mut users = Vec::new();
    for (id, r) in &runner.value.users {
        let base = runner
            .base_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("."));
        let path = match &r.config_path {
            Some(p) if p.is_relative() => base.join(p),
            Some(p) => p.clone(),
            None => base.join("users").join(format!("{id}.toml")),
        };
        if r.config_path.is_none() && !path.exists() {
            // A user without a file gets the defaults.
            continue;
        }
        config::load_user(&path)?;
        users.push(path.display().to_string());
    }
    if let Some(d) = &runner.base_dir {
        let dir = d.join("users");
        if let Ok(entries) = std::fs::read_dir(&dir) {
            let mut extra: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .filter(|p| !users.contains(&p.display().to_string()))
                .collect();
            extra.sort();
            for p in extra {
                config::load_user(&p)?;
                users.push(p.display().to_string());
            }
        }
    }
    println!("configuration is valid");
    println!(
        "agent.toml layers:  {}",
        agent
            .layers
            .iter()
            .map(|l| l.name.as_str())
            .collect::<Vec<_>>()
            .join(" → ")
    );
    println!(
        "runner.toml layers: {}",
        runner
            .layers
            .iter()
            .map(|l| l.name.as_str())
            .collect::<Vec<_>>()
            .join(" → ")
    );
    if !users.is_empty() {
        println!("user files:         {}", users.join(", "));
    }
    println!(
        "selection:          {} / {}",
        agent.value.selection.provider, agent.value.selection.model
    );
    Ok(())
}
