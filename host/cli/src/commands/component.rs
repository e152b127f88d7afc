//! `oxydra-host component inspect`.

use crate::{Failure, exit};
use clap::Subcommand;
use oxydra_runtime::cache::sha256_hex;
use oxydra_runtime::profiles::SUPPORTED_WIT;
use oxydra_session::config::{self, Sources};
use oxydra_session::tools;
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
    let (imports, exports) = host
        .interfaces(&name, &wasm)
        .map_err(|e| Failure::new(exit::REFUSED, e.to_string()))?;
    let verdict = host.inspect(&name, &wasm).map(|(shape, _)| shape);
    let profile = verdict.as_ref().ok().and_then(|s| s.derived_profile());
    // Read from the export name, so it shows even for a refused component.
    let wit_version = exports
        .iter()
        .find_map(|e| {
            e.strip_prefix("oxydra:tool/tool@")
                .or_else(|| e.strip_prefix("oxydra:tool/step@"))
                .or_else(|| e.strip_prefix("oxydra:llm/provider@"))
        })
        .unwrap_or("unknown (exports no oxydra interface)")
        .to_string();
    let refused = verdict.as_ref().err().map(|e| e.to_string());
    if json {
        let v = serde_json::json!({
            "file": file.display().to_string(),
            "sha256": sha256_hex(&wasm),
            "size": wasm.len(),
            "imports": imports,
            "exports": exports,
            "wit_version": wit_version,
            "profile": profile.map(|p| p.name()),
            "refused": refused,
        });
        println!("{v:#}");
        return refused.map_or(Ok(()), |r| Err(Failure::new(exit::REFUSED, r)));
    }
    println!("file:        {}", file.display());
    println!("size:        {} bytes", wasm.len());
    println!("sha256:      {}", sha256_hex(&wasm));
    println!("wit version: {wit_version} (this host supports {SUPPORTED_WIT})");
    match (profile, &refused) {
        (Some(p), _) => {
            println!("profile:     {p} (the narrowest profile that grants its imports)")
        }
        (None, Some(_)) => println!("profile:     none (refused, see below)"),
        (None, None) => println!("profile:     none: no single profile grants all of its imports"),
    }
    println!("imports:");
    for i in &imports {
        println!("  {i}");
    }
    println!("exports:");
    for e in &exports {
        println!("  {e}");
    }
    refused.map_or(Ok(()), |r| Err(Failure::new(exit::REFUSED, r)))
}
