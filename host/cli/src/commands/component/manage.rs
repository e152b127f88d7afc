//! `component list`, `update` and `remove`: what is installed, moving it to another
//! version (a changed profile needs the new grant), and taking it away.

use super::install::{decide_grant, failure, installer, registry_failure, short, show};
use crate::{Failure, exit};
use oxydra_registry::Reference;
use oxydra_registry::lock::Locked;
use oxydra_runtime::Profile;
use oxydra_session::config::{self, Sources};
use oxydra_session::registry::{self, Installer, Source};

pub fn list(json: bool) -> Result<(), Failure> {
    let lock = registry::store().read().map_err(registry_failure)?;
    if json {
        let v: Vec<serde_json::Value> = lock
            .components
            .iter()
            .map(|c| {
                serde_json::json!({
                    "name": c.name, "version": c.version, "source": c.source,
                    "manifest_digest": c.manifest_digest, "layer_digest": c.layer_digest,
                    "size": c.size, "profile": c.profile, "grant": c.grant,
                    "wit_version": c.wit_version, "signed_by": c.signed_by,
                    "installed_at": c.installed_at,
                })
            })
            .collect();
        println!("{:#}", serde_json::Value::Array(v));
        return Ok(());
    }
    if lock.components.is_empty() {
        println!("no components installed (.oxydra/components.lock)");
        return Ok(());
    }
    println!(
        "{:<20} {:<10} {:<13} {:<16} {:<16} {:<8} SOURCE",
        "NAME", "VERSION", "DIGEST", "PROFILE", "GRANTED", "SIGNED"
    );
    for c in &lock.components {
        println!(
            "{:<20} {:<10} {:<13} {:<16} {:<16} {:<8} {}",
            c.name,
            c.version.as_deref().unwrap_or("-"),
            short(&c.layer_digest),
            c.profile,
            c.grant,
            if c.signed_by.is_some() { "yes" } else { "no" },
            c.source
        );
    }
    Ok(())
}

