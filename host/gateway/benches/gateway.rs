//! Prints figures (`cargo bench -p oxydra-gateway --bench gateway`, after scripts/build.sh);
//! never asserts timings. Against a zero-latency loopback model (an always-answering
//! HTTP/1.1 SSE server in this file, TCP_NODELAY, no pauses) and the real bundled
//! components:
//!
//! (a) one turn over the WebSocket, text only and with one `file_read`, p50/p99 over 200
//!     turns each, and the same turn through `SessionService::submit` in-process, so the
//!     gateway's own cost shows;
//! (b) 1,000 sessions each running one turn at once: 1,000 WebSocket connections, one
//!     session each; p50/p99 turn latency and errors (and the same 1,000 turns through
//!     `submit` directly, to tell the gateway's share from the service's);
//! (c) memory per idle session: VmRSS before/after creating 1,000 idle sessions, and after
//!     archiving them.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use futures_util::{SinkExt, StreamExt};
use oxydra_gateway::token::Token;
use oxydra_gateway::{Gateway, GatewayOptions};
use oxydra_session::config::AgentConfig;
use oxydra_session::config::agent::{ProviderEntry, ProviderType};
use oxydra_session::{ServiceOptions, SessionService, System};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

const TURNS: usize = 200;
const WARMUP: usize = 20;
const SESSIONS: usize = 1000;
const TOKEN: &str = "bench-token-0123456789abcdef0123456789";
const TEXT_PROMPT: &str = "say hello";
const TOOL_PROMPT: &str = "use the tool on /shared/a.txt";

// ---------------------------------------------------------------------------------------
// The model: answers every request at once. A request that carries a tool result, or
// whose prompt does not ask for the tool, gets a text answer; otherwise one file_read.

mod model {
    use super::*;

    const CALL: &str = "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c1\",\"type\":\"function\",\"function\":{\"name\":\"file_read\",\"arguments\":\"{\\\"path\\\":\\\"/shared/a.txt\\\"}\"}}]},\"finish_reason\":\"tool_calls\"}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":50,\"completion_tokens\":10}}\n\ndata: [DONE]\n\n";
    const ANSWER: &str = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"done\"},\"finish_reason\":\"stop\"}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":80,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n";

