//! Compiled components, cached in memory by content hash and on disk by
//! `sha256(component) + engine compatibility hash`.
//!
//! The only `unsafe` in the host is here: `Component::deserialize` trusts its input, so
//! it is called only on bytes this module wrote, after checking their length and CRC-32
//! (hardware-accelerated, ~20x cheaper than hashing the payload with sha256: the check
//! is against corruption and truncation, not tampering; the cache directory belongs to
//! the user who runs the host). A corrupt, truncated or stale entry is recompiled and
//! rewritten, never trusted.
#![allow(unsafe_code)]

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use wasmtime::Engine;
use wasmtime::component::Component;

const MAGIC: &[u8; 10] = b"OXYCWASM2\n";
/// Magic, then the payload length (u64 LE), then its CRC-32 (u32 LE).
const HEADER: usize = MAGIC.len() + 8 + 4;

/// Where a component came from on this load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    Memory,
    Disk,
    /// Compiled from the wasm; `reason` says why the disk entry was not used.
    Compiled {
        reason: &'static str,
    },
}

pub struct ComponentCache {
    dir: Option<PathBuf>,
    engine_key: String,
    memory: Mutex<HashMap<[u8; 32], Component>>,
}

/// Feeds `Hash` output into sha256, so the engine's compatibility hash becomes a
/// stable hex string.
struct ShaHasher(Sha256);

impl Hasher for ShaHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn finish(&self) -> u64 {
        let d = self.0.clone().finalize();
        u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]])
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl ComponentCache {
    /// `dir = None` keeps the cache in memory only.
    pub fn new(engine: &Engine, dir: Option<PathBuf>) -> Self {
        let mut h = ShaHasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut h);
        let engine_key = hex::encode(&h.0.finalize()[..8]);
        ComponentCache {
            dir,
            engine_key,
            memory: Mutex::new(HashMap::new()),
        }
    }

    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    fn entry_path(&self, digest: &[u8; 32]) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|d| d.join(format!("{}-{}.cwasm", hex::encode(digest), self.engine_key)))
    }

    /// The compiled component for `wasm`, from memory, disk, or a fresh compile.
    pub fn load(
        &self,
        engine: &Engine,
        wasm: &[u8],
    ) -> wasmtime::Result<(Component, CacheOutcome)> {
        self.load_hashed(engine, wasm, Sha256::digest(wasm).into())
    }

    /// [`ComponentCache::load`] for a caller that already hashed `wasm` (`digest` must be
    /// its sha256): a checked load hashes the bytes once, for the checksum and the key.
    pub fn load_hashed(
        &self,
        engine: &Engine,
        wasm: &[u8],
        digest: [u8; 32],
    ) -> wasmtime::Result<(Component, CacheOutcome)> {
        if let Some(c) = self
            .memory
            .lock()
            .ok()
            .and_then(|m| m.get(&digest).cloned())
        {
            return Ok((c, CacheOutcome::Memory));
        }
        let path = self.entry_path(&digest);
        let reason = match &path {
            None => "no cache directory",
            Some(p) => match read_entry(p) {
                Ok(bytes) => match unsafe { Component::deserialize(engine, &bytes[HEADER..]) } {
                    Ok(c) => {
                        self.remember(digest, &c);
                        return Ok((c, CacheOutcome::Disk));
                    }
                    Err(e) => {
                        tracing::warn!(entry = %p.display(), error = %e, "stale cache entry; recompiling");
                        "stale entry"
                    }
                },
                Err(EntryError::Missing) => "not cached yet",
                Err(EntryError::Corrupt(why)) => {
                    tracing::warn!(entry = %p.display(), why, "corrupt cache entry; recompiling");
                    "corrupt entry"
                }
            },
        };
        let serialized = engine.precompile_component(wasm)?;
        // Deserializing what we just produced keeps one code path for memory and disk.
        let component = unsafe { Component::deserialize(engine, &serialized)? };
        if let Some(p) = &path
            && let Err(e) = write_entry(p, &serialized)
        {
            tracing::warn!(entry = %p.display(), error = %e, "could not write the component cache");
        }
        self.remember(digest, &component);
        Ok((component, CacheOutcome::Compiled { reason }))
    }

    fn remember(&self, digest: [u8; 32], c: &Component) {
        if let Ok(mut m) = self.memory.lock() {
            m.insert(digest, c.clone());
        }
    }
}

enum EntryError {
    Missing,
    Corrupt(&'static str),
}

fn read_entry(path: &Path) -> Result<Vec<u8>, EntryError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(EntryError::Missing),
        Err(_) => return Err(EntryError::Corrupt("unreadable")),
    };
    if bytes.len() < HEADER || &bytes[..MAGIC.len()] != MAGIC {
        return Err(EntryError::Corrupt("bad header"));
    }
    let field = |at: usize, n: usize| {
        bytes[at..at + n]
            .iter()
            .rev()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
    };
    let len = field(MAGIC.len(), 8);
    let crc = field(MAGIC.len() + 8, 4) as u32;
    let payload = &bytes[HEADER..];
    if payload.len() as u64 != len {
        return Err(EntryError::Corrupt("truncated"));
    }
    if crc32fast::hash(payload) != crc {
        return Err(EntryError::Corrupt("checksum mismatch"));
    }
    // The whole file is returned; the payload starts at HEADER.
    Ok(bytes)
}

fn write_entry(path: &Path, payload: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut bytes = Vec::with_capacity(HEADER + payload.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    bytes.extend_from_slice(payload);
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, &bytes)?;
    std::fs::rename(&tmp, path)
}
