//! Faults through the real binary: many processes on one workspace, one session driven
//! by two processes, kill -9 while tools run, a closed stdout, SIGINT. A scripted
//! OpenAI-compatible server on 127.0.0.1 plays the model.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;
#[path = "../../runtime/tests/common/server.rs"]
mod server;

use serde_json::{Value, json};
use server::{Piece, Reply};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use server::openai::{delta, stream};

fn answer(text: &str) -> Reply {
    server::openai::answer(text, None)
}

/// Streams `first`, then waits `pause` before the end of the answer.
fn slow(first: &str, pause: Duration) -> Reply {
    stream(vec![delta(first), Piece::Pause(pause)], None)
}

/// `n` lines of answer, `gap` apart.
fn drip(n: usize, gap: Duration) -> Reply {
    let pieces = (0..n)
        .flat_map(|i| [Piece::Pause(gap), delta(&format!("line {i}\n"))])
        .collect();
    stream(pieces, None)
}

fn tool_calls(calls: &[(&str, &str, Value)]) -> Reply {
    server::openai::tool_calls(calls, None)
}

use common::Env;

impl Env {
    /// `oxydra-host run --workspace <ws> <args>`.
    fn run_cmd(&self, args: &[&str]) -> Command {
        let mut c = self.cmd();
        c.arg("run")
            .args(["--workspace", self.ws().to_str().unwrap()])
            .args(args);
        c
    }
}

/// A child whose stderr is collected as it arrives.
struct Running {
    child: Child,
    err: Arc<Mutex<String>>,
}

