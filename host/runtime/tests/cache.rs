//! The compiled-component cache: warm loads deserialize, corrupt entries are recompiled.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;
use common::wasm;
use oxydra_runtime::cache::{CacheOutcome, ComponentCache};
use oxydra_runtime::engine;

fn only_entry(dir: &std::path::Path) -> std::path::PathBuf {
    let entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    entries[0].clone()
}

#[test]
fn cold_then_warm_then_corrupt_then_truncated() {
    let engine = engine::build(64).unwrap();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let bytes = wasm("oxydra-tool-file-read");

    let c = ComponentCache::new(&engine, Some(dir.path().to_path_buf()));
    assert_eq!(
        c.load(&engine, &bytes).unwrap().1,
        CacheOutcome::Compiled {
            reason: "not cached yet"
        }
    );
    assert_eq!(c.load(&engine, &bytes).unwrap().1, CacheOutcome::Memory);

    // A new process (new in-memory cache) loads from disk.
    let c = ComponentCache::new(&engine, Some(dir.path().to_path_buf()));
    assert_eq!(c.load(&engine, &bytes).unwrap().1, CacheOutcome::Disk);

    // Flip one byte in the middle: the checksum catches it and the entry is rewritten.
    let entry = only_entry(dir.path());
    let mut raw = std::fs::read(&entry).unwrap();
    let mid = raw.len() / 2;
    raw[mid] ^= 0xff;
    std::fs::write(&entry, &raw).unwrap();
    let c = ComponentCache::new(&engine, Some(dir.path().to_path_buf()));
    assert_eq!(
        c.load(&engine, &bytes).unwrap().1,
        CacheOutcome::Compiled {
            reason: "corrupt entry"
        }
    );
    let c = ComponentCache::new(&engine, Some(dir.path().to_path_buf()));
    assert_eq!(
        c.load(&engine, &bytes).unwrap().1,
        CacheOutcome::Disk,
        "the entry was rewritten"
    );

    // Truncated.
    let raw = std::fs::read(&entry).unwrap();
    std::fs::write(&entry, &raw[..20]).unwrap();
    let c = ComponentCache::new(&engine, Some(dir.path().to_path_buf()));
    assert_eq!(
        c.load(&engine, &bytes).unwrap().1,
        CacheOutcome::Compiled {
            reason: "corrupt entry"
        }
    );
}

#[test]
fn a_stale_entry_with_a_valid_checksum_is_recompiled() {
    let engine = engine::build(64).unwrap();
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let bytes = wasm("oxydra-tool-file-list");
    ComponentCache::new(&engine, Some(dir.path().to_path_buf()))
        .load(&engine, &bytes)
        .unwrap();
    // Well-formed entry, intact checksum, but not something this engine produced.
    let entry = only_entry(dir.path());
    let payload = b"not a serialized component".to_vec();
    let mut raw = b"OXYCWASM2\n".to_vec();
    raw.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    raw.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    raw.extend_from_slice(&payload);
    std::fs::write(&entry, raw).unwrap();
    let c = ComponentCache::new(&engine, Some(dir.path().to_path_buf()));
    assert_eq!(
        c.load(&engine, &bytes).unwrap().1,
        CacheOutcome::Compiled {
            reason: "stale entry"
        }
    );
    let c = ComponentCache::new(&engine, Some(dir.path().to_path_buf()));
    assert_eq!(c.load(&engine, &bytes).unwrap().1, CacheOutcome::Disk);
}
