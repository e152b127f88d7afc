//! The runner and its tiers as processes: `start --insecure` → gateway ready (a
//! warm compile cache), the added latency per turn of the runner's path (the 127.0.0.1
//! listener forwarded to the runtime's unix socket, the model reached through the egress
//! proxy) against `serve` on its own, and the runner's idle RSS. A loopback
//! OpenAI-compatible server plays the model. Then the same for the micro_vm tier when
//! QEMU, vhost-device-vsock and the guest images are here, and for the container tier
//! when a Docker engine with the image `oxydra-runtime:local` answers on `DOCKER_HOST`.
//! Prints figures; asserts nothing about speed.
//!
//! cargo bench -p oxydra-cli --bench runner
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

#[path = "../../runtime/tests/common/server.rs"]
mod server;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tungstenite::Message;

const STARTS: usize = 5;
const TURNS: usize = 40;

fn cmd(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_oxydra-host"));
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir.join("home"))
        .env("XDG_CACHE_HOME", dir.join("home/.cache"))
        .env("LOCAL_KEY", "sk-bench")
        .env("OXYDRA_GATEWAY_TOKEN", "bench-token-0123456789")
        .envs(std::env::var_os("DOCKER_HOST").map(|h| ("DOCKER_HOST", h)))
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    c
}

