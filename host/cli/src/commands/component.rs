//! `oxydra-host component`: inspect a component file; install, list, update and remove
//! components from an OCI registry (or a file) under an explicit grant; push and sign
//! them for authors.

mod install;
mod manage;
mod publish;

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
    /// Install a tool component from a registry (oci://HOST[:PORT]/NAMESPACE/NAME:VERSION)
    /// or a .wasm file, under an explicit grant; pins it in .oxydra/components.lock.
    Install {
        /// oci://HOST[:PORT]/NAMESPACE/NAME:VERSION, or a path to a .wasm file.
        source: String,
        /// The profile to grant (file-read-only, web, ...). Without it, a terminal is
        /// asked to confirm the profile the component declares; anywhere else it is an error.
        #[arg(long, value_name = "PROFILE")]
        grant: Option<String>,
        /// Plain http to a registry that is not on loopback.
        #[arg(long)]
        insecure: bool,
    },
    /// Installed components: name, version, digest, source, profile, grant, signature.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove an installed component (its lock entry and stored bytes).
    Remove { name: String },
    /// Move installed components to the newest version their registry has (or
    /// --version); a changed profile needs the new grant.
    Update {
        /// One component; default: every component installed from a registry.
        name: Option<String>,
        /// The tag to move to, instead of the newest semver tag.
        #[arg(long, value_name = "TAG", requires = "name")]
        version: Option<String>,
        /// The grant for the new version (needed when its profile changed).
        #[arg(long, value_name = "PROFILE", requires = "name")]
        grant: Option<String>,
        #[arg(long)]
        insecure: bool,
    },
    /// Publish a component as a wasm OCI artifact (the layout wkg and oras use).
    Push {
        file: PathBuf,
        /// oci://HOST[:PORT]/NAMESPACE/NAME:VERSION
        reference: String,
        #[arg(long)]
        insecure: bool,
    },
    /// Sign a published component, cosign-compatibly (tag sha256-<digest>.sig).
    Sign {
        /// oci://HOST[:PORT]/NAMESPACE/NAME:VERSION
        reference: String,
        /// Private key (PKCS#8 PEM, from `component keygen`).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        #[arg(long)]
        insecure: bool,
    },
    /// Make a signing key pair: FILE (private, mode 0600) and FILE.pub (for [components.trust] keys).
    Keygen { file: PathBuf },
}

pub fn run(cmd: ComponentCommand, sources: &Sources) -> Result<(), Failure> {
    match cmd {
        ComponentCommand::Inspect { file, json } => inspect(file, json, sources),
        ComponentCommand::Install {
            source,
            grant,
            insecure,
        } => install::install(sources, &source, grant.as_deref(), insecure),
        ComponentCommand::List { json } => manage::list(json),
        ComponentCommand::Remove { name } => manage::remove(sources, &name),
        ComponentCommand::Update {
            name,
            version,
            grant,
            insecure,
        } => manage::update(
            sources,
            name.as_deref(),
            version.as_deref(),
            grant.as_deref(),
            insecure,
        ),
        ComponentCommand::Push {
            file,
            reference,
            insecure,
        } => publish::push(sources, &file, &reference, insecure),
        ComponentCommand::Sign {
            reference,
            key,
            insecure,
        } => publish::sign(sources, &reference, &key, insecure),
        ComponentCommand::Keygen { file } => publish::keygen(&file),
    }
}

fn inspect(file: PathBuf, json: bool, sources: &Sources) -> Result<(), Failure> {
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

/// `oxydra-host precompile` (hidden): compile every bundled component into the
/// component cache, so that the first load is a cache hit. `scripts/build-vm-images.sh`
/// runs it inside the micro_vm guest once (`vm-warm-cache`), where compiling is slow.
pub fn precompile(sources: &Sources) -> Result<(), Failure> {
    let agent = config::load_agent(sources)?.value;
    let dir = tools::bundled_dir(&agent.components);
    let host = tools::host(&agent.components)?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| Failure::new(exit::USAGE, format!("{}: {e}", dir.display())))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "wasm"))
        .collect();
    files.sort();
    let (mut compiled, mut cached) = (0, 0);
    for f in &files {
        let wasm = std::fs::read(f)
            .map_err(|e| Failure::new(exit::USAGE, format!("{}: {e}", f.display())))?;
        let name = f
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        match host.inspect(&name, &wasm) {
            Ok((_, oxydra_runtime::cache::CacheOutcome::Compiled { .. })) => compiled += 1,
            Ok(_) => cached += 1,
            Err(e) => {
                return Err(Failure::new(exit::REFUSED, format!("{}: {e}", f.display())));
            }
        }
    }
    let cache = tools::cache_dir(&agent.components)
        .map_or_else(|| "memory only".to_string(), |d| d.display().to_string());
    println!(
        "precompiled {} components from {} ({compiled} compiled, {cached} already cached) into {cache}",
        files.len(),
        dir.display()
    );
    Ok(())
}
