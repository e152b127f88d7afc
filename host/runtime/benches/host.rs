//! Prints figures (run with `cargo bench -p oxydra-runtime`, after scripts/build.sh):
//! cold compile vs cached load per component, load of a tool from a compiled component,
//! and a trivial call through the full path (fresh Store from the cached InstancePre,
//! limits, epoch deadline, WASI context, result conversion).
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use oxydra_runtime::cache::ComponentCache;
use oxydra_runtime::{
    ComponentHost, ComponentSpec, HostConfig, Limits, Profile, ToolSpec, Workspace, engine,
};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn wasm(name: &str) -> Arc<Vec<u8>> {
    // Like the tests: OXYDRA_WASM_DIR when set (a worktree sharing another's target).
    let dir = std::env::var_os("OXYDRA_WASM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../target/wasm32-wasip2/wasm-release")
        });
    let p = dir.join(format!("{name}.wasm"));
    Arc::new(
        std::fs::read(&p)
            .unwrap_or_else(|e| panic!("{}: {e}; run scripts/test.sh first", p.display())),
    )
}

fn stats(mut v: Vec<Duration>) -> (Duration, Duration, Duration) {
    v.sort();
    let p = |q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    (p(0.5), p(0.99), v.iter().sum::<Duration>() / v.len() as u32)
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_nanos() as f64 / 1000.0)
}
fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_nanos() as f64 / 1e6)
}

fn main() {
    let components = [
        "oxydra_tool_file_read",
        "oxydra_tool_file_list",
        "oxydra_tool_file_search",
        "oxydra_tool_file_write",
        "oxydra_tool_file_edit",
        "oxydra_tool_file_delete",
        "oxydra_tool_vault_copyto_read",
        "oxydra_tool_vault_copyto_write",
        "fx_probe",
    ];
    let engine = engine::build(64).unwrap();
    let dir = tempfile::tempdir().unwrap();
    println!(
        "== compile vs cached load (per component; cached = new process, disk hit: checksum + deserialize)"
    );
    println!(
        "{:<32} {:>9} {:>12} {:>14} {:>14}",
        "component", "size", "cold compile", "cached p50", "cached p99"
    );
    let mut cached_p50s = Vec::new();
    for name in components {
        let bytes = wasm(name);
        let mut cold = Vec::new();
        for _ in 0..3 {
            let c = ComponentCache::new(&engine, None);
            let t = Instant::now();
            c.load(&engine, &bytes).unwrap();
            cold.push(t.elapsed());
        }
        ComponentCache::new(&engine, Some(dir.path().to_path_buf()))
            .load(&engine, &bytes)
            .unwrap();
        let mut warm = Vec::new();
        for _ in 0..200 {
            let c = ComponentCache::new(&engine, Some(dir.path().to_path_buf()));
            let t = Instant::now();
            let (_, outcome) = c.load(&engine, &bytes).unwrap();
            warm.push(t.elapsed());
            assert_eq!(outcome, oxydra_runtime::cache::CacheOutcome::Disk);
        }
        let (c50, _, _) = stats(cold);
        let (w50, w99, _) = stats(warm);
        cached_p50s.push(w50);
        println!(
            "{name:<32} {:>7} KB {:>12} {:>14} {:>14}",
            bytes.len() / 1024,
            ms(c50),
            ms(w50),
            ms(w99)
        );
    }
    let worst = cached_p50s.iter().max().unwrap();
    println!("worst cached-load p50: {} (target <= 1 ms)", ms(*worst));

    let host = ComponentHost::new(HostConfig {
        cache_dir: Some(dir.path().to_path_buf()),
        max_memory_mib: 64,
    })
    .unwrap();
    let spec = ToolSpec {
        name: "fx_probe".into(),
        components: vec![ComponentSpec {
            name: "fx_probe".into(),
            wasm: wasm("fx_probe"),
            grant: Profile::FileReadOnly,
            expected_sha256: None,
        }],
        limits: Limits::default(),
        web: Default::default(),
    };
    let mut loads = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        host.load(&spec).unwrap();
        loads.push(t.elapsed());
    }
    let (l50, l99, _) = stats(loads);
    println!(
        "\n== tool load with the component cached (sha256 + inspect + grant check + instantiate_pre + describe)"
    );
    println!("p50 {}  p99 {}", ms(l50), ms(l99));

    let ws_dir = tempfile::tempdir().unwrap();
    let ws = Arc::new(Workspace::open(ws_dir.path()).unwrap());
    let tool = host.load(&spec).unwrap();
    let args = r#"{"mode":"noop"}"#;
    for _ in 0..2000 {
        host.call(&tool, args, &ws).unwrap();
    }
    let mut calls = Vec::with_capacity(20_000);
    for _ in 0..20_000 {
        let t = Instant::now();
        host.call(&tool, args, &ws).unwrap();
        calls.push(t.elapsed());
    }
    let (c50, c99, mean) = stats(calls);
    println!("\n== trivial call through the full path (fx_probe noop, 20000 calls)");
    println!(
        "p50 {}  p99 {}  mean {}  (target p50 <= 25 µs)",
        us(c50),
        us(c99),
        us(mean)
    );

    let read = ToolSpec {
        name: "file_read".into(),
        components: vec![ComponentSpec {
            name: "file_read".into(),
            wasm: wasm("oxydra_tool_file_read"),
            grant: Profile::FileReadOnly,
            expected_sha256: None,
        }],
        limits: Limits::default(),
        web: Default::default(),
    };
    let read = host.load(&read).unwrap();
    std::fs::write(
        ws_dir.path().join("shared/small.txt"),
        "hello world\n".repeat(10),
    )
    .unwrap();
    let args = r#"{"path":"/shared/small.txt"}"#;
    let mut calls = Vec::with_capacity(10_000);
    for _ in 0..10_000 {
        let t = Instant::now();
        host.call(&read, args, &ws).unwrap();
        calls.push(t.elapsed());
    }
    let (c50, c99, mean) = stats(calls);
    println!("\n== file_read of a 120-byte file through the full path (10000 calls)");
    println!("p50 {}  p99 {}  mean {}", us(c50), us(c99), us(mean));
}
