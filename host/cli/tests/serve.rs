//! `oxydra-host serve` as a process: the one stdout line, the endpoint and token files,
//! the token from the environment, a user runner.toml does not list, and SIGTERM while a
//! turn streams (exit 0, the partial answer kept, the session resumable after restart).
//! A scripted OpenAI-compatible server on 127.0.0.1 plays the model; a plain WebSocket
//! client speaks to the gateway.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;
#[path = "../../runtime/tests/common/server.rs"]
mod server;

use serde_json::json;
use server::Piece;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Env;
use common::gateway::{connect, hello, next, next_of, next_of_error, send, token};

impl Env {
    fn serve(&self, extra_env: &[(&str, &str)]) -> Serve {
        let mut c = self.cmd();
        c.args(["serve", "--workspace", self.ws().to_str().unwrap()]);
        for (k, v) in extra_env {
            c.env(k, v);
        }
        Serve::start(c)
    }
}

/// A running `serve`: its stdout lines and stderr as they arrive.
struct Serve {
    child: Child,
    out: Arc<Mutex<Vec<String>>>,
    err: Arc<Mutex<String>>,
}

impl Serve {
    fn start(mut cmd: Command) -> Serve {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let err = common::collect(child.stderr.take().unwrap());
        let out = Arc::new(Mutex::new(Vec::new()));
        let o = out.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                o.lock().unwrap().push(line);
            }
        });
        Serve { child, out, err }
    }

    /// The URL from the `gateway …` line.
    fn url(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(l) = self.out.lock().unwrap().first() {
                return l.strip_prefix("gateway ").expect(l).to_string();
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("serve exited with {status}: {}", self.err.lock().unwrap());
            }
            assert!(
                Instant::now() < deadline,
                "no gateway line; stderr: {}",
                self.err.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn stop(mut self) -> (std::process::ExitStatus, Vec<String>, String) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(10));
        };
        std::thread::sleep(Duration::from_millis(50));
        let out = self.out.lock().unwrap().clone();
        let err = self.err.lock().unwrap().clone();
        (status, out, err)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn serve_prints_one_line_writes_the_endpoint_and_a_private_token_and_stops_on_sigterm() {
    let env = Env::new(vec![server::openai::answer("hi there", None)]);
    let mut serve = env.serve(&[]);
    let url = serve.url();
    assert!(
        url.starts_with("ws://127.0.0.1:") && url.ends_with("/ws"),
        "{url}"
    );
    let endpoint = std::fs::read_to_string(env.ws().join("ipc/gateway-endpoint")).unwrap();
    assert_eq!(endpoint.trim(), url);
    let tok = token(&env.ws());
    assert_eq!(tok.len(), 43, "32 bytes as URL-safe base64: {tok}");
    assert!(
        tok.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(env.ws().join("ipc/gateway-token"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let mut ws = connect(&url);
    hello(&mut ws, &tok, json!({}));
    let ack = next_of(&mut ws, "hello_ack");
    assert_eq!(ack["session"]["user_id"], "local");
    send(&mut ws, "send_turn", json!({"prompt": "hello?"}));
    let done = next_of(&mut ws, "turn_completed");
    assert_eq!(done["response"]["message"], "hi there");
    drop(ws);
    let (status, out, err) = serve.stop();
    assert!(status.success(), "{status}: {err}");
    assert_eq!(
        out,
        vec![format!("gateway {url}")],
        "exactly one stdout line"
    );
    assert!(
        !env.ws().join("ipc/gateway-endpoint").exists(),
        "the endpoint file goes when serve stops"
    );
    // A restart keeps the token.
    let mut again = env.serve(&[]);
    again.url();
    assert_eq!(token(&env.ws()), tok);
}

#[test]
fn the_token_can_come_from_the_environment_and_a_wrong_one_is_refused() {
    let env = Env::new(vec![]);
    let secret = "env-token-0123456789abcdef";
    let mut serve = env.serve(&[("OXYDRA_GATEWAY_TOKEN", secret)]);
    let url = serve.url();
    assert!(!env.ws().join("ipc/gateway-token").exists());
    let mut ws = connect(&url);
    hello(&mut ws, "wrong-wrong-wrong-wrong", json!({}));
    let e = next_of_error(&mut ws);
    assert_eq!(e["code"], "unauthorized");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("OXYDRA_GATEWAY_TOKEN"),
        "says where the token lives: {e}"
    );
    assert!(next(&mut ws).is_none(), "then the connection closes");
    let mut ws = connect(&url);
    hello(&mut ws, secret, json!({}));
    next_of(&mut ws, "hello_ack");
}

#[test]
fn a_user_runner_toml_does_not_list_is_refused_and_runner_toml_as_config_works() {
    let env = Env::new(vec![]);
    std::fs::write(
        env.dir.path().join(".oxydra/runner.toml"),
        "workspace_root = \"workspaces\"\n[users.alice]\n",
    )
    .unwrap();
    let out = env
        .cmd()
        .args(["--config", ".oxydra/runner.toml", "serve", "--user", "bob"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no user `bob`") && err.contains("alice"),
        "{err}"
    );
    let mut c = env.cmd();
    c.args([
        "--config",
        ".oxydra/runner.toml",
        "serve",
        "--user",
        "alice",
    ]);
    let mut serve = Serve::start(c);
    let url = serve.url();
    let ws_dir = env.dir.path().join("workspaces/alice");
    assert_eq!(
        std::fs::read_to_string(ws_dir.join("ipc/gateway-endpoint"))
            .unwrap()
            .trim(),
        url
    );
    let mut ws = connect(&url);
    hello(&mut ws, &token(&ws_dir), json!({}));
    let ack = next_of(&mut ws, "hello_ack");
    assert_eq!(ack["session"]["user_id"], "alice");
}

#[test]
fn sigterm_mid_turn_cancels_it_keeps_the_partial_answer_and_exits_0() {
    let env = Env::new(vec![
        server::openai::stream(
            vec![
                server::openai::delta("partial "),
                server::openai::delta("answer "),
                Piece::Pause(Duration::from_secs(30)),
            ],
            None,
        ),
        server::openai::answer("resumed", None),
    ]);
    let mut serve = env.serve(&[]);
    let url = serve.url();
    let tok = token(&env.ws());
    let mut ws = connect(&url);
    hello(&mut ws, &tok, json!({}));
    let ack = next_of(&mut ws, "hello_ack");
    let session = ack["session"]["session_id"].as_str().unwrap().to_string();
    send(&mut ws, "send_turn", json!({"prompt": "go slowly"}));
    let mut text = String::new();
    // Text streams at word boundaries (a word could still become a secret).
    while text != "partial answer " {
        text.push_str(
            next_of(&mut ws, "assistant_delta")["delta"]
                .as_str()
                .unwrap(),
        );
    }
    let started = Instant::now();
    let pid = serve.child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let cancelled = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        next_of(&mut ws, "turn_cancelled")
    })) {
        Ok(c) => c,
        Err(_) => panic!(
            "no turn_cancelled; serve's stderr: {}",
            serve.err.lock().unwrap()
        ),
    };
    assert_eq!(cancelled["session_id"], session.as_str());
    let (status, _, err) = serve.stop();
    assert!(status.success(), "{status}: {err}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "stopping does not wait for the model"
    );
    // After a restart the session resumes: the cancelled turn and its partial answer
    // are in its history, and a new turn runs in it.
    let mut serve = env.serve(&[]);
    let url = serve.url();
    let mut ws = connect(&url);
    hello(&mut ws, &tok, json!({"session_id": session}));
    let ack = next_of(&mut ws, "hello_ack");
    assert_eq!(ack["session"]["session_id"], session.as_str());
    let store = oxydra_store::Store::open(&env.ws().join(".oxydra/store.db")).unwrap();
    let history = format!("{:?}", store.turns(&session).unwrap());
    assert!(history.contains("Cancelled"), "{history}");
    let messages = format!("{:?}", store.messages(&session).unwrap());
    assert!(messages.contains("partial answer"), "{messages}");
    send(&mut ws, "send_turn", json!({"prompt": "again"}));
    let done = next_of(&mut ws, "turn_completed");
    assert_eq!(done["response"]["message"], "resumed");
}
