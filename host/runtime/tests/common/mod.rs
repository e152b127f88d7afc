//! Shared helpers: where the built components are, and a host to load them.
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use oxydra_runtime::{ComponentHost, ComponentSpec, HostConfig, Limits, Profile, ToolSpec};
use std::path::PathBuf;
use std::sync::Arc;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Fixture and tool components built by `scripts/test.sh` (wasm32-wasip2, wasm-release).
pub fn wasm(crate_name: &str) -> Arc<Vec<u8>> {
    let dir = std::env::var_os("OXYDRA_WASM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/wasm32-wasip2/wasm-release"));
    let file = dir.join(format!("{}.wasm", crate_name.replace('-', "_")));
    let bytes = std::fs::read(&file).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build the components first with scripts/test.sh (or scripts/build.sh)",
            file.display()
        )
    });
    Arc::new(bytes)
}

pub fn host() -> ComponentHost {
    ComponentHost::new(HostConfig {
        cache_dir: None,
        max_memory_mib: 256,
    })
    .expect("engine")
}

pub fn spec(name: &str, crate_name: &str, grant: Profile) -> ToolSpec {
    ToolSpec {
        name: name.into(),
        components: vec![ComponentSpec {
            name: name.into(),
            wasm: wasm(crate_name),
            grant,
            expected_sha256: None,
        }],
        limits: Limits::default(),
        web: Default::default(),
    }
}

pub fn two_step(name: &str, first: &str, second: &str) -> ToolSpec {
    ToolSpec {
        name: name.into(),
        components: vec![
            ComponentSpec {
                name: format!("{name}#step1"),
                wasm: wasm(first),
                grant: Profile::VaultReadStep,
                expected_sha256: None,
            },
            ComponentSpec {
                name: format!("{name}#step2"),
                wasm: wasm(second),
                grant: Profile::VaultWriteStep,
                expected_sha256: None,
            },
        ],
        limits: Limits::default(),
        web: Default::default(),
    }
}
