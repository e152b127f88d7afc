//! The runner and the `process` tier end to end: `oxydra-host --user alice start
//! --insecure` launches `serve` as a confined child (Landlock, seccomp, no_new_privs,
//! rlimits), with no network of its own, and the turn still completes — through the
//! runner's 127.0.0.1 listener forwarded to the runtime's unix socket, the model reached
//! through the runner's egress proxy. From another process: `status`, `logs`, `restart`,
//! `stop`; a runtime killed with SIGKILL is started again.
//! A scripted OpenAI-compatible server on 127.0.0.1 plays the model.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;
#[path = "common/reap.rs"]
mod reap;
#[path = "common/runner.rs"]
mod runner;
#[path = "../../runtime/tests/common/server.rs"]
mod server;

use common::Env;
use common::gateway::token;
use runner::turn;
use serde_json::json;
use std::time::{Duration, Instant};

fn proc_status(pid: u64) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default()
}

fn alive(pid: u64) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !proc_status(pid).contains("State:\tZ")
}

#[test]
fn the_process_tier_confines_the_runtime_and_a_turn_completes_through_the_runner() {
    let env = Env::new(vec![
        server::openai::answer("answered from inside the tier", None),
        server::openai::answer("answered after a SIGKILL", None),
        server::openai::answer("answered after a restart", None),
    ]);
    let mut runner = env.start(&["--insecure"]);
    let url = runner.url();
    assert!(url.starts_with("ws://127.0.0.1:"), "{url}");
    let ws = env.alice();
    for d in ["shared", "tmp", "vault", "ipc", "logs"] {
        assert!(ws.join(d).is_dir(), "the runner prepares {d}/");
    }
    assert_eq!(
        std::fs::read_to_string(ws.join("ipc/gateway-endpoint"))
            .unwrap()
            .trim(),
        url,
        "clients find the runner's listener"
    );
    let tok = token(&ws);
    assert_eq!(turn(&url, &tok, "hello?"), "answered from inside the tier");

    // What status says, and what the kernel says about the runtime.
    let s = env.ready(None);
    assert_eq!(s["tier"], "process");
    assert_eq!(s["health"], "ok", "{s}");
    // No shell sidecar in this tier, so the model is not offered shell_exec.
    assert!(s["shell"].is_null(), "{s}");
    let offered = env.server.requests()[0].json()["tools"].to_string();
    assert!(offered.contains("file_read"), "{offered}");
    assert!(!offered.contains("shell_exec"), "{offered}");
    let pid = s["runtime_pid"].as_u64().unwrap();
    let proc = proc_status(pid);
    assert!(proc.contains("NoNewPrivs:\t1"), "{proc}");
    assert!(proc.contains("Seccomp:\t2"), "a seccomp filter: {proc}");
    let verified = s["verified"].to_string();
    assert!(verified.contains("no TCP socket"), "{s}");
    assert!(verified.contains("no UDP socket"), "{s}");
    assert!(
        !s["degraded"].to_string().contains("can still"),
        "no protection that was tried failed: {s}"
    );
    assert!(
        proc.contains("CapEff:\t0000000000000000"),
        "no capabilities: {proc}"
    );
    assert!(verified.contains("cannot read /etc/passwd"), "{s}");
    assert!(
        verified.contains("cannot write") && verified.contains("runtime.log"),
        "{s}"
    );
    let applied = s["applied"].to_string();
    assert!(
        applied.contains("landlock") && applied.contains("seccomp"),
        "{s}"
    );
    assert!(
        s["egress_tunnels"].as_u64().unwrap() >= 1,
        "the model was reached through the egress proxy: {s}"
    );
    // The runtime's environment holds only what the runner passed.
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    assert!(
        environ.contains("LOCAL_KEY="),
        "the provider's key is passed"
    );
    assert!(
        !environ.contains("CARGO"),
        "nothing else is inherited: {environ}"
    );

    // Another process that reaches the runner's sockets gets nothing without the
    // secrets: the egress proxy serves only its runtime, the control socket only
    // holders of ipc/runner-control.secret.
    {
        use std::io::{Read, Write};
        let mut p = std::os::unix::net::UnixStream::connect(ws.join("ipc/egress.sock")).unwrap();
        p.write_all(
            format!(
                "CONNECT {} HTTP/1.1\r\n\r\n",
                env.server.url.trim_start_matches("http://")
            )
            .as_bytes(),
        )
        .unwrap();
        let mut answer = String::new();
        p.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 407"), "{answer}");
        let mut c =
            std::os::unix::net::UnixStream::connect(ws.join("ipc/runner-control.sock")).unwrap();
        c.write_all(b"{\"secret\":\"guess\",\"op\":\"stop\"}\n")
            .unwrap();
        let mut answer = String::new();
        c.read_to_string(&mut answer).unwrap();
        assert!(answer.contains("wrong control secret"), "{answer}");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(ws.join("ipc/runner-control.secret"))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }

    // The human form names the protections and the degraded reasons.
    let (code, human, _) = env.ctl(&["status"]);
    assert_eq!(code, 0);
    assert!(human.contains("tier       process"), "{human}");
    assert!(human.contains(&format!("runtime    pid {pid}")), "{human}");

    // Logs, through the runner.
    let (code, logs, err) = env.ctl(&["logs", "--tail", "50"]);
    assert_eq!(code, 0, "{err}");
    assert!(logs.contains("runner: runtime ready in"), "{logs}");
    assert!(
        logs.contains("gateway unix:"),
        "the runtime's own output: {logs}"
    );
    assert!(logs.lines().count() <= 50);

    // A runtime that dies is started again; the gateway URL stays.
    std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    let s = env.ready(Some(pid));
    assert_eq!(s["restarts"], 1, "{s}");
    assert!(s["last_exit"].as_str().unwrap().contains("signal 9"), "{s}");
    assert_eq!(turn(&url, &tok, "still there?"), "answered after a SIGKILL");

    // restart returns once the new runtime is ready.
    let before = s["runtime_pid"].as_u64().unwrap();
    let (code, _, err) = env.ctl(&["restart"]);
    assert_eq!(code, 0, "{err}");
    let s = env.status();
    assert_eq!(s["state"], "ready", "{s}");
    assert_ne!(s["runtime_pid"].as_u64(), Some(before));
    assert!(!alive(before), "the old runtime is gone");
    assert_eq!(turn(&url, &tok, "and now?"), "answered after a restart");

    // A second runner for the same user is refused.
    let (code, _, err) = env.ctl(&["start", "--insecure"]);
    assert_ne!(code, 0);
    assert!(err.contains("already running"), "{err}");

    // stop ends both; nothing is left behind.
    let last = s["runtime_pid"].as_u64().unwrap();
    let (code, _, err) = env.ctl(&["stop"]);
    assert_eq!(code, 0, "{err}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = runner.child.0.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "the runner did not exit on stop");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}: {}", runner.err.lock().unwrap());
    assert!(!alive(last), "the runtime is gone");
    assert!(!ws.join("ipc/runner-control.sock").exists());
    assert!(!ws.join("ipc/gateway-endpoint").exists());
    let (code, _, err) = env.ctl(&["status"]);
    assert_eq!(code, 2);
    assert!(err.contains("no runner is running"), "{err}");
    let _ = &mut runner;
}

