//! `oxydra-host component inspect`.

use crate::config::{self, Sources};
use crate::{Failure, exit, tools};
use clap::Subcommand;
use oxydra_runtime::cache::sha256_hex;
use oxydra_runtime::profiles::SUPPORTED_WIT;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum ComponentCommand {
    /// Imports, exports, the profile it needs, and the WIT version it was built against.
    Inspect {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: ComponentCommand, sources: &Sources) -> Result<(), Failure> {
    let ComponentCommand::Inspect { file, json } = cmd;
    let agent = config::load_agent(sources)?.value;
    let wasm = std::fs::read(&file)
        .map_err(|e| Failure::new(exit::USAGE, format!("{}: {e}", file.display())))?;
    let host = tools::host(&agent.components)?;
    let name = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (shape, _) = host
        .inspect(&name, &wasm)
        .map_err(|e| Failure::new(exit::REFUSED, e.to_string()))?;
    let profile = shape.derived_profile();
    if json {
        let v = serde_json::json!({
            "file": file.display().to_string(),
            "sha256": sha256_hex(&wasm),
            "size": wasm.len(),
            "imports": shape.imports,
            "exports": shape.exports,
            "wit_version": shape.wit_version,
            "profile": profile.map(|p| p.name()),
        });
        println!("{v:#}");
        return Ok(());
    }
    println!("file:        {}", file.display());
    println!("size:        {} bytes", wasm.len());
    println!("sha256:      {}", sha256_hex(&wasm));
    println!(
        "wit version: {} (this host supports {SUPPORTED_WIT})",
        shape.wit_version
    );
    match profile {
        Some(p) => println!("profile:     {p} (the narrowest profile that grants its imports)"),
        None => println!("profile:     none: no single profile grants all of its imports"),
    }
    println!("imports:");
    for i in &shape.imports {
        println!("  {i}");
    }
    println!("exports:");
    for e in &shape.exports {
        println!("  {e}");
    }
    Ok(())
}
