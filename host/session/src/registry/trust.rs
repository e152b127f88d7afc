//! `[components.trust]`: checking a component's cosign signature against the
//! operator's keys before its layer is downloaded.

use super::InstallError;
use crate::config::AgentConfig;
use crate::config::agent::TrustMode;
use oxydra_registry::artifact::Manifest;
use oxydra_registry::cosign::{self, PublicKey};
use oxydra_registry::{Client, Reference};
use std::path::Path;

/// What the signature check found.
#[derive(Debug, Clone)]
pub enum Signature {
    Verified {
        fingerprint: String,
        key: String,
    },
    /// No signature from a trusted key; `reason` says what was found instead.
    Unsigned {
        reason: String,
    },
    /// `mode = "off"`.
    NotChecked,
}

impl Signature {
    pub fn fingerprint(&self) -> Option<&str> {
        match self {
            Signature::Verified { fingerprint, .. } => Some(fingerprint),
            _ => None,
        }
    }
}

/// The keys of `[components.trust] keys`, read and parsed.
pub fn trusted_keys(
    cfg: &AgentConfig,
    base_dir: Option<&Path>,
) -> Result<Vec<PublicKey>, InstallError> {
    cfg.components
        .trust
        .keys
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let path = match base_dir {
                Some(b) if p.is_relative() => b.join(p),
                _ => p.clone(),
            };
            let key = format!("components.trust.keys[{i}]");
            let pem = std::fs::read(&path)
                .map_err(|e| InstallError::Usage(format!("{key}: {}: {e}", path.display())))?;
            PublicKey::from_pem(&path.display().to_string(), &pem)
                .map_err(|e| InstallError::Usage(format!("{key}: {e}")))
        })
        .collect()
}

/// Look for a cosign signature of `manifest_digest` in `r`'s repository.
pub fn check(
    cfg: &AgentConfig,
    base_dir: Option<&Path>,
    client: &Client,
    r: &Reference,
    manifest_digest: &str,
) -> Result<Signature, InstallError> {
    let mode = cfg.components.trust.mode;
    if mode == TrustMode::Off {
        return Ok(Signature::NotChecked);
    }
    let keys = trusted_keys(cfg, base_dir)?;
    let tag = cosign::signature_tag(manifest_digest);
    let verdict = if keys.is_empty() {
        Err("no keys are configured in [components.trust] keys (add the publisher's public key there to verify signatures)".to_string())
    } else {
        match client.manifest_if_any(&r.with_tag(&tag))? {
            None => Err(format!("it has no signature (no tag {tag})")),
            Some(f) => match serde_json::from_slice::<Manifest>(&f.bytes) {
                Err(e) => Err(format!("its signature manifest ({tag}) is malformed: {e}")),
                Ok(m) => cosign::verify(&keys, manifest_digest, &m, |d| {
                    client.blob(r, d, "signature payload", cosign::MAX_PAYLOAD_BYTES)
                }),
            },
        }
    };
    match verdict {
        Ok(v) => Ok(Signature::Verified {
            fingerprint: v.fingerprint,
            key: v.key_origin,
        }),
        Err(reason) if mode == TrustMode::Require => Err(InstallError::Refused(format!(
            "{r} is not signed by a trusted key, and [components.trust] mode = \"require\": {reason}; nothing was installed"
        ))),
        Err(reason) => Ok(Signature::Unsigned { reason }),
    }
}

/// A local file carries no signature: refused under `require`.
pub fn for_file(cfg: &AgentConfig) -> Result<Signature, InstallError> {
    match cfg.components.trust.mode {
        TrustMode::Require => Err(InstallError::Refused(
            "a local file carries no signature, and [components.trust] mode = \"require\": install it from a signed registry artifact".into(),
        )),
        TrustMode::Warn => Ok(Signature::Unsigned {
            reason: "a local file carries no signature".into(),
        }),
        TrustMode::Off => Ok(Signature::NotChecked),
    }
}
