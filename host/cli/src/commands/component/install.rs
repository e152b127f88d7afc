//! `component install`: the operator's side. Nothing is installed without an explicit
//! grant, and the declared profile is shown before the component's bytes are downloaded.

use crate::{Failure, exit};
use oxydra_registry::RegistryError;
use oxydra_registry::lock::Locked;
use oxydra_runtime::Profile;
use oxydra_runtime::bundle;
use oxydra_session::config::{self, AgentConfig, Sources};
use oxydra_session::registry::{self, InstallError, Installer, Resolved, Signature, Source};
use oxydra_session::tools;
use std::io::{BufRead, IsTerminal, Write};

/// An install error as the CLI shows it, with its exit code.
pub fn failure(e: InstallError) -> Failure {
    match e {
        InstallError::Refused(m) => Failure::new(exit::REFUSED, m),
        InstallError::Usage(m) => Failure::new(exit::USAGE, m),
        InstallError::Registry(r) => registry_failure(r),
    }
}

pub fn registry_failure(r: RegistryError) -> Failure {
    let code = match &r {
        RegistryError::BadReference { .. } | RegistryError::Warg { .. } => exit::USAGE,
        RegistryError::NotWasm { .. }
        | RegistryError::Digest { .. }
        | RegistryError::TooLarge { .. } => exit::REFUSED,
        _ => exit::TOOL_ERROR,
    };
    let mut m = r.to_string();
    if let RegistryError::Unreachable {
        message, registry, ..
    } = &r
        && (message.contains("TLS") || message.contains("certificate"))
    {
        m.push_str(&format!(
            "; for a private or self-signed CA set ca_file under [components.registries.\"{registry}\"]"
        ));
    }
    if matches!(r, RegistryError::Other(ref o) if o.starts_with("refusing plain http")) {
        m.push_str(
            "; pass --insecure, or set insecure = true under [components.registries.\"HOST\"]",
        );
    }
    Failure::new(code, m)
}

pub fn parse_grant(s: &str) -> Result<Profile, Failure> {
    Profile::parse(s).ok_or_else(|| {
        Failure::new(
            exit::USAGE,
            format!(
                "--grant {s}: not a profile; profiles: {}",
                Profile::ALL
                    .iter()
                    .map(|p| p.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    })
}

fn interactive() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

fn confirm(question: &str) -> bool {
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    matches!(line.trim(), "y" | "Y" | "yes" | "YES" | "Yes")
}

pub(super) fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(12)]
}

/// What the source says, before its bytes are fetched.
pub(super) fn show(resolved: &Resolved) {
    println!("source:      {}", resolved.source_text);
    if let Source::Oci(r) = &resolved.source
        && let Some(p) = r.package()
    {
        println!("package:     {p}");
    }
    if let Some(d) = &resolved.manifest_digest {
        println!("manifest:    {d}");
    }
    if let Some(l) = &resolved.layer {
        println!("layer:       {} ({} bytes)", l.digest, l.size);
    }
    match &resolved.signature {
        Signature::Verified { fingerprint, key } => {
            println!("signature:   verified with {key} ({fingerprint})")
        }
        Signature::Unsigned { reason } => {
            println!("signature:   none verified ({reason})");
            eprintln!(
                "warning: {} is not signed by a trusted key ([components.trust] mode = \"warn\"): {reason}",
                resolved.source_text
            );
        }
        Signature::NotChecked => {
            println!("signature:   not checked ([components.trust] mode = \"off\")")
        }
    }
    let d = &resolved.declared;
    match (&d.profile, &d.problem) {
        (Some(p), _) => println!(
            "declares:    profile {p} (from its own list of imports; checked against the real ones after download)"
        ),
        (None, Some(why)) => println!("declares:    no usable profile: {why}"),
        (None, None) => println!("declares:    nothing"),
    }
    // The WASI base (io, cli stdio, clocks, random) and type-only interfaces every
    // profile has are left out: what is shown is what needs a grant.
    for i in d.imports.iter().filter(|i| {
        !(["wasi:io/", "wasi:cli/", "wasi:clocks/", "wasi:random/"]
            .iter()
            .any(|p| i.starts_with(p))
            || i.contains("/types@"))
    }) {
        println!("  import     {i}");
    }
}

pub(super) fn installer<'a>(
    cfg: &'a AgentConfig,
    base_dir: Option<std::path::PathBuf>,
    insecure: bool,
) -> Result<Installer<'a>, Failure> {
    let host = tools::host(&cfg.components)?;
    Ok(Installer {
        cfg,
        base_dir,
        host,
        insecure,
    })
}

