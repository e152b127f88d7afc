//! Assembling the tool set: bundled components (from their manifest) plus third-party
//! components the operator configured, each under its grant and limits.

use crate::config::{AgentConfig, ComponentsConfig};
use crate::error::SetupError;
use oxydra_runtime::bundle::{self, BundleError};
use oxydra_runtime::{CallWeb, ComponentHost, ComponentSpec, HostConfig, Profile, ToolSpec};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `OXYDRA_COMPONENTS_DIR`, then `[components] bundled_dir`, then `components/` beside the binary.
pub fn bundled_dir(cfg: &ComponentsConfig) -> PathBuf {
    if let Some(d) = std::env::var_os("OXYDRA_COMPONENTS_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = &cfg.bundled_dir {
        return d.clone();
    }
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("components")))
        .unwrap_or_else(|| PathBuf::from("components"))
}

/// `[components] cache_dir`, then `$XDG_CACHE_HOME/oxydra/components`, then `~/.cache/...`.
pub fn cache_dir(cfg: &ComponentsConfig) -> Option<PathBuf> {
    if let Some(d) = &cfg.cache_dir {
        return Some(d.clone());
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("oxydra").join("components"))
}

pub fn host(cfg: &ComponentsConfig) -> Result<ComponentHost, SetupError> {
    ComponentHost::new(HostConfig {
        cache_dir: cache_dir(cfg),
        max_memory_mib: cfg.max_memory_mib(),
    })
    .map_err(|e| SetupError::Engine(format!("{e:#}")))
}

fn key(key: String, message: impl Into<String>) -> SetupError {
    SetupError::Key {
        key,
        message: message.into(),
    }
}

/// Every enabled tool's spec. `base_dir` resolves relative component paths.
pub fn specs(cfg: &AgentConfig, base_dir: Option<&Path>) -> Result<Vec<ToolSpec>, SetupError> {
    let comps = &cfg.components;
    let dir = bundled_dir(comps);
    // Installed components (`.oxydra/components.lock`), each checked against its pinned
    // digest on every load.
    let installed = crate::registry::installed_specs(cfg, base_dir, &crate::registry::store())
        .map_err(|e| SetupError::Refused(e.to_string()))?;
    let mut specs = match bundle::read_manifest(&dir) {
        Ok(manifest) => bundle::tool_specs(&dir, &manifest, |name| comps.limits_for(name))?,
        Err(e @ BundleError::Missing(_))
            if !comps.tools.values().any(|t| t.path.is_some()) && installed.is_empty() =>
        {
            return Err(e.into());
        }
        Err(BundleError::Missing(_)) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let mut installed_names = Vec::new();
    for (locked, spec) in installed {
        if specs.iter().any(|s| s.name == spec.name) {
            return Err(SetupError::Refused(format!(
                "components.lock: installed component `{}` has the name of a bundled tool; remove it",
                spec.name
            )));
        }
        installed_names.push(locked.name);
        specs.push(spec);
    }
    for (name, t) in &comps.tools {
        if installed_names.contains(name) {
            if t.path.is_some() {
                return Err(key(
                    format!("components.tools.{name}.path"),
                    format!(
                        "`{name}` is installed (components.lock); remove `path`, or remove the installed component"
                    ),
                ));
            }
            if t.grant.is_some() {
                return Err(key(
                    format!("components.tools.{name}.grant"),
                    format!(
                        "`{name}` is installed: its grant is pinned in components.lock, where an update changes it; remove the key"
                    ),
                ));
            }
            continue;
        }
        let bundled = specs.iter_mut().find(|s| &s.name == name);
        match (bundled, &t.path) {
            (_, Some(path)) => {
                let path = match base_dir {
                    Some(b) if path.is_relative() => b.join(path),
                    _ => path.clone(),
                };
                let wasm = std::fs::read(&path).map_err(|e| {
                    key(
                        format!("components.tools.{name}.path"),
                        format!("{}: {e}", path.display()),
                    )
                })?;
                let Some(grant) = t.grant else {
                    return Err(key(
                        format!("components.tools.{name}.grant"),
                        "is required for a component from a file",
                    ));
                };
                specs.retain(|s| &s.name != name);
                specs.push(ToolSpec {
                    name: name.clone(),
                    components: vec![ComponentSpec {
                        name: name.clone(),
                        wasm: Arc::new(wasm),
                        grant,
                        expected_sha256: None,
                    }],
                    limits: comps.limits_for(name),
                    web: Default::default(),
                });
            }
            (Some(spec), None) => {
                if let Some(grant) = t.grant {
                    if spec.components.len() != 1 {
                        return Err(key(
                            format!("components.tools.{name}.grant"),
                            format!("`{name}` is a two-step tool; its steps' grants are fixed"),
                        ));
                    }
                    spec.components[0].grant = grant;
                }
            }
            (None, None) => {
                return Err(key(
                    format!("components.tools.{name}"),
                    format!(
                        "there is no bundled tool named `{name}`; set `path` and `grant` to add a component"
                    ),
                ));
            }
        }
    }
    specs.retain(|s| comps.tools.get(&s.name).is_none_or(|t| t.enabled));
    for spec in &mut specs {
        web(cfg, spec)?;
        shell(cfg, spec);
    }
    specs.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(specs)
}

/// A `web`-profile tool gets the egress policy of `[tools.web]` (plus, for
/// `web_search`, its backends and their keys), its settings, and a deadline that covers
/// the requests one call may make in sequence unless the operator set one.
fn web(cfg: &AgentConfig, spec: &mut ToolSpec) -> Result<(), SetupError> {
    if !spec.components.iter().any(|c| c.grant == Profile::Web) {
        return Ok(());
    }
    let tools = &cfg.tools;
    let access = tools
        .access(&spec.name, |v| std::env::var(v).ok())
        .map_err(|(k, m)| key(k, m))?;
    if !explicit_deadline(cfg, &spec.name) {
        let per_request = access.timeout.as_millis() as u64;
        let needed = per_request
            .saturating_mul(tools.attempts(&spec.name))
            .saturating_add(5_000);
        spec.limits.deadline_ms = spec.limits.deadline_ms.max(needed);
    }
    spec.web = CallWeb {
        access: Some(Arc::new(access)),
        settings: tools.settings(&spec.name).map(Arc::from),
    };
    Ok(())
}

/// The operator set `[components.tools.<name>.limits] deadline_ms`.
fn explicit_deadline(cfg: &AgentConfig, name: &str) -> bool {
    cfg.components
        .tools
        .get(name)
        .is_some_and(|t| t.limits.deadline_ms.is_some())
}

/// A `shell`-profile tool's deadline covers the longest command it may ask the sidecar
/// for (the host waits that long for the answer), unless the operator set one.
fn shell(cfg: &AgentConfig, spec: &mut ToolSpec) {
    if !spec.components.iter().any(|c| c.grant == Profile::Shell) {
        return;
    }
    if !explicit_deadline(cfg, &spec.name) {
        let needed = u64::from(oxydra_runtime::capabilities::shell::MAX_TIMEOUT_MS) + 15_000;
        spec.limits.deadline_ms = spec.limits.deadline_ms.max(needed);
    }
}