impl Running {
    fn start(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let err = common::collect(child.stderr.take().unwrap());
        Running { child, err }
    }
    fn wait_for(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.err.lock().unwrap().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "waited for {needle:?}; stderr: {}",
                self.err.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    /// The id on the `[session] ` line, once the whole line has arrived (stderr comes
    /// in chunks: the prefix may be read before the id).
    fn session(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            {
                let e = self.err.lock().unwrap();
                let whole = e.split_inclusive('\n').find_map(|l| {
                    l.strip_prefix("[session] ")
                        .filter(|_| l.ends_with('\n'))
                        .and_then(|rest| rest.split_whitespace().next())
                        .map(str::to_string)
                });
                if let Some(id) = whole {
                    return id;
                }
                assert!(Instant::now() < deadline, "no [session] line; stderr: {e}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    fn finish(mut self) -> (std::process::ExitStatus, String) {
        let status = self.child.wait().unwrap();
        // The reader thread drains what is left.
        std::thread::sleep(Duration::from_millis(50));
        let err = self.err.lock().unwrap().clone();
        (status, err)
    }
}

fn sessions_in(store: &Path) -> usize {
    let s = oxydra_store::Store::open(store).unwrap();
    s.sessions().unwrap().len()
}

#[test]
fn twenty_runs_at_once_in_one_workspace_all_finish() {
    let env = Env::with_config(
        (0..20).map(|i| answer(&format!("answer {i}"))).collect(),
        "",
    );
    // One run first, so the first-start work (the compile cache) is not what is tested.
    let warm = Running::start(env.run_cmd(&["warm up"]));
    let (status, err) = warm.finish();
    assert!(status.success(), "{err}");
    let runs: Vec<Running> = (0..19)
        .map(|i| Running::start(env.run_cmd(&[&format!("prompt {i}")])))
        .collect();
    for r in runs {
        let (status, err) = r.finish();
        assert!(status.success(), "{err}");
    }
    assert_eq!(sessions_in(&env.ws().join(".oxydra/store.db")), 20);
    assert_eq!(env.server.requests().len(), 20);
}

#[test]
fn a_session_another_process_is_driving_is_refused_as_busy() {
    let env = Env::with_config(
        vec![
            answer("first"),
            slow("slow ", Duration::from_millis(2500)),
            answer("after"),
        ],
        "",
    );
    let first = Running::start(env.run_cmd(&["hello"]));
    let id = first.session();
    assert!(first.finish().0.success());
    let a = Running::start(env.run_cmd(&["--session", &id, "long one"]));
    a.wait_for("[session] ");
    // Give A time to send its request; B then finds the session leased.
    while env.server.requests().len() < 2 {
        std::thread::sleep(Duration::from_millis(10));
    }
    let b = Running::start(env.run_cmd(&["--session", &id, "interleaved?"]));
    let (status, err) = b.finish();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("is busy in another process"), "{err}");
    let (status, err) = a.finish();
    assert!(status.success(), "{err}");
    // Once A is done, the session takes the next turn.
    let c = Running::start(env.run_cmd(&["--session", &id, "now"]));
    let (status, err) = c.finish();
    assert!(status.success(), "{err}");
}

#[test]
fn kill_9_while_tools_run_leaves_a_history_the_provider_accepts() {
    let fixture = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/wasm32-wasip2/wasm-release/fx_handoff.wasm");
    let extra = format!(
        "[components.tools.fx_handoff]\npath = \"{}\"\ngrant = \"delegation\"\n\
         [components.tools.fx_handoff.limits]\ndeadline_ms = 60000\n",
        fixture.display()
    );
    let calls: Vec<(String, Value)> = (0..3)
        .map(|i| (format!("c{i}"), json!({"sleep_ms": 10000})))
        .collect();
    let refs: Vec<(&str, &str, Value)> = calls
        .iter()
        .map(|(id, a)| (id.as_str(), "fx_handoff", a.clone()))
        .collect();
    let env = Env::with_config(vec![tool_calls(&refs), answer("resumed")], &extra);
    let mut run = Running::start(env.run_cmd(&["sleep three times"]));
    let id = run.session();
    run.wait_for("[tool] fx_handoff");
    run.child.kill().unwrap(); // SIGKILL
    let (status, _) = run.finish();
    assert!(!status.success());

    let again = Running::start(env.run_cmd(&["--session", &id, "continue"]));
    let (status, err) = again.finish();
    assert!(status.success(), "{err}");
    assert!(err.contains("the previous turn was interrupted"), "{err}");
    let body = env.server.requests()[1].json();
    let msgs = body["messages"].as_array().unwrap();
    // Every tool call is followed by its result, as OpenAI and Anthropic require.
    let at = msgs
        .iter()
        .position(|m| m["role"] == "assistant" && m["tool_calls"].is_array())
        .unwrap_or_else(|| panic!("the assistant's calls are sent: {body}"));
    for (i, (id, _)) in calls.iter().enumerate() {
        let r = &msgs[at + 1 + i];
        assert_eq!(r["role"], "tool", "{body}");
        assert_eq!(r["tool_call_id"], id.as_str());
        assert!(
            r["content"].as_str().unwrap().contains("interrupted"),
            "{r}"
        );
    }
    assert_eq!(msgs.last().unwrap()["content"], "continue");
}

#[test]
fn a_closed_stdout_and_sigint_cancel_the_turn_and_keep_it() {
    let env = Env::with_config(
        vec![
            drip(40, Duration::from_millis(50)),
            slow("partial ", Duration::from_millis(3000)),
        ],
        "",
    );
    // `run … | head -1`: the reader goes away mid-answer; the turn is cancelled, not
    // completed (the answer had 40 lines to go).
    let mut child = env
        .run_cmd(&["write a lot"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut first = [0u8; 4];
    out.read_exact(&mut first).unwrap();
    drop(out);
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(141), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("closed stdout"), "{err}");
    let closed = err
        .lines()
        .find_map(|l| l.strip_prefix("[session] "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    let store = oxydra_store::Store::open(&env.ws().join(".oxydra/store.db")).unwrap();
    assert_eq!(
        store.turns(&closed).unwrap()[0].status,
        oxydra_store::TurnStatus::Cancelled
    );
    drop(store);

    // SIGINT: cancelled at once, persisted as cancelled, exit 130.
    let run = Running::start(env.run_cmd(&["again"]));
    let id = run.session();
    while env.server.requests().len() < 2 {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(200));
    let pid = run.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let (status, err) = run.finish();
    assert_eq!(status.code(), Some(130), "{err}");
    let store = oxydra_store::Store::open(&env.ws().join(".oxydra/store.db")).unwrap();
    let turns = store.turns(&id).unwrap();
    assert_eq!(
        turns.last().unwrap().status,
        oxydra_store::TurnStatus::Cancelled
    );
    let msgs = store.messages(&id).unwrap();
    assert!(
        msgs.iter().any(|m| m.body.contains("partial ")),
        "the partial answer is kept"
    );
}

#[test]
fn a_provider_that_never_answers_is_stopped_by_the_wall_budget_and_names_it() {
    let env = Env::with_config(vec![Reply::silent(Duration::from_secs(120))], "");
    let run = Running::start(env.run_cmd(&["--set", "runtime.max_wall_secs=1", "hello?"]));
    let (status, err) = run.finish();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(
        err.contains("allowed by runtime.max_wall_secs; raise runtime.max_wall_secs"),
        "{err}"
    );
}

#[test]
fn a_long_retry_after_is_reported_as_asked_not_as_attempts_used_up() {
    let env = Env::with_config(
        vec![
            Reply::status(429, "{\"error\":{\"message\":\"slow down\"}}")
                .header("retry-after", "3600"),
        ],
        "",
    );
    let run = Running::start(env.run_cmd(&["hello?"]));
    let (status, err) = run.finish();
    assert_eq!(status.code(), Some(1), "{err}");
    assert_eq!(
        env.server.requests().len(),
        1,
        "one request, no retries: {err}"
    );
    assert!(!err.contains("after 3 attempts"), "{err}");
    assert!(err.contains("reliability.backoff_max_ms"), "{err}");
}

#[test]
fn an_answer_past_the_byte_cap_is_cut_with_an_error_naming_the_key() {
    let big = "x".repeat(4000);
    let pieces = std::iter::repeat_n(&big, 50).map(|t| delta(t)).collect();
    let env = Env::with_config(vec![stream(pieces, None)], "");
    let run =
        Running::start(env.run_cmd(&["--set", "reliability.max_response_bytes=20000", "talk"]));
    let (status, err) = run.finish();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(err.contains("reliability.max_response_bytes"), "{err}");
    let db = std::fs::metadata(env.ws().join(".oxydra/store.db"))
        .unwrap()
        .len()
        + std::fs::metadata(env.ws().join(".oxydra/store.db-wal"))
            .map(|m| m.len())
            .unwrap_or(0);
    assert!(db < 1_000_000, "the store stayed small: {db} bytes");
}

#[test]
fn a_secret_the_model_writes_is_shown_run_and_stored_redacted() {
    let key = "sk-local-5f3e9a7c1b2d4e6f8a0b"; // LOCAL_KEY, the provider's key
    // The key split across deltas, and an AWS key id in a tool argument.
    let echo = stream(
        vec![
            delta("your key is sk-local-5f3e"),
            delta("9a7c1b2d4e6f8a0b, as asked\n"),
        ],
        None,
    );
    let write = tool_calls(&[(
        "w1",
        "file_write",
        json!({"path": "/shared/creds.txt", "content": format!("key={key}\naws=AKIAIOSFODNN7EXAMPLE\n")}),
    )]);
    let env = Env::with_config(vec![write, echo], "");
    let o = env.run_cmd(&["show me the key"]).output().unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    );
    assert!(o.status.success(), "{err}");
    assert!(out.contains("your key is [REDACTED], as asked"), "{out}");
    for (what, text) in [("stdout", &out), ("stderr", &err)] {
        assert!(!text.contains(key), "{what}: {text}");
        assert!(!text.contains("AKIAIOSFODNN7EXAMPLE"), "{what}: {text}");
    }
    let written = std::fs::read_to_string(env.ws().join("shared/creds.txt")).unwrap();
    assert!(
        !written.contains(key) && !written.contains("AKIA"),
        "{written}"
    );
    let mut stored = Vec::new();
    for f in ["store.db", "store.db-wal"] {
        if let Ok(b) = std::fs::read(env.ws().join(".oxydra").join(f)) {
            stored.extend(b);
        }
    }
    let stored = String::from_utf8_lossy(&stored);
    assert!(!stored.contains(key), "the store holds the key");
    assert!(
        !stored.contains("AKIAIOSFODNN7EXAMPLE"),
        "the store holds the AWS key id"
    );
    // The second request (after the tool ran) carries no secret back to the model either.
    assert!(!env.server.requests()[1].body.contains(key));
}

#[test]
fn logs_are_not_coloured_off_a_terminal_and_a_money_budget_needs_prices() {
    let env = Env::with_config(
        vec![tool_calls(&[("l1", "file_list", json!({}))]), answer("hi")],
        "",
    );
    let o = env
        .run_cmd(&["hello"])
        .env("OXYDRA_LOG", "debug")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("DEBUG") || err.contains("INFO"),
        "logs were written: {err}"
    );
    assert!(
        !err.contains('\u{1b}'),
        "no colour codes when stderr is not a terminal"
    );

    let env = Env::with_config(vec![], "[catalog]\nskip_catalog_validation = true\n");
    let o = env
        .run_cmd(&[
            "--set",
            "selection.model=my-local-model",
            "--set",
            "runtime.max_cost=0.5",
            "hello",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("runtime.max_cost: model `my-local-model` has no prices in the catalog"),
        "{err}"
    );
}
