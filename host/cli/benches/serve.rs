//! `oxydra-host serve` as a process: time from spawn to the `gateway …` line and to a
//! `hello_ack`, on a warm compile cache, and the idle RSS with every bundled component
//! loaded. Prints figures beside the reference Oxydra's; asserts nothing about speed.
//!
//! cargo bench -p oxydra-cli --bench serve
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tungstenite::Message;

const RUNS: usize = 20;

fn serve(dir: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_oxydra-host"));
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir.join("home"))
        .env("XDG_CACHE_HOME", dir.join("home/.cache"))
        .env("LOCAL_KEY", "sk-bench")
        .env("OXYDRA_GATEWAY_TOKEN", "bench-token-0123456789")
        .current_dir(dir)
        .args(["serve", "--workspace", dir.join("ws").to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    c
}

/// Spawn, and wait for the URL line: (child, url, time to the line).
fn start(dir: &std::path::Path) -> (Child, String, Duration) {
    let t = Instant::now();
    let mut child = serve(dir).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ready = t.elapsed();
    let url = line
        .trim()
        .strip_prefix("gateway ")
        .unwrap_or_else(|| panic!("no gateway line: {line:?}"))
        .to_string();
    (child, url, ready)
}

fn hello(url: &str) -> tungstenite::WebSocket<TcpStream> {
    let stream =
        TcpStream::connect(url.trim_start_matches("ws://").trim_end_matches("/ws")).unwrap();
    stream.set_nodelay(true).unwrap();
    let (mut ws, _) = tungstenite::client(url, stream).unwrap();
    ws.send(Message::text(
        r#"{"type":"hello","payload":{"protocol_version":3,"token":"bench-token-0123456789"}}"#,
    ))
    .unwrap();
    loop {
        if let Message::Text(t) = ws.read().unwrap()
            && t.as_str().contains("\"hello_ack\"")
        {
            return ws;
        }
    }
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn stop(mut child: Child) {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap();
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join(".oxydra")).unwrap();
    // The model is never called: startup makes no network access.
    std::fs::write(
        dir.path().join(".oxydra/agent.toml"),
        "[selection]\nprovider = \"local\"\nmodel = \"gpt-4o-mini\"\n\
         [providers.registry.local]\nprovider_type = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\napi_key_env = \"LOCAL_KEY\"\n",
    )
    .unwrap();
    // First start compiles the components into the cache; it is not what is measured.
    let (child, url, cold) = start(dir.path());
    drop(hello(&url));
    stop(child);
    let (mut ready, mut acked, mut rss) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..RUNS {
        let t = Instant::now();
        let (child, url, r) = start(dir.path());
        let ws = hello(&url);
        acked.push(t.elapsed().as_secs_f64() * 1000.0);
        ready.push(r.as_secs_f64() * 1000.0);
        std::thread::sleep(Duration::from_millis(200));
        rss.push(rss_kib(child.id()) as f64 / 1024.0);
        drop(ws);
        stop(child);
    }
    println!(
        "serve, {RUNS} starts on a warm cache (first, cold start: {:.1} ms)",
        cold.as_secs_f64() * 1000.0
    );
    println!(
        "  spawn → gateway ready     p50 {:>6.1} ms  max {:>6.1} ms   target ≤ 30 ms",
        pct(&mut ready, 0.5),
        pct(&mut ready, 1.0)
    );
    println!(
        "  spawn → hello_ack         p50 {:>6.1} ms  max {:>6.1} ms   reference 122.8 ms",
        pct(&mut acked, 0.5),
        pct(&mut acked, 1.0)
    );
    println!(
        "  idle RSS, all bundled components loaded, one client: p50 {:.1} MB   target ≤ 30 MB, reference ~54 MB",
        pct(&mut rss, 0.5)
    );
}
