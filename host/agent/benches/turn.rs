//! Prints figures (`cargo bench -p oxydra-agent --bench turn`, after scripts/test.sh):
//! a whole turn with a zero-latency model on loopback that calls one tool (file_read)
//! and then answers: two provider calls through the openai-chat component, one tool call,
//! five messages persisted in libSQL. Then 200 sessions running a turn at once.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

#[path = "common/model.rs"]
mod model;
use model::{model_server, stats};

use oxydra_agent::scrub::Scrubber;
use oxydra_agent::turn::{AgentProfile, Budgets, Runtime};
use oxydra_runtime::llm::{ProviderSpec, RetryPolicy};
use oxydra_runtime::{
    ComponentHost, ComponentSpec, HostConfig, Limits, Profile, ToolSpec, Workspace,
};
use oxydra_store::Store;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

fn wasm(name: &str) -> Arc<Vec<u8>> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/wasm32-wasip2/wasm-release")
        .join(format!("{name}.wasm"));
    Arc::new(
        std::fs::read(&p)
            .unwrap_or_else(|e| panic!("{}: {e}; run scripts/test.sh first", p.display())),
    )
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let host = Arc::new(
        ComponentHost::new(HostConfig {
            cache_dir: None,
            max_memory_mib: 64,
        })
        .unwrap(),
    );
    let provider = host
        .load_provider(ProviderSpec {
            name: "bench".into(),
            wasm: wasm("oxydra_provider_openai_chat"),
            expected_sha256: None,
            base_url: Some(model_server()),
            api_key: None,
            api_key_env: None,
            extra_headers: vec![],
            limits: Limits::default(),
            retry: RetryPolicy::default(),
        })
        .unwrap();
    let file_read = host
        .load(&ToolSpec {
            name: "file_read".into(),
            components: vec![ComponentSpec {
                name: "file_read".into(),
                wasm: wasm("oxydra_tool_file_read"),
                grant: Profile::FileReadOnly,
                expected_sha256: None,
            }],
            limits: Limits::default(),
            web: Default::default(),
        })
        .unwrap();
    let ws = Workspace::open(&dir.path().join("ws")).unwrap();
    std::fs::write(dir.path().join("ws/shared/a.txt"), "hello").unwrap();
    let rt = Runtime {
        host,
        provider,
        model: "gpt-4o-mini".into(),
        model_info: oxydra_agent::catalog::pinned()
            .get("openai", "gpt-4o-mini")
            .cloned(),
        max_output_tokens: Some(1024),
        request_options: Vec::new(),
        tools: vec![Arc::new(file_read)],
        tool_sources: Vec::new(),
        scrubber: Scrubber::new(Some(ws.host_root()), vec![]),
        workspace: Arc::new(ws),
        store: Store::open(&dir.path().join("store.db")).unwrap(),
        safety_buffer_tokens: 1024,
        fallback_context_tokens: 128_000,
        compaction: oxydra_agent::turn::Compaction {
            trigger_ratio: 0.85,
            target_ratio: 0.5,
            min_turns: 6,
            flush_to_memory: false,
        },
        agents: Default::default(),
        max_delegation_depth: oxydra_agent::turn::DEFAULT_MAX_DELEGATION_DEPTH,
        delegation_timeout: oxydra_agent::turn::DEFAULT_DELEGATION_TIMEOUT,
    };
    let rt = Arc::new(rt);
    let agent = AgentProfile {
        name: "bench".into(),
        system_prompt: "bench".into(),
        tools: None,
        budgets: Budgets {
            max_steps: 10,
            max_tokens: None,
            max_cost: None,
            wall_time: None,
            keys: Default::default(),
        },
    };
    let run = |i: usize| {
        let session = format!("s{i}");
        rt.store.create_session(&session, "bench").unwrap();
        rt.run_turn(&session, &agent, "read a.txt", &mut |_| {})
    };
    for i in 0..20 {
        run(i).unwrap();
    }
    let mut times = Vec::new();
    for i in 20..220 {
        let t = Instant::now();
        let out = run(i).unwrap();
        times.push(t.elapsed());
        assert_eq!(out.answer, "done");
    }
    let (p50, p99) = stats(times);
    println!(
        "== one turn: 2 provider calls (openai-chat component, loopback model) + 1 file_read + 5 persisted messages"
    );
    println!(
        "p50 {:.2} ms  p99 {:.2} ms  (200 turns, each in a new session)",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3
    );

    let errors = AtomicUsize::new(0);
    let started = Instant::now();
    std::thread::scope(|s| {
        for i in 0..200 {
            let (run, errors) = (&run, &errors);
            s.spawn(move || {
                if let Err(e) = run(1000 + i) {
                    eprintln!("session {i}: {e}");
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    println!("\n== 200 sessions at once, one turn each");
    println!(
        "{} errors, all done in {:.0} ms",
        errors.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64() * 1e3
    );
}
