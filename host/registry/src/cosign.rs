//! cosign-compatible key-pair signatures: ECDSA P-256 over cosign's simple-signing
//! payload, stored as a manifest at the tag `sha256-<manifest hex>.sig` of the same
//! repository, one layer per signature (media type
//! `application/vnd.dev.cosign.simplesigning.v1+json`, the signature in the
//! `dev.cosignproject.cosign/signature` annotation, base64 DER). `cosign sign --key`
//! (the classic tag layout, cosign v2, or v3 with `--new-bundle-format=false`) writes
//! exactly this, so its output verifies here, and `component sign`'s verifies with
//! `cosign verify --key`.
//!
//! Keys: public keys are PEM `PUBLIC KEY` (SubjectPublicKeyInfo, as `cosign.pub` is);
//! `component keygen` writes an unencrypted PKCS#8 `PRIVATE KEY` (cosign's own private
//! key files are scrypt-encrypted and are used with cosign itself).

use crate::RegistryError;
use crate::artifact::{self, Descriptor, Manifest, sha256_digest};
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair, UnparsedPublicKey};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivatePkcs8KeyDer, SubjectPublicKeyInfoDer};
use std::collections::BTreeMap;

pub const PAYLOAD_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
const PAYLOAD_TYPE: &str = "cosign container image signature";
/// A P-256 SubjectPublicKeyInfo is this DER prefix (SEQUENCE, id-ecPublicKey,
/// prime256v1, BIT STRING) followed by the 65-byte uncompressed point.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
/// Simple-signing payloads are a few hundred bytes.
pub const MAX_PAYLOAD_BYTES: u64 = 64 << 10;

/// The tag cosign stores signatures of `manifest_digest` under.
pub fn signature_tag(manifest_digest: &str) -> String {
    format!("{}.sig", manifest_digest.replacen(':', "-", 1))
}

/// cosign's simple-signing payload for `docker_reference` (`HOST/REPO`) at `digest`.
pub fn payload(docker_reference: &str, manifest_digest: &str) -> Vec<u8> {
    // serde_json orders keys alphabetically, which is the order cosign writes them in.
    let v = serde_json::json!({
        "critical": {
            "identity": {"docker-reference": docker_reference},
            "image": {"docker-manifest-digest": manifest_digest},
            "type": PAYLOAD_TYPE,
        },
        "optional": null,
    });
    v.to_string().into_bytes()
}

/// A trusted public key and its fingerprint (`sha256:` of its DER), as the lock records it.
#[derive(Debug, Clone)]
pub struct PublicKey {
    point: Vec<u8>,
    pub fingerprint: String,
    /// Where it came from, for messages.
    pub origin: String,
}

impl PublicKey {
    pub fn from_pem(origin: &str, pem: &[u8]) -> Result<PublicKey, RegistryError> {
        let der = SubjectPublicKeyInfoDer::from_pem_slice(pem).map_err(|e| {
            RegistryError::other(format!(
                "{origin}: not a PEM public key (-----BEGIN PUBLIC KEY-----): {e}"
            ))
        })?;
        let der: &[u8] = der.as_ref();
        let Some(point) = der.strip_prefix(&P256_SPKI_PREFIX[..]) else {
            return Err(RegistryError::other(format!(
                "{origin}: not an ECDSA P-256 public key (the key type cosign generates)"
            )));
        };
        if point.len() != 65 {
            return Err(RegistryError::other(format!(
                "{origin}: malformed P-256 public key"
            )));
        }
        Ok(PublicKey {
            point: point.to_vec(),
            fingerprint: sha256_digest(der),
            origin: origin.to_string(),
        })
    }

    fn verify(&self, message: &[u8], der_signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_ASN1, &self.point)
            .verify(message, der_signature)
            .is_ok()
    }
}

