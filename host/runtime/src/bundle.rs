//! The bundled components: built by `scripts/build.sh` into a directory beside the
//! binary, listed in `manifest.json` with their sha256 and the profile each is granted.
//! A file whose hash does not match the manifest is refused at load.

use crate::host::{ComponentSpec, ToolSpec};
use crate::limits::Limits;
use crate::profiles::{Profile, SUPPORTED_WIT, wit_version_supported};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub wit_version: String,
    pub tools: Vec<ManifestTool>,
    /// Provider adapters by `provider_type` (openai, openai_responses, anthropic, gemini).
    #[serde(default)]
    pub providers: Vec<ManifestProvider>,
    /// Chat channel components by name (telegram).
    #[serde(default)]
    pub channels: Vec<ManifestChannel>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestChannel {
    pub name: String,
    pub file: String,
    pub sha256: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestProvider {
    pub provider_type: String,
    pub file: String,
    pub sha256: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestTool {
    pub name: String,
    pub components: Vec<ManifestComponent>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestComponent {
    pub file: String,
    pub sha256: String,
    pub grant: Profile,
}

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error(
        "no bundled components at {0}: build them with `scripts/build.sh`, or point OXYDRA_COMPONENTS_DIR at a directory holding manifest.json"
    )]
    Missing(PathBuf),
    #[error("{path}: {message}")]
    Bad { path: PathBuf, message: String },
    #[error(
        "{path}: the bundle was built against oxydra WIT `{found}`; this host supports oxydra WIT {SUPPORTED_WIT}: \
         rebuild it with scripts/build.sh"
    )]
    WitVersion { path: PathBuf, found: String },
}

pub const MANIFEST: &str = "manifest.json";

/// Read `dir/manifest.json`, refusing a bundle built against a WIT version outside
/// [`crate::profiles::supported_wit`].
pub fn read_manifest(dir: &Path) -> Result<Manifest, BundleError> {
    let path = dir.join(MANIFEST);
    let text =
        std::fs::read_to_string(&path).map_err(|_| BundleError::Missing(dir.to_path_buf()))?;
    let manifest: Manifest = serde_json::from_str(&text).map_err(|e| BundleError::Bad {
        path: path.clone(),
        message: e.to_string(),
    })?;
    check_wit_version(&path, &manifest)?;
    Ok(manifest)
}

/// The manifest's `wit_version` must be a semver version the host supports.
pub fn check_wit_version(path: &Path, manifest: &Manifest) -> Result<(), BundleError> {
    if wit_version_supported(&manifest.wit_version) {
        Ok(())
    } else {
        Err(BundleError::WitVersion {
            path: path.to_path_buf(),
            found: manifest.wit_version.clone(),
        })
    }
}

/// One bundled component found by its key among `entries` (key, file, sha256): its
/// bytes and expected sha256, or an error naming what is bundled.
fn bundled<'a>(
    dir: &Path,
    what: &str,
    key: &str,
    mut entries: impl Iterator<Item = (&'a str, &'a str, &'a str)> + Clone,
) -> Result<(Arc<Vec<u8>>, String), BundleError> {
    let Some((_, file, sha)) = entries.clone().find(|(k, _, _)| *k == key) else {
        return Err(BundleError::Bad {
            path: dir.join(MANIFEST),
            message: format!(
                "no bundled {what} `{key}` (bundled: {})",
                entries
                    .by_ref()
                    .map(|(k, _, _)| k)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    };
    let path = dir.join(file);
    let wasm = std::fs::read(&path).map_err(|e| BundleError::Bad {
        path: path.clone(),
        message: e.to_string(),
    })?;
    Ok((Arc::new(wasm), sha.to_string()))
}

/// The bundled channel component `name` and its manifest sha256.
pub fn channel_component(
    dir: &Path,
    manifest: &Manifest,
    name: &str,
) -> Result<(Arc<Vec<u8>>, String), BundleError> {
    let entries = manifest
        .channels
        .iter()
        .map(|c| (c.name.as_str(), c.file.as_str(), c.sha256.as_str()));
    bundled(dir, "channel component", name, entries)
}

/// The adapter for `provider_type`: its bytes and expected sha256.
pub fn provider_component(
    dir: &Path,
    manifest: &Manifest,
    provider_type: &str,
) -> Result<(Arc<Vec<u8>>, String), BundleError> {
    let entries = manifest
        .providers
        .iter()
        .map(|p| (p.provider_type.as_str(), p.file.as_str(), p.sha256.as_str()));
    bundled(
        dir,
        "provider component for provider_type",
        provider_type,
        entries,
    )
}

/// Turn the manifest into tool specs, reading each component file.
pub fn tool_specs(
    dir: &Path,
    manifest: &Manifest,
    limits_for: impl Fn(&str) -> Limits,
) -> Result<Vec<ToolSpec>, BundleError> {
    let mut specs = Vec::new();
    for tool in &manifest.tools {
        let mut components = Vec::new();
        for (i, c) in tool.components.iter().enumerate() {
            let path = dir.join(&c.file);
            let wasm = std::fs::read(&path).map_err(|e| BundleError::Bad {
                path: path.clone(),
                message: e.to_string(),
            })?;
            let name = if tool.components.len() > 1 {
                format!("{}#step{}", tool.name, i + 1)
            } else {
                tool.name.clone()
            };
            components.push(ComponentSpec {
                name,
                wasm: Arc::new(wasm),
                grant: c.grant,
                expected_sha256: Some(c.sha256.clone()),
            });
        }
        specs.push(ToolSpec {
            name: tool.name.clone(),
            components,
            limits: limits_for(&tool.name),
            web: Default::default(),
        });
    }
    Ok(specs)
}
