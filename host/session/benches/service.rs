//! Prints figures (`cargo bench -p oxydra-session --bench service`, after scripts/test.sh):
//! what the session service adds to a turn. The same turn (two provider calls through the
//! openai-chat component against a zero-latency loopback model, one file_read, five
//! persisted messages) run through the turn loop directly, and through
//! `SessionService::submit` (actor, turn slot, event fan-out to one subscriber).
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

#[path = "../../agent/benches/common/model.rs"]
mod model;

use model::{model_server, stats};
use oxydra_session::config::AgentConfig;
use oxydra_session::config::agent::{ProviderEntry, ProviderType};
use oxydra_session::{ServiceOptions, SessionService, System};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = AgentConfig::default();
    cfg.providers.registry.insert(
        "bench".into(),
        ProviderEntry {
            provider_type: ProviderType::Openai,
            base_url: Some(model_server()),
            api_key_env: Some("OXYDRA_BENCH_NO_KEY".into()),
            ..Default::default()
        },
    );
    cfg.selection.provider = "bench".into();
    cfg.components.bundled_dir =
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/release/components"));
    cfg.components.cache_dir = Some(dir.path().join("cache"));
    let system = Arc::new(System::new(cfg, None).unwrap());
    let ws = dir.path().join("ws");
    let svc = SessionService::open(
        system.clone(),
        "bench",
        &ws,
        ServiceOptions::from_config(&system.config),
    )
    .unwrap();
    std::fs::write(ws.join("shared/a.txt"), "hello").ok();
    let store = oxydra_store::Store::open(&ws.join(".oxydra/store.db")).unwrap();
    let (rt, profile) = system.runtime(&ws, "default", store).unwrap();
    std::fs::write(ws.join("shared/a.txt"), "hello").unwrap();
    let rt = Arc::new(rt);

    let direct = |i: usize| {
        let session = format!("direct-{i}");
        rt.store.create_session(&session, "default").unwrap();
        let t = Instant::now();
        let out = rt
            .run_turn(&session, &profile, "read a.txt", &mut |_| {})
            .unwrap();
        assert_eq!(out.answer, "done");
        t.elapsed()
    };
    let served = |_: usize| {
        let s = svc.create(None, None).unwrap();
        let t = Instant::now();
        let summary = svc
            .submit(&s.id, "read a.txt")
            .unwrap()
            .wait_finished(|_| {})
            .unwrap();
        let elapsed = t.elapsed();
        assert_eq!(summary.outcome.unwrap().answer, "done");
        elapsed
    };
    // One long-lived session, as chat, the TUI or a channel uses one: the same session's
    // history grows the same way on both paths.
    let live = svc.create(None, None).unwrap().id;
    rt.store.create_session("direct-live", "default").unwrap();
    let direct_live = || {
        let t = Instant::now();
        rt.run_turn("direct-live", &profile, "read a.txt", &mut |_| {})
            .unwrap();
        t.elapsed()
    };
    let served_live = || {
        let t = Instant::now();
        let s = svc
            .submit(&live, "read a.txt")
            .unwrap()
            .wait_finished(|_| {})
            .unwrap();
        let elapsed = t.elapsed();
        assert!(s.outcome.is_ok());
        elapsed
    };
    for i in 0..20 {
        direct(i);
        served(i);
    }
    // Interleaved, so both see the same machine state.
    let (mut a, mut b, mut c, mut d) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for i in 20..220 {
        a.push(direct(i));
        b.push(served(i));
    }
    for _ in 0..100 {
        c.push(direct_live());
        d.push(served_live());
    }
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    let show = |title: &str, a: Vec<std::time::Duration>, b: Vec<std::time::Duration>| {
        let (a50, a99) = stats(a);
        let (b50, b99) = stats(b);
        println!("== {title}");
        println!("direct   p50 {:.3} ms  p99 {:.3} ms", ms(a50), ms(a99));
        println!("service  p50 {:.3} ms  p99 {:.3} ms", ms(b50), ms(b99));
        println!(
            "overhead p50 {:+.1} µs per turn",
            (b50.as_secs_f64() - a50.as_secs_f64()) * 1e6
        );
    };
    show(
        "one turn in a new session: turn loop directly vs through the session service (200 each)",
        a,
        b,
    );
    show(
        "turns of one long-lived session (100 each; the history grows)",
        c,
        d,
    );
}