    /// Serve on a thread (and a one-thread runtime) of its own; the provider's base URL.
    pub fn start() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        listener.set_nonblocking(true).unwrap();
        std::thread::Builder::new()
            .name("bench-model".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                    loop {
                        let Ok((s, _)) = listener.accept().await else {
                            continue;
                        };
                        s.set_nodelay(true).unwrap();
                        tokio::spawn(serve(s));
                    }
                });
            })
            .unwrap();
        url
    }

    fn find(h: &[u8], needle: &[u8]) -> Option<usize> {
        h.windows(needle.len()).position(|w| w == needle)
    }

    /// A complete chunked body at the start of `b`: (body, bytes used).
    fn chunked(b: &[u8]) -> Option<(Vec<u8>, usize)> {
        let mut body = Vec::new();
        let mut at = 0;
        loop {
            let line = find(&b[at..], b"\r\n")?;
            let size = std::str::from_utf8(&b[at..at + line]).ok()?;
            let n = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
            let start = at + line + 2;
            if b.len() < start + n + 2 {
                return None;
            }
            body.extend_from_slice(&b[start..start + n]);
            at = start + n + 2;
            if n == 0 {
                return Some((body, at));
            }
        }
    }

    async fn serve(mut s: TcpStream) {
        let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
        let mut tmp = vec![0u8; 64 * 1024];
        loop {
            let head_end = loop {
                if let Some(i) = find(&buf, b"\r\n\r\n") {
                    break i + 4;
                }
                match s.read(&mut tmp).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&tmp[..n]),
                }
            };
            let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            let close = head.contains("connection: close");
            let (body, used) = loop {
                let rest = &buf[head_end..];
                let done = match len {
                    Some(n) if rest.len() >= n => Some((rest[..n].to_vec(), n)),
                    Some(_) => None,
                    None if head.contains("chunked") => chunked(rest),
                    None => Some((Vec::new(), 0)),
                };
                if let Some(d) = done {
                    break d;
                }
                match s.read(&mut tmp).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&tmp[..n]),
                }
            };
            buf.drain(..head_end + used);
            let body = String::from_utf8_lossy(&body);
            let reply = if body.contains("\"role\":\"tool\"") || !body.contains("use the tool") {
                ANSWER
            } else {
                CALL
            };
            let out = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: {}\r\nconnection: {}\r\n\r\n{reply}",
                reply.len(),
                if close { "close" } else { "keep-alive" }
            );
            if s.write_all(out.as_bytes()).await.is_err() || close {
                return;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------

fn system(model_url: &str, cache: &Path) -> Arc<System> {
    let mut cfg = AgentConfig::default();
    cfg.providers.registry.insert(
        "bench".into(),
        ProviderEntry {
            provider_type: ProviderType::Openai,
            base_url: Some(model_url.to_string()),
            api_key_env: Some("OXYDRA_BENCH_NO_KEY".into()),
            ..Default::default()
        },
    );
    cfg.selection.provider = "bench".into();
    cfg.components.bundled_dir =
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/release/components"));
    cfg.components.cache_dir = Some(cache.to_path_buf());
    // 1,000 sessions with a turn each at once.
    cfg.gateway.max_sessions_per_user = 4000;
    cfg.gateway.max_concurrent_turns_per_user = 1000;
    Arc::new(System::new(cfg, None).unwrap())
}

fn service(system: &Arc<System>, ws: &Path, idle_ttl: Option<Duration>) -> Arc<SessionService> {
    let mut opts = ServiceOptions::from_config(&system.config);
    if let Some(t) = idle_ttl {
        opts.idle_ttl = t;
        // (c) keeps 10,000 idle sessions live.
        opts.max_live_sessions = 20 * SESSIONS as u32;
    }
    let svc = SessionService::open(system.clone(), "bench", ws, opts).unwrap();
    // The workspace is laid out with the first session.
    svc.create(None, Some("setup")).unwrap();
    std::fs::write(ws.join("shared/a.txt"), "hello from a file").unwrap();
    Arc::new(svc)
}

fn proc_status(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[(((v.len() as f64) - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

struct Client {
    ws: WebSocketStream<TcpStream>,
    /// Frames read, and how many were `turn_progress` of kind `queued`.
    frames: usize,
    queued: usize,
}

impl Client {
    async fn connect(addr: std::net::SocketAddr, hello: Value) -> Result<(Client, Value), String> {
        let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let (ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/ws"), stream)
            .await
            .map_err(|e| e.to_string())?;
        let mut c = Client {
            ws,
            frames: 0,
            queued: 0,
        };
        let mut p = json!({"protocol_version": 3, "token": TOKEN});
        for (k, v) in hello.as_object().unwrap() {
            p[k] = v.clone();
        }
        c.send("hello", p).await?;
        let ack = c.until(&["hello_ack"]).await?;
        Ok((c, ack))
    }

    async fn send(&mut self, ty: &str, payload: Value) -> Result<(), String> {
        self.ws
            .send(Message::text(
                json!({"type": ty, "payload": payload}).to_string(),
            ))
            .await
            .map_err(|e| e.to_string())
    }

    /// Frames until one of `types`: it, or what went wrong (an error, a failed turn).
    async fn until(&mut self, types: &[&str]) -> Result<Value, String> {
        loop {
            let m = tokio::time::timeout(Duration::from_secs(60), self.ws.next())
                .await
                .map_err(|_| "no frame within 60 s".to_string())?;
            let Some(Ok(Message::Text(t))) = m else {
                return Err(format!("connection ended: {m:?}"));
            };
            let f: Value = serde_json::from_str(t.as_str()).map_err(|e| e.to_string())?;
            let ty = f["type"].as_str().unwrap_or_default();
            self.frames += 1;
            if f["payload"]["progress"]["kind"] == "queued" {
                self.queued += 1;
            }
            if types.contains(&ty) {
                return Ok(f);
            }
            if matches!(ty, "error" | "turn_failed" | "turn_cancelled") {
                return Err(f.to_string());
            }
        }
    }

    /// One turn in a new session: (latency from send_turn to turn_completed).
    async fn turn_in_new_session(&mut self, prompt: &str) -> Duration {
        self.send("create_session", json!({})).await.unwrap();
        self.until(&["session_created"]).await.unwrap();
        let t = Instant::now();
        self.send("send_turn", json!({"prompt": prompt}))
            .await
            .unwrap();
        let done = self.until(&["turn_completed"]).await.unwrap();
        let elapsed = t.elapsed();
        assert_eq!(done["payload"]["response"]["message"], "done");
        elapsed
    }
}

fn direct_turn(svc: &SessionService, prompt: &str) -> Duration {
    let s = svc.create(None, None).unwrap();
    let t = Instant::now();
    let summary = svc
        .submit(&s.id, prompt)
        .unwrap()
        .wait_finished(|_| {})
        .unwrap();
    let elapsed = t.elapsed();
    assert_eq!(summary.outcome.unwrap().answer, "done");
    elapsed
}

async fn serve(
    svc: &Arc<SessionService>,
    opts: GatewayOptions,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let token = Token {
        value: TOKEN.into(),
        source: "the bench".into(),
    };
    let gw = Gateway::bind("127.0.0.1:0".parse().unwrap(), svc.clone(), token, opts)
        .await
        .unwrap();
    let addr = gw.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(gw.run(async {
        let _ = stopped.await;
    }));
    (addr, stop, run)
}

fn main() {
    let root = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let url = model::start();
    // Compiled components are kept between runs: a warm start, as `serve` has.
    let system = system(
        &url,
        &PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("gateway-bench-cache"),
    );
    // OXYDRA_GATEWAY_BENCH=a, b or c runs those parts only (for profiling).
    let only = std::env::var("OXYDRA_GATEWAY_BENCH").unwrap_or_default();
    let part = |p: &str| only.is_empty() || only.contains(p);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("oxydra-gateway bench: {cores} CPU cores, zero-latency loopback model");
    // (c) first, while the process is small.
    if part("c") {
        idle_memory(&system, &root.path().join("ws-idle"));
    }
    if part("a") {
        one_turn(&rt, &system, &root.path().join("ws-a"));
    }
    if part("b") {
        // The reference's load first (200), then the target's (1,000).
        many_sessions(&rt, &system, root.path(), 200);
        many_sessions(&rt, &system, root.path(), SESSIONS);
    }
}

/// (c) VmRSS before and after 1,000 idle sessions, after archiving them, after making
/// 1,000 more (is what archiving freed reused?), and for 10,000 (finer than the heap's
/// own slack).
fn idle_memory(system: &Arc<System>, ws: &Path) {
    let svc = service(system, ws, Some(Duration::ZERO));
    svc.archive_idle();
    let rss = || proc_status("VmRSS:");
    let threads = || proc_status("Threads:");
    let create = |n: usize| {
        let t = Instant::now();
        for _ in 0..n {
            svc.create(None, None).unwrap();
        }
        t.elapsed() / n as u32
    };
    let (r0, t0) = (rss(), threads());
    let each = create(SESSIONS);
    let (r1, t1, live) = (rss(), threads(), svc.live_sessions());
    let archived = svc.archive_idle().len();
    let (r2, t2) = (rss(), threads());
    create(SESSIONS);
    let r3 = rss();
    svc.archive_idle();
    let r4 = rss();
    create(10 * SESSIONS);
    let (r5, live10) = (rss(), svc.live_sessions());
    svc.archive_idle();
    let r6 = rss();
    drop(svc);
    println!();
    println!("== (c) memory per idle session");
    println!(
        "reference Oxydra 0.7 MB per idle session, never released; target <= 100 KB, released"
    );
    let kb = |a: u64, b: u64, n: usize| (a as f64 - b as f64) / n as f64;
    let mb = |a: u64| a as f64 / 1024.0;
    println!(
        "{live} idle sessions: VmRSS {:.1} -> {:.1} MB, {:+.1} KB per session; threads {t0} -> {t1}; {:.2} ms per create",
        mb(r0),
        mb(r1),
        kb(r1, r0, SESSIONS),
        each.as_secs_f64() * 1e3
    );
    println!(
        "archived {archived}: VmRSS {:.1} MB ({:+.1} KB per session vs before; threads {t2}); {SESSIONS} new ones after that: {:.1} MB ({:+.1} KB per session: what archiving freed is reused)",
        mb(r2),
        kb(r2, r0, SESSIONS),
        mb(r3),
        kb(r3, r2, SESSIONS)
    );
    println!(
        "{live10} idle sessions: VmRSS {:.1} -> {:.1} MB, {:+.1} KB per session; archived: {:.1} MB",
        mb(r4),
        mb(r5),
        kb(r5, r4, 10 * SESSIONS),
        mb(r6)
    );
}

/// (a) one turn over the WebSocket vs through submit, interleaved, new session each.
fn one_turn(rt: &tokio::runtime::Runtime, system: &Arc<System>, ws: &Path) {
    let svc = service(system, ws, Some(Duration::ZERO));
    let mut results = Vec::new();
    rt.block_on(async {
        let (addr, stop, run) = serve(&svc, GatewayOptions::from_config(&system.config)).await;
        let (mut c, _) = Client::connect(addr, json!({})).await.unwrap();
        for (name, prompt) in [("text only", TEXT_PROMPT), ("one file_read", TOOL_PROMPT)] {
            let (mut ws, mut direct) = (Vec::new(), Vec::new());
            for i in 0..WARMUP + TURNS {
                let w = c.turn_in_new_session(prompt).await;
                let s = svc.clone();
                let d = tokio::task::spawn_blocking(move || {
                    let d = direct_turn(&s, prompt);
                    // Archive the idle sessions between turns (untimed): each turn
                    // starts from the same state.
                    s.archive_idle();
                    d
                })
                .await
                .unwrap();
                if i >= WARMUP {
                    ws.push(w);
                    direct.push(d);
                }
            }
            results.push((name, ws, direct));
        }
        let _ = stop.send(());
        let _ = run.await;
    });
    drop_off_runtime(svc);
    println!();
    println!("== (a) one turn, new session each, p50 / p99 over {TURNS} turns (interleaved)");
    println!(
        "reference Oxydra 1.20 ms text turn, 3.64 ms one-tool turn; target <= 1 ms p50 beyond the model"
    );
    for (name, mut ws, mut direct) in results {
        let (w50, w90, w99) = (pct(&mut ws, 0.5), pct(&mut ws, 0.9), pct(&mut ws, 0.99));
        let (d50, d90, d99) = (
            pct(&mut direct, 0.5),
            pct(&mut direct, 0.9),
            pct(&mut direct, 0.99),
        );
        println!(
            "{name:<14} WebSocket p50 {:>6.3} ms  p90 {:>6.3}  p99 {:>7.3} | submit in-process p50 {:>6.3} ms  p90 {:>6.3}  p99 {:>7.3} | the gateway adds {:+.3} ms p50",
            ms(w50),
            ms(w90),
            ms(w99),
            ms(d50),
            ms(d90),
            ms(d99),
            ms(w50) - ms(d50)
        );
    }
}

/// (b) 1,000 sessions, one text turn each, all at once: over 1,000 WebSocket connections,
/// then through submit directly.
fn many_sessions(rt: &tokio::runtime::Runtime, system: &Arc<System>, root: &Path, n: usize) {
    let svc = service(system, &root.join(format!("ws-b{n}")), None);
    let (mut lat, errors, wall, setup, frames, queued) = rt.block_on(async {
        let (addr, stop, run) = serve(&svc, GatewayOptions::from_config(&system.config)).await;
        let t = Instant::now();
        let mut clients = Vec::new();
        let mut errors = Vec::new();
        // Connect in waves of 100 (the accept backlog), each with a new session.
        for wave in 0..n / 100 {
            let mut joins = Vec::new();
            for _ in 0..100 {
                joins.push(tokio::spawn(Client::connect(
                    addr,
                    json!({"create_new_session": true}),
                )));
            }
            for j in joins {
                match j.await.unwrap() {
                    Ok((c, _)) => clients.push(c),
                    Err(e) => errors.push(format!("wave {wave}: {e}")),
                }
            }
        }
        let setup = t.elapsed();
        let go = Arc::new(tokio::sync::Barrier::new(clients.len() + 1));
        let mut joins = Vec::new();
        for mut c in clients {
            let go = go.clone();
            joins.push(tokio::spawn(async move {
                go.wait().await;
                let t = Instant::now();
                let before = c.frames;
                c.send("send_turn", json!({"prompt": TEXT_PROMPT})).await?;
                c.until(&["turn_completed"]).await?;
                Ok::<_, String>((t.elapsed(), c.frames - before, c.queued))
            }));
        }
        let t = Instant::now();
        go.wait().await;
        let mut lat = Vec::new();
        let (mut frames, mut queued) = (0, 0);
        for j in joins {
            match j.await.unwrap() {
                Ok((d, f, q)) => {
                    lat.push(d);
                    frames += f;
                    queued += q;
                }
                Err(e) => errors.push(e),
            }
        }
        let wall = t.elapsed();
        let _ = stop.send(());
        let _ = run.await;
        (lat, errors, wall, setup, frames, queued)
    });
    drop_off_runtime(svc);

    // The same through submit directly (no gateway), from one thread.
    let svc = service(system, &root.join(format!("ws-b{n}-direct")), None);
    let ids: Vec<String> = (0..n).map(|_| svc.create(None, None).unwrap().id).collect();
    let t = Instant::now();
    let subs: Vec<_> = ids
        .iter()
        .map(|id| (Instant::now(), svc.submit(id, TEXT_PROMPT)))
        .collect();
    let mut d_lat = Vec::new();
    let mut d_errors = 0;
    let mut d_queued = 0;
    for (t0, sub) in subs {
        let count = |e: &oxydra_session::TurnEvent| {
            if matches!(e, oxydra_session::TurnEvent::Queued { .. }) {
                d_queued += 1;
            }
        };
        match sub.ok().and_then(|s| s.wait_finished(count)) {
            Some(s) if s.outcome.is_ok() => d_lat.push(t0.elapsed()),
            _ => d_errors += 1,
        }
    }
    let d_wall = t.elapsed();
    drop(svc);

    println!();
    println!("== (b) {n} sessions, one text turn each, all at once");
    println!(
        "reference Oxydra 200 sessions p99 186 ms; target 1,000 sessions p99 <= 100 ms, zero errors"
    );
    if !lat.is_empty() {
        println!(
            "WebSocket, {} connections (one session each): p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms  all done in {:.1} ms  errors {}  (connect + hello + create_new_session: {:.0} ms)",
            lat.len(),
            ms(pct(&mut lat, 0.5)),
            ms(pct(&mut lat, 0.99)),
            ms(pct(&mut lat, 1.0)),
            ms(wall),
            errors.len(),
            ms(setup)
        );
    }
    for e in errors.iter().take(5) {
        println!("  error: {e}");
    }
    println!(
        "  frames per turn {:.1}, of which `queued` progress {:.1} (the cap is {}: none should queue)",
        frames as f64 / lat.len().max(1) as f64,
        queued as f64 / lat.len().max(1) as f64,
        system.config.gateway.max_concurrent_turns_per_user
    );
    if !d_lat.is_empty() {
        println!(
            "submit in-process, no gateway:                   p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms  all done in {:.1} ms  errors {d_errors}",
            ms(pct(&mut d_lat, 0.5)),
            ms(pct(&mut d_lat, 0.99)),
            ms(pct(&mut d_lat, 1.0)),
            ms(d_wall)
        );
        println!(
            "  `Queued` events per turn {:.1}",
            d_queued as f64 / d_lat.len().max(1) as f64
        );
    }
}

/// The last reference to a service is dropped on a plain thread: its drop joins threads
/// and drops store runtimes.
fn drop_off_runtime(svc: Arc<SessionService>) {
    std::thread::spawn(move || drop(svc)).join().unwrap();
}
