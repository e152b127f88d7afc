//! `component push`, `sign` and `keygen`: the author's side.

use super::install::registry_failure;
use crate::{Failure, exit};
use oxydra_registry::artifact::{self, Manifest};
use oxydra_registry::{Reference, cosign};
use oxydra_session::config::{self, Sources};
use oxydra_session::registry as reg;
use oxydra_session::tools;
use std::path::Path;

fn reference(s: &str) -> Result<Reference, Failure> {
    let r = Reference::parse(s).map_err(registry_failure)?;
    if r.tag.is_none() {
        return Err(Failure::new(
            exit::USAGE,
            format!("{s}: name the tag to publish at, e.g. :0.1.0"),
        ));
    }
    Ok(r)
}

pub fn push(sources: &Sources, file: &Path, target: &str, insecure: bool) -> Result<(), Failure> {
    let loaded = config::load_agent(sources)?;
    let cfg = &loaded.value;
    let r = reference(target)?;
    if r.digest.is_some() {
        return Err(Failure::new(
            exit::USAGE,
            format!("{target}: push to a tag, not a digest"),
        ));
    }
    let wasm = std::fs::read(file)
        .map_err(|e| Failure::new(exit::USAGE, format!("{}: {e}", file.display())))?;
    let title = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "component.wasm".into());
    let host = tools::host(&cfg.components)?;
    // The real imports and exports go into the config, so what a host shows before
    // download is what the component was built with.
    let (imports, exports) = host
        .interfaces(&title, &wasm)
        .map_err(|e| Failure::new(exit::REFUSED, format!("{}: {e}", file.display())))?;
    let tag = r.tag.clone().unwrap_or_default();
    let version = semver::Version::parse(&tag).is_ok().then_some(tag.as_str());
    let built =
        artifact::build(&wasm, imports, exports, &title, version).map_err(registry_failure)?;
    let client = reg::client(&cfg.components, loaded.base_dir.as_deref(), &r, insecure)
        .map_err(super::install::failure)?;
    client
        .push_blob(&r, &built.config)
        .map_err(registry_failure)?;
    client.push_blob(&r, &wasm).map_err(registry_failure)?;
    let digest = client
        .push_manifest(&r, &tag, &built.manifest, artifact::MANIFEST_MEDIA_TYPE)
        .map_err(registry_failure)?;
    println!("pushed {r}@{digest}");
    println!(
        "layer:  {} ({} bytes)",
        built.layer.digest, built.layer.size
    );
    if let Some(p) = r.package() {
        println!("package {p}, version {tag}");
    }
    Ok(())
}

pub fn sign(
    sources: &Sources,
    target: &str,
    key_file: &Path,
    insecure: bool,
) -> Result<(), Failure> {
    let loaded = config::load_agent(sources)?;
    let cfg = &loaded.value;
    let r = Reference::parse(target).map_err(registry_failure)?;
    let pem = std::fs::read(key_file)
        .map_err(|e| Failure::new(exit::USAGE, format!("{}: {e}", key_file.display())))?;
    let key = cosign::SigningKey::from_pem(&key_file.display().to_string(), &pem)
        .map_err(|e| Failure::new(exit::USAGE, e.to_string()))?;
    let client = reg::client(&cfg.components, loaded.base_dir.as_deref(), &r, insecure)
        .map_err(super::install::failure)?;
    let fetched = client.manifest(&r).map_err(registry_failure)?;
    // Only wasm artifacts: a typo'd reference must not get a signature.
    artifact::check_manifest(&r, &fetched.bytes, fetched.media_type.as_deref())
        .map_err(registry_failure)?;
    let payload = cosign::payload(&r.docker_reference(), &fetched.digest);
    let signature = key.sign(&payload).map_err(registry_failure)?;
    let sig_ref = r.with_tag(&cosign::signature_tag(&fetched.digest));
    let existing = client
        .manifest_if_any(&sig_ref)
        .map_err(registry_failure)?
        .and_then(|f| serde_json::from_slice::<Manifest>(&f.bytes).ok());
    let (manifest, config) = cosign::signature_manifest(existing.as_ref(), &payload, &signature);
    client.push_blob(&r, &payload).map_err(registry_failure)?;
    client.push_blob(&r, &config).map_err(registry_failure)?;
    let bytes =
        serde_json::to_vec(&manifest).map_err(|e| Failure::new(exit::TOOL_ERROR, e.to_string()))?;
    let tag = sig_ref.tag.clone().unwrap_or_default();
    client
        .push_manifest(&r, &tag, &bytes, artifact::MANIFEST_MEDIA_TYPE)
        .map_err(registry_failure)?;
    println!(
        "signed {r} ({}) with key {}",
        fetched.digest, key.fingerprint
    );
    println!("signature: {}", sig_ref);
    Ok(())
}

pub fn keygen(file: &Path) -> Result<(), Failure> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let public = {
        let mut p = file.as_os_str().to_owned();
        p.push(".pub");
        std::path::PathBuf::from(p)
    };
    for p in [file, public.as_path()] {
        if p.exists() {
            return Err(Failure::new(
                exit::USAGE,
                format!(
                    "{} exists; choose another path (keys are never overwritten)",
                    p.display()
                ),
            ));
        }
    }
    let (private_pem, public_pem) = cosign::generate().map_err(registry_failure)?;
    let write = |p: &Path, text: &str, mode: u32| -> Result<(), Failure> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(p)
            .and_then(|mut f| f.write_all(text.as_bytes()).map(|_| f))
            .map_err(|e| Failure::new(exit::USAGE, format!("{}: {e}", p.display())))?;
        f.flush()
            .map_err(|e| Failure::new(exit::USAGE, format!("{}: {e}", p.display())))
    };
    write(file, &private_pem, 0o600)?;
    write(&public, &public_pem, 0o644)?;
    let fp = cosign::PublicKey::from_pem("new key", public_pem.as_bytes())
        .map(|k| k.fingerprint)
        .unwrap_or_default();
    println!("private key: {} (keep it secret)", file.display());
    println!("public key:  {} ({fp})", public.display());
    println!(
        "trust it with:\n  [components.trust]\n  mode = \"require\"\n  keys = [{:?}]",
        public.display().to_string()
    );
    Ok(())
}