pub fn remove(sources: &Sources, name: &str) -> Result<(), Failure> {
    let store = registry::store();
    let _guard = store.exclusive().map_err(registry_failure)?;
    let mut lock = store.read().map_err(registry_failure)?;
    let Some(i) = lock.components.iter().position(|c| c.name == name) else {
        let known: Vec<&str> = lock.components.iter().map(|c| c.name.as_str()).collect();
        return Err(Failure::new(
            exit::USAGE,
            format!(
                "no installed component `{name}` (installed: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
        ));
    };
    let old = lock.components.remove(i);
    store.write(&lock).map_err(registry_failure)?;
    store.collect_garbage(&lock);
    println!(
        "removed {} {}",
        old.name,
        old.version.as_deref().unwrap_or("")
    );
    if let Ok(loaded) = config::load_agent(sources)
        && loaded.value.components.tools.contains_key(name)
    {
        eprintln!(
            "note: [components.tools.{name}] is still in the config; remove it (there is no tool `{name}` any more)"
        );
    }
    Ok(())
}

/// The newest semver tag above `current` (pre-releases only when `current` is one).
fn newest(tags: &[String], current: &str) -> Option<String> {
    let cur = semver::Version::parse(current).ok()?;
    tags.iter()
        .filter_map(|t| semver::Version::parse(t).ok().map(|v| (v, t)))
        .filter(|(v, _)| *v > cur && (v.pre.is_empty() || !cur.pre.is_empty()))
        .max_by(|a, b| a.0.cmp(&b.0))
        .map(|(_, t)| t.clone())
}

pub fn update(
    sources: &Sources,
    name: Option<&str>,
    version: Option<&str>,
    grant: Option<&str>,
    insecure: bool,
) -> Result<(), Failure> {
    let loaded = config::load_agent(sources)?;
    let cfg = &loaded.value;
    let store = registry::store();
    let lock = store.read().map_err(registry_failure)?;
    let targets: Vec<Locked> = match name {
        Some(n) => match lock.components.iter().find(|c| c.name == n) {
            Some(c) => vec![c.clone()],
            None => {
                return Err(Failure::new(
                    exit::USAGE,
                    format!(
                        "no installed component `{n}`; `component list` shows what is installed"
                    ),
                ));
            }
        },
        None => lock
            .components
            .iter()
            .filter(|c| c.source.starts_with("oci://"))
            .cloned()
            .collect(),
    };
    let inst = installer(cfg, loaded.base_dir.clone(), insecure)?;
    let mut failures = Vec::new();
    for old in targets {
        if let Err(f) = update_one(&inst, &store, &old, version, grant) {
            if name.is_some() {
                return Err(f);
            }
            eprintln!("error: {}: {}", old.name, f.message);
            failures.push(f);
        }
    }
    match failures.into_iter().max_by_key(|f| f.code) {
        Some(f) => Err(Failure::new(
            f.code,
            "some components were not updated (see above)",
        )),
        None => Ok(()),
    }
}

fn update_one(
    inst: &Installer,
    store: &oxydra_registry::lock::Store,
    old: &Locked,
    version: Option<&str>,
    grant: Option<&str>,
) -> Result<(), Failure> {
    if !old.source.starts_with("oci://") {
        return Err(Failure::new(
            exit::USAGE,
            format!(
                "`{}` was installed from a file ({}); install the new file after `component remove {}`",
                old.name, old.source, old.name
            ),
        ));
    }
    let r = Reference::parse(&old.source).map_err(registry_failure)?;
    let tag = match (version, &old.version) {
        (Some(v), _) => v.to_string(),
        (None, None) => {
            return Err(Failure::new(
                exit::USAGE,
                format!(
                    "`{}` was installed by digest ({}), so it follows no tag: pass --version TAG",
                    old.name, old.source
                ),
            ));
        }
        (None, Some(_)) => {
            let client = registry::client(
                &inst.cfg.components,
                inst.base_dir.as_deref(),
                &r,
                inst.insecure,
            )
            .map_err(failure)?;
            let tags = client.tags(&r).map_err(registry_failure)?;
            let current = old.version.clone().unwrap_or_default();
            newest(&tags, &current).unwrap_or(current)
        }
    };
    let target = r.with_tag(&tag);
    let mut resolved = inst
        .resolve(&Source::Oci(target.clone()))
        .map_err(failure)?;
    if resolved.manifest_digest == old.manifest_digest {
        println!(
            "{} {} is up to date ({})",
            old.name,
            tag,
            short(&old.layer_digest)
        );
        return Ok(());
    }
    show(&resolved);
    let old_profile = Profile::parse(&old.profile);
    let old_grant = Profile::parse(&old.grant);
    let explicit = grant.is_some();
    let g = match (grant, resolved.declared.profile) {
        (Some(_), _) => decide_grant(grant, &resolved, &old.name, Some(old))?,
        (None, Some(p)) if Some(p) == old_profile => old_grant.ok_or_else(|| {
            Failure::new(
                exit::REFUSED,
                format!(
                    "components.lock grants `{}` to `{}`, which is not a profile",
                    old.grant, old.name
                ),
            )
        })?,
        (None, _) => {
            println!(
                "profile:     changed: {} → {}",
                old.profile,
                resolved
                    .declared
                    .profile
                    .map_or("none".into(), |p| p.to_string())
            );
            decide_grant(None, &resolved, &format!("{} {tag}", old.name), Some(old))?
        }
    };
    let checked = inst
        .check(&mut resolved, g, Some(&old.name))
        .map_err(failure)?;
    if Some(checked.profile) != old_profile
        && !explicit
        && Some(checked.profile) != resolved.declared.profile
    {
        return Err(Failure::new(
            exit::REFUSED,
            format!(
                "{}: its real imports need profile `{}` (it had `{}`; its config declared `{}`): pass --grant {} to accept it; nothing was changed",
                resolved.source_text,
                checked.profile,
                old.profile,
                resolved
                    .declared
                    .profile
                    .map_or("none".into(), |p| p.to_string()),
                checked.profile
            ),
        ));
    }
    let entry = inst.commit(store, &resolved, &checked).map_err(failure)?;
    println!(
        "updated {} {} → {} ({}) granted {}",
        entry.name,
        old.version.as_deref().unwrap_or("?"),
        entry.version.as_deref().unwrap_or("?"),
        short(&entry.layer_digest),
        entry.grant
    );
    Ok(())
}