#[test]
fn what_a_tier_cannot_do_is_refused_with_what_to_pass() {
    let env = Env::new(vec![]);
    let d = env.dir.path().join(".oxydra");
    // The micro_vm tier's shell sidecar is the container tier's: a Firecracker shell VM
    // key is refused, not ignored.
    std::fs::write(
        d.join("runner.toml"),
        "default_tier = \"micro_vm\"\n[guest_images]\nfirecracker_shell_vm_config = \"/etc/fc.json\"\n",
    )
    .unwrap();
    let (code, _, err) = env.ctl(&["start"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("guest_images.firecracker_shell_vm_config") && err.contains("remove the key"),
        "{err}"
    );
    // A Firecracker template that is not there says what to do.
    std::fs::write(
        d.join("runner.toml"),
        "default_tier = \"micro_vm\"\n[micro_vm]\nfirecracker = \"/bin/true\"\n[guest_images]\nfirecracker_oxydra_vm_config = \"/nonexistent/fc.json\"\n",
    )
    .unwrap();
    let (code, _, err) = env.ctl(&["start"]);
    assert_ne!(code, 0, "{err}");
    assert!(
        err.contains("/nonexistent/fc.json") && err.contains("remove the key"),
        "{err}"
    );
    // A CPU limit the process tier cannot apply is refused, not ignored.
    std::fs::write(
        d.join("runner.toml"),
        "[users.alice]\nconfig_path = \"users/alice.toml\"\n",
    )
    .unwrap();
    std::fs::create_dir_all(d.join("users")).unwrap();
    std::fs::write(d.join("users/alice.toml"), "[resources]\nmax_vcpus = 2\n").unwrap();
    let (code, _, err) = env.ctl(&["start", "--insecure"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("max_vcpus"), "{err}");
    // The process tier has no shell sidecar: asking for one is refused, not ignored.
    std::fs::write(
        d.join("users/alice.toml"),
        "[behavior]\nshell_enabled = true\n",
    )
    .unwrap();
    let (code, _, err) = env.ctl(&["start", "--insecure"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("shell_enabled") && err.contains("container tier"),
        "{err}"
    );
    // A sidecar image that is not a reference is refused where it was set.
    std::fs::write(
        d.join("runner.toml"),
        "[guest_images]\nshell_vm = \"oxydra shell\"\n",
    )
    .unwrap();
    let (code, _, err) = env.ctl(&["config", "validate"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("guest_images.shell_vm") && err.contains("oxydra-shell:local"),
        "{err}"
    );
    // serve --confine outside a runner says who starts it.
    let (code, _, err) = env.ctl(&["serve", "--confine"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("started by the runner"), "{err}");
}

#[test]
fn web_tools_work_inside_the_tier_through_the_proxy_and_its_policy() {
    let page = server::Server::routes("127.0.0.1", |_| server::Reply {
        status: 200,
        headers: vec![("content-type".into(), "text/html; charset=utf-8".into())],
        body: vec![server::Piece::Bytes(
            b"<html><body><h1>Release notes</h1><p>Tiers landed.</p></body></html>".to_vec(),
        )],
        before_head: None,
    });
    let url = format!("{}/notes", page.url);
    let env = Env::with_config(
        vec![
            server::openai::tool_calls(
                &[
                    ("w1", "web_fetch", json!({ "url": url })),
                    (
                        "w2",
                        "web_fetch",
                        json!({ "url": "http://169.254.169.254/latest/meta-data/" }),
                    ),
                ],
                None,
            ),
            server::openai::answer("Tiers landed.", None),
        ],
        &format!("[tools.web]\nallow = [\"127.0.0.1:{}\"]\n", page.port()),
    );
    let runner = env.start(&["--insecure"]);
    let gw = runner.url();
    let tok = token(&env.alice());
    assert_eq!(turn(&gw, &tok, "what landed?"), "Tiers landed.");
    let req = &env.server.requests()[1];
    let body = &req.body;
    assert!(
        body.contains("Release notes"),
        "the page reached the model: {body}"
    );
    assert!(
        body.contains("egress denied") && body.contains("169.254.0.0/16"),
        "the metadata address is refused: {body}"
    );
    assert_eq!(page.requests().len(), 1);
    let s = env.status();
    assert!(
        s["egress_tunnels"].as_u64().unwrap() >= 2,
        "model and page: {s}"
    );
}

#[test]
fn a_stdio_mcp_server_runs_inside_the_process_tier_confined_twice() {
    // The model asks for the agent's config by its real path once it knows it: the
    // runtime may read it (its own confinement allows its config), the server may not
    // (its confinement, inside the runtime's, does not).
    let target: std::sync::Arc<std::sync::Mutex<String>> = Default::default();
    let v = target.clone();
    let n = std::sync::atomic::AtomicUsize::new(0);
    let model = server::Server::routes("127.0.0.1", move |_| {
        match n.fetch_add(1, std::sync::atomic::Ordering::SeqCst) {
            0 => server::openai::tool_calls(
                &[
                    ("m1", "t__echo", json!({ "text": "from inside" })),
                    (
                        "m2",
                        "t__read_file",
                        json!({ "path": v.lock().unwrap().clone() }),
                    ),
                    ("m3", "t__env", json!({})),
                ],
                None,
            ),
            _ => server::openai::answer("done", None),
        }
    });
    let env = Env::with_server(
        model,
        &format!(
            "[mcp.servers.t]\ncommand = {:?}\nargs = [{:?}, \"stdio\"]\n",
            common::mcp::mcp_python().display().to_string(),
            common::mcp::server_script().display().to_string(),
        ),
    );
    let config = env.dir.path().join(".oxydra/agent.toml");
    *target.lock().unwrap() = config.display().to_string();
    let runner = env.start(&["--insecure"]);
    let gw = runner.url();
    let tok = token(&env.alice());
    assert_eq!(turn(&gw, &tok, "use the MCP tools"), "done");
    let req = env.server.requests()[1].json();
    let results: Vec<String> = req["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(results[0], "from inside", "{results:?}");
    assert!(
        results[1].contains("Permission denied") && !results[1].contains("[mcp.servers.t]"),
        "{results:?}"
    );
    // No variable of the runner's or the runtime's (its egress secret, its gateway
    // token) reaches the server.
    let vars: serde_json::Value = serde_json::from_str(&results[2]).unwrap();
    let names: Vec<&str> = vars
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(names, ["HOME", "LANG", "PATH", "TMPDIR"], "{vars}");
}