/// The grant: `--grant`, a terminal's confirmation of the declared profile, or an error
/// saying what to pass.
pub(super) fn decide_grant(
    flag: Option<&str>,
    resolved: &Resolved,
    what: &str,
    changed_from: Option<&Locked>,
) -> Result<Profile, Failure> {
    if let Some(g) = flag {
        let grant = parse_grant(g)?;
        if let Some(shape) = &resolved.declared.shape
            && let Err(e) = shape.check_grant(what, grant)
        {
            return Err(Failure::new(
                exit::REFUSED,
                format!(
                    "{}: by its own declaration, {e}; nothing was downloaded",
                    resolved.source_text
                ),
            ));
        }
        return Ok(grant);
    }
    let Some(p) = resolved.declared.profile else {
        return Err(Failure::new(
            exit::REFUSED,
            format!(
                "{}: it declares no profile this host grants ({}); nothing was installed",
                resolved.source_text,
                resolved
                    .declared
                    .problem
                    .as_deref()
                    .unwrap_or("no imports listed")
            ),
        ));
    };
    let change = changed_from
        .map(|old| {
            format!(
                " (it had profile `{}`, granted `{}`)",
                old.profile, old.grant
            )
        })
        .unwrap_or_default();
    if interactive() {
        if confirm(&format!("grant `{p}` to {what}{change}?")) {
            return Ok(p);
        }
        return Err(Failure::new(
            exit::USAGE,
            "not granted; nothing was changed",
        ));
    }
    Err(Failure::new(
        exit::USAGE,
        format!(
            "{what} declares profile `{p}`{change}, and no grant was given: pass --grant {p} to grant it (nothing was changed)"
        ),
    ))
}

fn bundled_names(cfg: &AgentConfig) -> Vec<String> {
    let dir = tools::bundled_dir(&cfg.components);
    bundle::read_manifest(&dir)
        .map(|m| m.tools.into_iter().map(|t| t.name).collect())
        .unwrap_or_default()
}

pub fn install(
    sources: &Sources,
    source: &str,
    grant: Option<&str>,
    insecure: bool,
) -> Result<(), Failure> {
    let loaded = config::load_agent(sources)?;
    let cfg = &loaded.value;
    let source = Source::parse(source).map_err(failure)?;
    let inst = installer(cfg, loaded.base_dir.clone(), insecure)?;
    let store = registry::store();
    let lock = store.read().map_err(registry_failure)?;
    let mut resolved = inst.resolve(&source).map_err(failure)?;
    show(&resolved);
    if let Some(same) = lock.components.iter().find(|c| {
        c.source == resolved.source_text
            && c.layer_digest
                == resolved
                    .layer
                    .as_ref()
                    .map(|l| l.digest.clone())
                    .unwrap_or_default()
    }) {
        println!(
            "already installed: {} {}",
            same.name,
            same.version.as_deref().unwrap_or("")
        );
        return Ok(());
    }
    let what = match &resolved.source {
        Source::Oci(r) => r.default_name(),
        Source::File(_) => resolved.source_text.clone(),
    };
    let grant = decide_grant(grant, &resolved, &what, None)?;
    let checked = inst.check(&mut resolved, grant, None).map_err(failure)?;
    let name = checked.name.clone();
    if bundled_names(cfg).contains(&name) {
        return Err(Failure::new(
            exit::REFUSED,
            format!(
                "{}: it is the tool `{name}`, which is bundled; nothing was installed",
                resolved.source_text
            ),
        ));
    }
    if cfg
        .components
        .tools
        .get(&name)
        .is_some_and(|t| t.path.is_some())
    {
        return Err(Failure::new(
            exit::USAGE,
            format!(
                "`{name}` is configured from a file ([components.tools.{name}] path); remove that entry first"
            ),
        ));
    }
    if let Some(old) = lock.components.iter().find(|c| c.name == name) {
        return Err(Failure::new(
            exit::USAGE,
            format!(
                "`{name}` is installed already ({} from {}): `oxydra-host component update {name}` moves it to another version, `component remove {name}` removes it",
                old.version.as_deref().unwrap_or("a file"),
                old.source
            ),
        ));
    }
    if Some(checked.profile) != resolved.declared.profile {
        eprintln!(
            "warning: its real imports need profile `{}`, not the `{}` its config declares",
            checked.profile,
            resolved
                .declared
                .profile
                .map_or("none".to_string(), |p| p.to_string())
        );
    }
    let entry = inst.commit(&store, &resolved, &checked).map_err(failure)?;
    println!(
        "installed {} {}({}) granted {}",
        entry.name,
        entry
            .version
            .as_deref()
            .map(|v| format!("{v} "))
            .unwrap_or_default(),
        short(&entry.layer_digest),
        entry.grant
    );
    if entry.grant == oxydra_runtime::Profile::ChatChannel.name() {
        println!(
            "use it in the user's file (users/<id>.toml): [channels.telegram] component = \"{}\"",
            entry.name
        );
    }
    if entry.grant == oxydra_runtime::Profile::LlmProvider.name() {
        println!(
            "use it in agent.toml: [providers.registry.<name>] component = \"{}\"",
            entry.name
        );
    }
    Ok(())
}