fn spki_pem(point: &[u8]) -> String {
    let mut der = P256_SPKI_PREFIX.to_vec();
    der.extend_from_slice(point);
    pem("PUBLIC KEY", &der)
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A new key pair: (private PKCS#8 PEM, public SPKI PEM).
pub fn generate() -> Result<(String, String), RegistryError> {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
        .map_err(|_| RegistryError::other("could not generate a key"))?;
    let pair = EcdsaKeyPair::from_pkcs8(
        &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        pkcs8.as_ref(),
        &rng,
    )
    .map_err(|_| RegistryError::other("could not read the generated key"))?;
    Ok((
        pem("PRIVATE KEY", pkcs8.as_ref()),
        spki_pem(pair.public_key().as_ref()),
    ))
}

pub struct SigningKey {
    pair: EcdsaKeyPair,
    pub fingerprint: String,
}

impl SigningKey {
    pub fn from_pem(origin: &str, pem_bytes: &[u8]) -> Result<SigningKey, RegistryError> {
        let text = String::from_utf8_lossy(pem_bytes);
        if text.contains("ENCRYPTED SIGSTORE PRIVATE KEY")
            || text.contains("ENCRYPTED COSIGN PRIVATE KEY")
        {
            return Err(RegistryError::other(format!(
                "{origin}: a cosign-encrypted private key; sign with `cosign sign --key {origin}` (its signatures verify here), or make a key with `oxydra-host component keygen`"
            )));
        }
        let der = PrivatePkcs8KeyDer::from_pem_slice(pem_bytes).map_err(|e| {
            RegistryError::other(format!(
                "{origin}: not an unencrypted PKCS#8 private key (-----BEGIN PRIVATE KEY-----): {e}"
            ))
        })?;
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
            der.secret_pkcs8_der(),
            &rng,
        )
        .map_err(|_| RegistryError::other(format!("{origin}: not an ECDSA P-256 private key")))?;
        let mut spki = P256_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(pair.public_key().as_ref());
        Ok(SigningKey {
            pair,
            fingerprint: sha256_digest(&spki),
        })
    }

    /// Base64 of the DER signature of `message`, as the annotation holds it.
    pub fn sign(&self, message: &[u8]) -> Result<String, RegistryError> {
        let sig = self
            .pair
            .sign(&SystemRandom::new(), message)
            .map_err(|_| RegistryError::other("signing failed"))?;
        Ok(base64::engine::general_purpose::STANDARD.encode(sig.as_ref()))
    }
}

/// One layer of a signature manifest that verified.
#[derive(Debug, Clone)]
pub struct Verified {
    pub fingerprint: String,
    pub key_origin: String,
    pub docker_reference: String,
}

/// The signature manifest's layers, with a blob fetcher; the first layer whose payload
/// names `manifest_digest` and whose signature verifies with one of `keys`, or why none did.
pub fn verify(
    keys: &[PublicKey],
    manifest_digest: &str,
    signatures: &Manifest,
    mut fetch: impl FnMut(&Descriptor) -> Result<Vec<u8>, RegistryError>,
) -> Result<Verified, String> {
    let mut why = Vec::new();
    for layer in &signatures.layers {
        if layer.media_type != PAYLOAD_MEDIA_TYPE {
            continue;
        }
        let Some(sig_b64) = layer
            .annotations
            .as_ref()
            .and_then(|a| a.get(SIGNATURE_ANNOTATION))
        else {
            why.push("a signature layer has no signature annotation".to_string());
            continue;
        };
        let Ok(sig) = base64::engine::general_purpose::STANDARD.decode(sig_b64.trim()) else {
            why.push("a signature is not base64".to_string());
            continue;
        };
        let payload = match fetch(layer) {
            Ok(p) => p,
            Err(e) => {
                why.push(format!("a signature payload could not be read: {e}"));
                continue;
            }
        };
        let Some(key) = keys.iter().find(|k| k.verify(&payload, &sig)) else {
            why.push("a signature was made by a key that is not in [components.trust] keys (or is not valid)".into());
            continue;
        };
        #[derive(serde::Deserialize)]
        struct Payload {
            critical: Critical,
        }
        #[derive(serde::Deserialize)]
        struct Critical {
            identity: Identity,
            image: Image,
            #[serde(rename = "type")]
            kind: String,
        }
        #[derive(serde::Deserialize)]
        struct Identity {
            #[serde(rename = "docker-reference")]
            docker_reference: String,
        }
        #[derive(serde::Deserialize)]
        struct Image {
            #[serde(rename = "docker-manifest-digest")]
            digest: String,
        }
        let p: Payload = match serde_json::from_slice(&payload) {
            Ok(p) => p,
            Err(e) => {
                why.push(format!(
                    "a signed payload is not a simple-signing payload ({e})"
                ));
                continue;
            }
        };
        if p.critical.kind != PAYLOAD_TYPE {
            why.push(format!("a signed payload has type `{}`", p.critical.kind));
            continue;
        }
        if p.critical.image.digest != manifest_digest {
            why.push(format!(
                "a valid signature (key {}) is for manifest {}, not {manifest_digest}",
                key.origin, p.critical.image.digest
            ));
            continue;
        }
        return Ok(Verified {
            fingerprint: key.fingerprint.clone(),
            key_origin: key.origin.clone(),
            docker_reference: p.critical.identity.docker_reference,
        });
    }
    if why.is_empty() {
        why.push("the signature manifest holds no cosign signature".into());
    }
    Err(why.join("; "))
}

/// The signature manifest after adding one signature: `existing` (if the tag already
/// holds signatures) plus a layer for `payload`; returns it with the config blob it
/// references.
pub fn signature_manifest(
    existing: Option<&Manifest>,
    payload: &[u8],
    signature_b64: &str,
) -> (Manifest, Vec<u8>) {
    let mut layers: Vec<Descriptor> = existing
        .map(|m| {
            m.layers
                .iter()
                .filter(|l| l.media_type == PAYLOAD_MEDIA_TYPE)
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let mut layer = Descriptor::of(PAYLOAD_MEDIA_TYPE, payload);
    layer.annotations = Some(BTreeMap::from([(
        SIGNATURE_ANNOTATION.to_string(),
        signature_b64.to_string(),
    )]));
    layers.retain(|l| l != &layer);
    layers.push(layer);
    // The config cosign writes for a signature image: an empty image whose rootfs
    // lists the payload layers.
    let config = serde_json::json!({
        "architecture": "",
        "config": {},
        "created": "0001-01-01T00:00:00Z",
        "history": [{"created": "0001-01-01T00:00:00Z"}],
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.digest.clone()).collect::<Vec<_>>()},
    })
    .to_string()
    .into_bytes();
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(artifact::MANIFEST_MEDIA_TYPE.into()),
        artifact_type: None,
        config: Descriptor::of("application/vnd.oci.image.config.v1+json", &config),
        layers,
        annotations: None,
    };
    (manifest, config)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_signature_made_here_verifies_and_a_wrong_digest_does_not() {
        let (private, public) = generate().unwrap();
        let key = SigningKey::from_pem("k", private.as_bytes()).unwrap();
        let pubkey = PublicKey::from_pem("k.pub", public.as_bytes()).unwrap();
        assert_eq!(key.fingerprint, pubkey.fingerprint);
        let digest = format!("sha256:{}", "b".repeat(64));
        let p = payload("127.0.0.1:5000/acme/x", &digest);
        assert_eq!(
            String::from_utf8(p.clone()).unwrap(),
            format!(
                "{{\"critical\":{{\"identity\":{{\"docker-reference\":\"127.0.0.1:5000/acme/x\"}},\"image\":{{\"docker-manifest-digest\":\"{digest}\"}},\"type\":\"cosign container image signature\"}},\"optional\":null}}"
            )
        );
        let sig = key.sign(&p).unwrap();
        let (m, _) = signature_manifest(None, &p, &sig);
        let ok = verify(
            std::slice::from_ref(&pubkey),
            &digest,
            &m,
            |_| Ok(p.clone()),
        )
        .unwrap();
        assert_eq!(ok.docker_reference, "127.0.0.1:5000/acme/x");
        let other = format!("sha256:{}", "c".repeat(64));
        let e = verify(std::slice::from_ref(&pubkey), &other, &m, |_| Ok(p.clone())).unwrap_err();
        assert!(e.contains("is for manifest"), "{e}");
        let (_, other_pub) = generate().unwrap();
        let stranger = PublicKey::from_pem("s.pub", other_pub.as_bytes()).unwrap();
        let e = verify(&[stranger], &digest, &m, |_| Ok(p.clone())).unwrap_err();
        assert!(e.contains("not in [components.trust] keys"), "{e}");
        assert_eq!(
            signature_tag(&digest),
            format!("sha256-{}.sig", "b".repeat(64))
        );
    }
}
