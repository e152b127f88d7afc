//! `.oxydra/components.lock`: what is installed, pinned. One `[[component]]` per
//! installed component: its source, version, the manifest and layer digests, the grant
//! the operator gave, and the signing key that vouched for it. The component's bytes
//! live beside it, content-addressed, in `.oxydra/components/sha256/<hex>.wasm`; loading
//! checks the file against `layer_digest` every time.
//!
//! Every write is atomic (a temporary file in the same directory, synced, then renamed
//! over the old one), blobs before the lock: an interrupted install leaves the previous
//! lock, and with it the previous version, in force.

use crate::RegistryError;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const LOCK_FILE: &str = "components.lock";
pub const LOCK_VERSION: u32 = 1;
const HEADER: &str = "# Written by `oxydra-host component install/update/remove`: do not edit by hand.\n\
# Loading checks every component against its layer_digest; `component update` is the\n\
# only way a pinned digest changes.\n";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockFile {
    pub version: u32,
    #[serde(default, rename = "component", skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<Locked>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Locked {
    /// The tool name (what the component describes itself as).
    pub name: String,
    /// `oci://HOST/NS/NAME:VERSION` or `file:///abs/path.wasm`.
    pub source: String,
    /// The tag it was installed from (absent for a file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `sha256:` of the manifest (absent for a file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_digest: Option<String>,
    /// `sha256:` of the component's bytes.
    pub layer_digest: String,
    pub size: u64,
    /// The profile the operator granted.
    pub grant: String,
    /// The narrowest profile its real imports need, at install.
    pub profile: String,
    /// The oxydra WIT version it was built against.
    pub wit_version: String,
    /// Fingerprint (`sha256:` of the public key) of the key whose signature verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signed_by: Option<String>,
    pub installed_at: String,
}

/// The project's `.oxydra` directory: the lock and the component store.
#[derive(Debug, Clone)]
pub struct Store {
    pub dir: PathBuf,
}

fn io(path: &Path, e: std::io::Error) -> RegistryError {
    RegistryError::other(format!("{}: {e}", path.display()))
}

impl Store {
    pub fn new(dir: impl Into<PathBuf>) -> Store {
        Store { dir: dir.into() }
    }

    pub fn lock_path(&self) -> PathBuf {
        self.dir.join(LOCK_FILE)
    }

    /// Where the component with `layer_digest` is kept.
    pub fn blob_path(&self, layer_digest: &str) -> PathBuf {
        let hex = layer_digest.strip_prefix("sha256:").unwrap_or(layer_digest);
        self.dir
            .join("components")
            .join("sha256")
            .join(format!("{hex}.wasm"))
    }

    /// The lock (empty when there is none yet).
    pub fn read(&self) -> Result<LockFile, RegistryError> {
        let path = self.lock_path();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(LockFile {
                    version: LOCK_VERSION,
                    components: Vec::new(),
                });
            }
            Err(e) => return Err(io(&path, e)),
        };
        let lock: LockFile = toml::from_str(&text).map_err(|e| {
            RegistryError::other(format!(
                "{}: {}; restore it from version control, or remove it and reinstall the components",
                path.display(),
                e.message()
            ))
        })?;
        if lock.version != LOCK_VERSION {
            return Err(RegistryError::other(format!(
                "{}: lock version {} is not one this host reads (it reads version {LOCK_VERSION})",
                path.display(),
                lock.version
            )));
        }
        Ok(lock)
    }

    /// Write `bytes` to `path` atomically.
    fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), RegistryError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        let tmp = dir.join(format!(
            ".{}.{}.tmp",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("x"),
            std::process::id()
        ));
        let result = (|| {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, path)?;
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
            Ok(())
        })();
        result.map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io(path, e)
        })
    }

    /// Keep a component's bytes under their digest (the caller verified them).
    pub fn put_blob(&self, layer_digest: &str, bytes: &[u8]) -> Result<PathBuf, RegistryError> {
        let path = self.blob_path(layer_digest);
        Self::write_atomic(&path, bytes)?;
        Ok(path)
    }

    pub fn write(&self, lock: &LockFile) -> Result<(), RegistryError> {
        let mut lock = lock.clone();
        lock.version = LOCK_VERSION;
        lock.components.sort_by(|a, b| a.name.cmp(&b.name));
        let body = toml::to_string(&lock).map_err(|e| RegistryError::other(e.to_string()))?;
        Self::write_atomic(&self.lock_path(), format!("{HEADER}\n{body}").as_bytes())
    }

    /// Hold this while reading, changing and writing the lock, so two installs at once
    /// cannot lose each other's entry (an advisory lock on `.oxydra/components/.guard`,
    /// released when the guard drops, a crashed holder included).
    pub fn exclusive(&self) -> Result<std::fs::File, RegistryError> {
        let dir = self.dir.join("components");
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        let path = dir.join(".guard");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| io(&path, e))?;
        f.lock().map_err(|e| io(&path, e))?;
        Ok(f)
    }

    /// Remove stored components the lock no longer names, and temporary files an
    /// interrupted write left behind. Called with [`Store::exclusive`] held, so no write
    /// of another process is in flight.
    pub fn collect_garbage(&self, lock: &LockFile) {
        let stale = |dir: &Path| {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.starts_with('.') && n.ends_with(".tmp") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        };
        stale(&self.dir);
        let dir = self.dir.join("components").join("sha256");
        stale(&dir);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(hex) = name.strip_suffix(".wasm") else {
                continue;
            };
            let digest = format!("sha256:{hex}");
            if !lock.components.iter().any(|c| c.layer_digest == digest) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn round_trips_and_refuses_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        assert!(store.read().unwrap().components.is_empty());
        let entry = Locked {
            name: "word_count".into(),
            source: "oci://127.0.0.1:5000/acme/word-count:0.1.0".into(),
            version: Some("0.1.0".into()),
            manifest_digest: Some(format!("sha256:{}", "1".repeat(64))),
            layer_digest: format!("sha256:{}", "2".repeat(64)),
            size: 10,
            grant: "file-read-only".into(),
            profile: "file-read-only".into(),
            wit_version: "0.1.0".into(),
            signed_by: None,
            installed_at: "2026-12-02T07:00:00Z".into(),
        };
        let lock = LockFile {
            version: 1,
            components: vec![entry.clone()],
        };
        store.write(&lock).unwrap();
        assert_eq!(store.read().unwrap().components, vec![entry]);
        let stale = store.dir.join(".components.lock.999.tmp");
        std::fs::write(&stale, "half").unwrap();
        store.collect_garbage(&lock);
        assert!(
            !stale.exists(),
            "an interrupted write's temporary file is removed"
        );
        std::fs::write(store.lock_path(), "version = 1\nsurprise = 2\n").unwrap();
        let e = store.read().unwrap_err().to_string();
        assert!(e.contains("surprise"), "{e}");
    }
}
