//! Prints figures for providers (run `cargo bench -p oxydra-runtime --bench llm` after
//! scripts/test.sh): events per second through the openai-chat component and the time
//! per event (host → component → host, including SSE and JSON parsing in the component).
//! The loopback server writes the whole stream in 64 KiB writes, so the network is not
//! what is measured.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use oxydra_runtime::llm::types::{LlmEvent, LlmRequest, Message, Role};
use oxydra_runtime::llm::{ProviderSpec, RetryPolicy};
use oxydra_runtime::{ComponentHost, HostConfig, Limits};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

const EVENTS: usize = 20_000;

fn serve(body: Arc<Vec<u8>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let body = body.clone();
            std::thread::spawn(move || {
                let mut r = BufReader::new(stream.try_clone().unwrap());
                let mut len = 0;
                loop {
                    let mut line = String::new();
                    r.read_line(&mut line).unwrap();
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut req = vec![0; len];
                r.read_exact(&mut req).unwrap();
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                stream.write_all(head.as_bytes()).unwrap();
                for chunk in body.chunks(64 * 1024) {
                    stream.write_all(chunk).unwrap();
                }
            });
        }
    });
    url
}

fn main() {
    let mut body = String::new();
    for i in 0..EVENTS {
        body.push_str(&format!(
            "data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"tok{i} \"}},\"finish_reason\":null}}]}}\n\n"
        ));
    }
    body.push_str("data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n");
    let url = serve(Arc::new(body.into_bytes()));
    let wasm = std::fs::read(
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../target/wasm32-wasip2/wasm-release/oxydra_provider_openai_chat.wasm"),
    )
    .expect("run scripts/test.sh first");
    let host = ComponentHost::new(HostConfig {
        cache_dir: None,
        max_memory_mib: 64,
    })
    .unwrap();
    let p = host
        .load_provider(ProviderSpec {
            name: "bench".into(),
            wasm: Arc::new(wasm),
            expected_sha256: None,
            base_url: Some(url),
            api_key: None,
            api_key_env: None,
            extra_headers: vec![],
            limits: Limits::default(),
            retry: RetryPolicy::default(),
        })
        .unwrap();
    let req = LlmRequest {
        model: "m".into(),
        messages: vec![Message::text(Role::User, "go")],
        ..Default::default()
    };
    let mut runs = Vec::new();
    for _ in 0..6 {
        let started = Instant::now();
        let mut deltas = 0;
        for e in host.complete(&p, &req).unwrap() {
            if let LlmEvent::TextDelta(_) = e.unwrap() {
                deltas += 1;
            }
        }
        assert_eq!(deltas, EVENTS);
        runs.push(started.elapsed());
    }
    runs.remove(0); // warm-up
    runs.sort();
    let median: Duration = runs[runs.len() / 2];
    let per_event = median.as_nanos() as f64 / EVENTS as f64 / 1000.0;
    println!(
        "== provider stream: openai-chat component, {EVENTS} text deltas over loopback (median of 5)"
    );
    println!(
        "total {:.1} ms, {:.0} events/s, {per_event:.2} µs per event (target <= 20 µs)",
        median.as_secs_f64() * 1000.0,
        EVENTS as f64 / median.as_secs_f64()
    );
}
