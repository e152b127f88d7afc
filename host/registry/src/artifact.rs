//! The wasm OCI artifact layout (the CNCF TAG Runtime wasm OCI artifact spec, as `wkg`,
//! `oci-wasm` and `oras` write it): an OCI image manifest whose config has media type
//! `application/vnd.wasm.config.v0+json` and lists the component's imports and exports,
//! and exactly one layer of media type `application/wasm`: the component's bytes.
//!
//! The config's import list is what the component *declares*: shown before the layer is
//! downloaded, never trusted. The host reads the real imports from the layer.

use crate::reference::digest_ok;
use crate::{Reference, RegistryError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
pub const LAYER_MEDIA_TYPE: &str = "application/wasm";
/// The manifest's `artifactType`, as `wkg` and the spec's examples set it.
pub const ARTIFACT_TYPE: &str = "application/wasm";
/// The annotation `oras pull` names the layer's file by.
pub const TITLE: &str = "org.opencontainers.image.title";
pub const VERSION: &str = "org.opencontainers.image.version";
pub const CREATED: &str = "org.opencontainers.image.created";

/// Manifests larger than this are refused (real ones are under 2 KiB).
pub const MAX_MANIFEST_BYTES: u64 = 4 << 20;
/// Configs larger than this are refused (a list of interface names).
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// Components larger than this are refused before download (the bundled ones are 0.1–2 MiB).
pub const MAX_LAYER_BYTES: u64 = 256 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

impl Descriptor {
    pub fn of(media_type: &str, bytes: &[u8]) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest: sha256_digest(bytes),
            size: bytes.len() as u64,
            annotations: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// `application/vnd.wasm.config.v0+json`, field for field as `oci-wasm` writes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WasmConfig {
    #[serde(default)]
    pub created: Option<String>,
    #[serde(default)]
    pub author: Option<String>,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub layer_digests: Vec<String>,
    #[serde(default)]
    pub component: Option<ComponentInfo>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ComponentInfo {
    #[serde(default)]
    pub exports: Vec<String>,
    #[serde(default)]
    pub imports: Vec<String>,
    #[serde(default)]
    pub target: Option<String>,
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn not_wasm(reference: &Reference, message: impl Into<String>) -> RegistryError {
    RegistryError::NotWasm {
        reference: reference.to_string(),
        message: message.into(),
    }
}

/// Parse a manifest and check it is a wasm component artifact; returns it and its one
/// `application/wasm` layer.
pub fn check_manifest(
    reference: &Reference,
    bytes: &[u8],
    content_type: Option<&str>,
) -> Result<(Manifest, Descriptor), RegistryError> {
    let v: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| not_wasm(reference, format!("its manifest is not JSON ({e})")))?;
    let media_type = v
        .get("mediaType")
        .and_then(|m| m.as_str())
        .or(content_type)
        .unwrap_or(MANIFEST_MEDIA_TYPE);
    if media_type == INDEX_MEDIA_TYPE
        || media_type == "application/vnd.docker.distribution.manifest.list.v2+json"
    {
        return Err(not_wasm(
            reference,
            "it is an image index (several platforms), not one wasm artifact manifest",
        ));
    }
    if media_type != MANIFEST_MEDIA_TYPE {
        return Err(not_wasm(
            reference,
            format!("its manifest has media type `{media_type}`, not {MANIFEST_MEDIA_TYPE}"),
        ));
    }
    let m: Manifest = serde_json::from_value(v)
        .map_err(|e| not_wasm(reference, format!("its manifest is malformed ({e})")))?;
    if m.config.media_type != CONFIG_MEDIA_TYPE {
        return Err(not_wasm(
            reference,
            format!(
                "its config has media type `{}`, not {CONFIG_MEDIA_TYPE} (a container image, or an artifact of another kind)",
                m.config.media_type
            ),
        ));
    }
    let wasm: Vec<&Descriptor> = m
        .layers
        .iter()
        .filter(|l| l.media_type == LAYER_MEDIA_TYPE)
        .collect();
    let [layer] = wasm.as_slice() else {
        return Err(not_wasm(
            reference,
            format!(
                "it has {} layers of media type {LAYER_MEDIA_TYPE}; a component artifact has exactly one",
                wasm.len()
            ),
        ));
    };
    if m.layers.len() != 1 {
        return Err(not_wasm(
            reference,
            format!(
                "it has {} layers ({}); a component artifact has exactly one, of media type {LAYER_MEDIA_TYPE}",
                m.layers.len(),
                m.layers
                    .iter()
                    .map(|l| l.media_type.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    for d in [&m.config, *layer] {
        if !digest_ok(&d.digest) {
            return Err(not_wasm(
                reference,
                format!("`{}` is not a sha256 digest this host can verify", d.digest),
            ));
        }
    }
    if layer.size > MAX_LAYER_BYTES {
        return Err(RegistryError::TooLarge {
            reference: reference.to_string(),
            what: "the component layer".into(),
            size: layer.size,
            limit: MAX_LAYER_BYTES,
        });
    }
    let layer = (*layer).clone();
    Ok((m, layer))
}

/// Parse the config blob (already digest-checked by the caller).
pub fn parse_config(reference: &Reference, bytes: &[u8]) -> Result<WasmConfig, RegistryError> {
    serde_json::from_slice(bytes).map_err(|e| {
        not_wasm(
            reference,
            format!("its {CONFIG_MEDIA_TYPE} config is malformed ({e})"),
        )
    })
}

/// What `component push` uploads: the config and the manifest, both as bytes (their
/// digests are what the registry and a signature name).
pub struct Built {
    pub config: Vec<u8>,
    pub manifest: Vec<u8>,
    pub layer: Descriptor,
}

/// The artifact for `wasm` with its real imports and exports; `title` names the layer's
/// file for `oras pull`, `version` is the tag when it is a semver version.
pub fn build(
    wasm: &[u8],
    imports: Vec<String>,
    exports: Vec<String>,
    title: &str,
    version: Option<&str>,
) -> Result<Built, RegistryError> {
    let created = crate::time::now_rfc3339();
    let mut layer = Descriptor::of(LAYER_MEDIA_TYPE, wasm);
    let config = WasmConfig {
        created: Some(created.clone()),
        author: None,
        architecture: "wasm".into(),
        os: "wasip2".into(),
        layer_digests: vec![layer.digest.clone()],
        component: Some(ComponentInfo {
            exports,
            imports,
            target: None,
        }),
    };
    let config = serde_json::to_vec(&config).map_err(|e| RegistryError::other(e.to_string()))?;
    layer.annotations = Some(BTreeMap::from([(TITLE.to_string(), title.to_string())]));
    let mut annotations = BTreeMap::from([(CREATED.to_string(), created)]);
    if let Some(v) = version {
        annotations.insert(VERSION.to_string(), v.to_string());
    }
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(MANIFEST_MEDIA_TYPE.into()),
        artifact_type: Some(ARTIFACT_TYPE.into()),
        config: Descriptor::of(CONFIG_MEDIA_TYPE, &config),
        layers: vec![layer.clone()],
        annotations: Some(annotations),
    };
    let manifest =
        serde_json::to_vec(&manifest).map_err(|e| RegistryError::other(e.to_string()))?;
    Ok(Built {
        config,
        manifest,
        layer,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn r() -> Reference {
        Reference::parse("oci://127.0.0.1:5000/acme/x:0.1.0").unwrap()
    }

    #[test]
    fn a_built_artifact_passes_the_check() {
        let b = build(
            b"\0asm",
            vec!["oxydra:fs/read@0.1.0".into()],
            vec![],
            "x.wasm",
            Some("0.1.0"),
        )
        .unwrap();
        let (m, layer) = check_manifest(&r(), &b.manifest, None).unwrap();
        assert_eq!(layer.digest, sha256_digest(b"\0asm"));
        assert_eq!(m.config.digest, sha256_digest(&b.config));
        let c = parse_config(&r(), &b.config).unwrap();
        assert_eq!(c.component.unwrap().imports, ["oxydra:fs/read@0.1.0"]);
    }

    #[test]
    fn a_container_image_is_not_a_wasm_artifact() {
        let m = r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":2},
            "layers":[]}"#;
        let e = check_manifest(&r(), m.as_bytes(), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not a wasm component artifact: its config has media type `application/vnd.oci.image.config.v1+json`"), "{e}");
    }
}