/// Spawn, and wait for the URL line: (child, url, time to the line).
fn start(mut c: Command) -> (Child, String, Duration) {
    let t = Instant::now();
    let mut child = c.spawn().unwrap();
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

type Ws = tungstenite::WebSocket<TcpStream>;

fn until(ws: &mut Ws, ty: &str) {
    let needle = format!("\"type\":\"{ty}\"");
    loop {
        if let Message::Text(t) = ws.read().unwrap()
            && t.as_str().contains(&needle)
        {
            return;
        }
    }
}

fn hello(url: &str) -> Ws {
    let stream =
        TcpStream::connect(url.trim_start_matches("ws://").trim_end_matches("/ws")).unwrap();
    stream.set_nodelay(true).unwrap();
    let (mut ws, _) = tungstenite::client(url, stream).unwrap();
    ws.send(Message::text(
        r#"{"type":"hello","payload":{"protocol_version":3,"token":"bench-token-0123456789"}}"#,
    ))
    .unwrap();
    until(&mut ws, "hello_ack");
    ws
}

/// Milliseconds per turn, `TURNS` turns on one connection (after two to warm up).
fn turns(url: &str) -> Vec<f64> {
    let mut ws = hello(url);
    let mut out = Vec::new();
    for i in 0..TURNS + 2 {
        let t = Instant::now();
        ws.send(Message::text(
            r#"{"type":"send_turn","payload":{"prompt":"ping"}}"#,
        ))
        .unwrap();
        until(&mut ws, "turn_completed");
        if i >= 2 {
            out.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    out
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
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

/// The runtime's pid, from the runner's status.
fn runtime_pid(dir: &Path) -> u32 {
    let o = cmd(dir, &["--user", "alice", "status", "--json"])
        .output()
        .unwrap();
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    s["runtime_pid"].as_u64().unwrap() as u32
}

fn main() {
    let model = server::Server::routes("127.0.0.1", |_| server::openai::answer("pong", None));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join(".oxydra")).unwrap();
    std::fs::write(
        d.join(".oxydra/agent.toml"),
        format!(
            "[selection]\nprovider = \"local\"\nmodel = \"gpt-4o-mini\"\n\
             [providers.registry.local]\nprovider_type = \"openai\"\nbase_url = \"{}/v1\"\napi_key_env = \"LOCAL_KEY\"\n",
            model.url
        ),
    )
    .unwrap();
    let ws = d.join("workspaces/alice");
    let ws = ws.to_str().unwrap();
    let serve_args = ["serve", "--user", "alice", "--workspace", ws];
    let runner_args = ["--user", "alice", "start", "--insecure"];
    // The first start compiles the components into the cache; it is not measured.
    let (child, url, cold) = start(cmd(d, &serve_args));
    drop(hello(&url));
    stop(child);

    let mut ready = Vec::new();
    for _ in 0..STARTS {
        let (child, url, r) = start(cmd(d, &runner_args));
        drop(hello(&url));
        ready.push(r.as_secs_f64() * 1000.0);
        stop(child);
    }
    let (child, url, _) = start(cmd(d, &serve_args));
    let mut direct = turns(&url);
    stop(child);
    let (runner, url, _) = start(cmd(d, &runner_args));
    let mut tiered = turns(&url);
    std::thread::sleep(Duration::from_millis(500));
    let (runner_rss, runtime_rss) = (rss_mib(runner.id()), rss_mib(runtime_pid(d)));
    stop(runner);

    let (d50, t50) = (pct(&mut direct, 0.5), pct(&mut tiered, 0.5));
    println!(
        "process tier, warm cache (first, cold serve start: {:.0} ms)",
        cold.as_secs_f64() * 1000.0
    );
    println!(
        "  start --insecure → gateway ready   p50 {:>6.1} ms  max {:>6.1} ms  ({STARTS} starts)",
        pct(&mut ready, 0.5),
        pct(&mut ready, 1.0)
    );
    println!(
        "  one turn, serve on its own         p50 {d50:>6.2} ms  p90 {:>6.2} ms  ({TURNS} turns)",
        pct(&mut direct, 0.9)
    );
    println!(
        "  one turn, through the runner       p50 {t50:>6.2} ms  p90 {:>6.2} ms  (forwarded gateway + egress proxy)",
        pct(&mut tiered, 0.9)
    );
    println!(
        "  added per turn                     p50 {:>+6.2} ms",
        t50 - d50
    );
    println!("  idle RSS: runner {runner_rss:.1} MB, confined runtime {runtime_rss:.1} MB");

    micro_vm_tier(d, d50);
    // The container tier, when an engine with the runtime's image answers.
    let image = Command::new("docker")
        .args(["image", "inspect", "oxydra-runtime:local"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !image {
        println!(
            "container tier: not measured (no Docker engine with oxydra-runtime:local on DOCKER_HOST; ./scripts/build-guest-images.sh builds it)"
        );
        return;
    }
    container_tier(d, "container tier (runc)", "", d50);
    // gVisor, when the engine offers it (scripts/docker-engine.sh configures it).
    let runtimes = Command::new("docker")
        .args(["info", "--format", "{{json .Runtimes}}"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if runtimes.contains("\"runsc\"") {
        container_tier(
            d,
            "container tier (gVisor runsc)",
            "container_runtime = \"runsc\"\n",
            d50,
        );
    } else {
        println!("container tier (gVisor): not measured (the engine offers no runsc runtime)");
    }
}

/// Start-to-ready (runtime and shell sidecar) and per-turn figures of the container tier
/// with `extra` at the top of runner.toml; `d50`: serve on its own, p50.
fn container_tier(d: &std::path::Path, label: &str, extra: &str, d50: f64) {
    std::fs::write(
        d.join(".oxydra/runner.toml"),
        format!("{extra}default_tier = \"container\"\n[users.alice]\n"),
    )
    .unwrap();
    let container_args = ["--user", "alice", "start"];
    // The first container compiles the components into the workspace's cache.
    let (child, url, cold) = start(cmd(d, &container_args));
    drop(hello(&url));
    stop(child);
    let mut ready = Vec::new();
    for _ in 0..STARTS {
        let (child, url, r) = start(cmd(d, &container_args));
        drop(hello(&url));
        ready.push(r.as_secs_f64() * 1000.0);
        stop(child);
    }
    let (runner, url, _) = start(cmd(d, &container_args));
    let mut contained = turns(&url);
    stop(runner);
    let c50 = pct(&mut contained, 0.5);
    println!(
        "{label}, warm cache (first, cold start: {:.0} ms)",
        cold.as_secs_f64() * 1000.0
    );
    println!(
        "  start → gateway ready              p50 {:>6.1} ms  max {:>6.1} ms  ({STARTS} starts)",
        pct(&mut ready, 0.5),
        pct(&mut ready, 1.0)
    );
    println!(
        "  one turn, through the runner       p50 {c50:>6.2} ms  p90 {:>6.2} ms  (container: forwarded gateway + egress proxy)",
        pct(&mut contained, 0.9)
    );
    println!(
        "  added per turn vs serve alone      p50 {:>+6.2} ms",
        c50 - d50
    );
}

/// `name` on PATH.
fn on_path(name: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Boot-to-ready and per-turn figures of the micro_vm tier (QEMU microvm; TCG where KVM
/// cannot run the guest), when QEMU, vhost-device-vsock (PATH or VHOST_DEVICE_VSOCK)
/// and the images of scripts/build-vm-images.sh are here. `d50`: serve alone, p50.
fn micro_vm_tier(d: &Path, d50: f64) {
    let images = Path::new(env!("CARGO_BIN_EXE_oxydra-host"))
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("guest-images/microvm");
    let vhost = std::env::var_os("VHOST_DEVICE_VSOCK")
        .map(std::path::PathBuf::from)
        .or_else(|| on_path("vhost-device-vsock"));
    let (Some(vhost), true, true) = (
        vhost,
        on_path("qemu-system-x86_64").is_some(),
        images.join("runtime.ext4").is_file(),
    ) else {
        println!(
            "micro_vm tier: not measured (needs qemu-system-x86_64, vhost-device-vsock and ./scripts/build-vm-images.sh)"
        );
        return;
    };
    std::fs::write(
        d.join(".oxydra/runner.toml"),
        format!(
            "default_tier = \"micro_vm\"\n[micro_vm]\nvhost_device_vsock = \"{}\"\n[users.alice]\nconfig_path = \"users/alice.toml\"\n",
            vhost.display()
        ),
    )
    .unwrap();
    std::fs::create_dir_all(d.join(".oxydra/users")).unwrap();
    std::fs::write(
        d.join(".oxydra/users/alice.toml"),
        "[behavior]\nshell_enabled = false\n",
    )
    .unwrap();
    let args = ["--user", "alice", "start"];
    // The first boot compiles the components inside the guest, into the workspace.
    let (child, url, cold) = start(cmd(d, &args));
    drop(hello(&url));
    stop(child);
    let mut ready = Vec::new();
    for _ in 0..VM_STARTS {
        let (child, url, r) = start(cmd(d, &args));
        drop(hello(&url));
        ready.push(r.as_secs_f64() * 1000.0);
        stop(child);
    }
    let (runner, url, _) = start(cmd(d, &args));
    let mut hellos: Vec<f64> = (0..TURNS)
        .map(|_| {
            let t = Instant::now();
            drop(hello(&url));
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    let mut vm = turns(&url);
    stop(runner);
    let _ = std::fs::remove_file(d.join(".oxydra/runner.toml"));
    let _ = std::fs::remove_file(d.join(".oxydra/users/alice.toml"));
    let v50 = pct(&mut vm, 0.5);
    println!(
        "micro_vm tier, warm cache (first boot, compiling in the guest: {:.0} ms)",
        cold.as_secs_f64() * 1000.0
    );
    println!(
        "  start → gateway ready              p50 {:>6.1} ms  max {:>6.1} ms  ({VM_STARTS} boots)",
        pct(&mut ready, 0.5),
        pct(&mut ready, 1.0)
    );
    println!(
        "  connect + hello over vsock         p50 {:>6.2} ms  p90 {:>6.2} ms  ({TURNS} connections)",
        pct(&mut hellos, 0.5),
        pct(&mut hellos, 0.9)
    );
    println!(
        "  one turn, through the VM           p50 {v50:>6.2} ms  p90 {:>6.2} ms  (gateway and egress over vsock)",
        pct(&mut vm, 0.9)
    );
    println!(
        "  added per turn vs serve alone      p50 {:>+6.2} ms",
        v50 - d50
    );
}

/// VM boots are seconds each under TCG.
const VM_STARTS: usize = 3;
