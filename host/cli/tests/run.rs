//! `oxydra-host run` end to end: the real binary, a scripted OpenAI-compatible server on
//! 127.0.0.1 playing the model (it calls tools), the bundled tool components, a workspace.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;
#[path = "../../runtime/tests/common/server.rs"]
mod server;

use serde_json::{Value, json};
use server::Reply;
use std::path::Path;
use std::process::{Command, Output};

use common::Env;

fn tool_calls(calls: &[(&str, &str, Value)]) -> Reply {
    server::openai::tool_calls(calls, Some((100, 20)))
}

fn answer(text: &str) -> Reply {
    server::openai::answer(text, Some((200, 10)))
}

impl Env {
    fn run(&self, extra: &[&str], prompt: &str) -> Output {
        self.cmd()
            .arg("run")
            .args(["--workspace", self.ws().to_str().unwrap()])
            .args(extra)
            .arg(prompt)
            .output()
            .unwrap()
    }
    fn request(&self, n: usize) -> Value {
        self.server.requests()[n].json()
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn session_of(o: &Output) -> String {
    let err = stderr(o);
    let line = err
        .lines()
        .find(|l| l.starts_with("[session] "))
        .unwrap_or_else(|| panic!("no session line: {err}"));
    line["[session] ".len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// The tool messages of a request, as (tool_call_id, content).
fn tool_results(req: &Value) -> Vec<(String, String)> {
    req["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "tool")
        .map(|m| {
            (
                m["tool_call_id"].as_str().unwrap().to_string(),
                m["content"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn write_then_read_then_answer_and_resume_with_context() {
    let env = Env::new(vec![
        tool_calls(&[(
            "c1",
            "file_write",
            json!({"path": "/shared/note.txt", "content": "hello from the model"}),
        )]),
        tool_calls(&[("c2", "file_read", json!({"path": "/shared/note.txt"}))]),
        answer("The note says: hello from the model"),
        answer("You asked me to write a note."),
    ]);
    let o = env.run(&[], "write a note, then read it back");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "The note says: hello from the model\n");
    assert_eq!(
        std::fs::read_to_string(env.ws().join("shared/note.txt")).unwrap(),
        "hello from the model"
    );
    let err = stderr(&o);
    assert!(err.contains("[tool] file_write ok"), "{err}");
    assert!(
        err.contains("[done] 3 model call(s), 400 input + 50 output tokens, $0.000090"),
        "{err}"
    );
    assert_eq!(
        tool_results(&env.request(2)),
        vec![
            ("c1".into(), "wrote 20 bytes to /shared/note.txt".into()),
            ("c2".into(), "hello from the model".into())
        ]
    );
    let first = env.request(0);
    let tools: Vec<&str> = first["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert!(
        tools.contains(&"file_read") && tools.contains(&"vault_copyto"),
        "{tools:?}"
    );

    // A new process continues the session with its whole history.
    let session = session_of(&o);
    let o = env.run(&["--session", &session], "what did I ask before?");
    assert!(o.status.success(), "{}", stderr(&o));
    let req = env.request(3);
    let msgs = req["messages"].as_array().unwrap();
    assert_eq!(
        msgs[1],
        json!({"role": "user", "content": "write a note, then read it back"})
    );
    assert_eq!(tool_results(&req).len(), 2);
    assert_eq!(
        msgs.last().unwrap(),
        &json!({"role": "user", "content": "what did I ask before?"})
    );
    assert_eq!(
        msgs[msgs.len() - 2]["content"],
        "The note says: hello from the model"
    );
}

#[test]
fn three_reads_in_one_answer_come_back_in_call_order() {
    let env = Env::new(vec![
        tool_calls(&[
            ("r1", "file_read", json!({"path": "/shared/a.txt"})),
            ("r2", "file_read", json!({"path": "/shared/b.txt"})),
            ("r3", "file_read", json!({"path": "/shared/c.txt"})),
        ]),
        answer("abc"),
    ]);
    std::fs::create_dir_all(env.ws().join("shared")).unwrap();
    for f in ["a", "b", "c"] {
        std::fs::write(
            env.ws().join(format!("shared/{f}.txt")),
            format!("content {f}"),
        )
        .unwrap();
    }
    let o = env.run(&[], "read three files");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        tool_results(&env.request(1)),
        vec![
            ("r1".into(), "content a".into()),
            ("r2".into(), "content b".into()),
            ("r3".into(), "content c".into())
        ]
    );
}

#[test]
fn a_failing_tool_call_goes_back_to_the_model_which_corrects_itself() {
    let env = Env::new(vec![
        tool_calls(&[("x1", "file_read", json!({"pth": "/shared/a.txt"}))]),
        tool_calls(&[("x2", "no_such_tool", json!({}))]),
        tool_calls(&[("x3", "file_read", json!({"path": "/shared/a.txt"}))]),
        answer("fixed"),
    ]);
    std::fs::create_dir_all(env.ws().join("shared")).unwrap();
    std::fs::write(env.ws().join("shared/a.txt"), "A").unwrap();
    let o = env.run(&[], "read a");
    assert!(o.status.success(), "{}", stderr(&o));
    let results = tool_results(&env.request(3));
    assert_eq!(
        results[0],
        (
            "x1".into(),
            "error: invalid arguments: Additional properties are not allowed ('pth' was unexpected); \"path\" is a required property".into()
        )
    );
    assert!(
        results[1]
            .1
            .starts_with("error: there is no tool `no_such_tool`; the tools are: "),
        "{}",
        results[1].1
    );
    assert_eq!(results[2], ("x3".into(), "A".into()));
    assert!(stderr(&o).contains("[tool] file_read failed"));
}

#[test]
fn a_budget_stops_the_turn_with_a_clear_message_and_keeps_history() {
    let looping = || tool_calls(&[("l", "file_list", json!({}))]);
    let env = Env::new(vec![looping(), looping(), answer("resumed")]);
    let o = env.run(&["--set", "runtime.max_turns=2"], "loop forever");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("error: the turn stopped after 2 model call(s): runtime.max_turns allows 2; raise runtime.max_turns"), "{err}");
    let session = session_of(&o);
    assert!(
        err.contains(&format!("continue with --session {session}")),
        "{err}"
    );
    let o = env.run(&["--session", &session], "go on");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        tool_results(&env.request(2)).len(),
        2,
        "the stopped turn's tool results are still there"
    );

    // Money: gpt-4o-mini at $0.15/M in, $0.60/M out; 100+20 tokens cost $0.000027.
    let env = Env::new(vec![looping(), looping()]);
    let o = env.run(&["--set", "runtime.max_cost=0.00002"], "spend");
    assert_eq!(o.status.code(), Some(1));
    // Money with the precision it needs, never "$0.0000 over $0.0000".
    let err = stderr(&o);
    assert!(err.contains("error: the turn stopped: it cost $0.000027, over the $0.000020 allowed by runtime.max_cost; raise runtime.max_cost"), "{err}");
}

#[test]
fn tool_output_is_scrubbed_before_the_model_sees_it() {
    let env = Env::new(vec![
        tool_calls(&[("s", "file_read", json!({"path": "/shared/.env"}))]),
        answer("ok"),
    ]);
    std::fs::create_dir_all(env.ws().join("shared")).unwrap();
    std::fs::write(
        env.ws().join("shared/.env"),
        "STRIPE_SECRET_KEY=sk_live_51Hx8aQ2eZvKYlo2C9xT7wLmN3pR5sU8vW\nLOCAL=sk-local-5f3e9a7c1b2d4e6f8a0b\nHOME_DIR=ok\n",
    )
    .unwrap();
    let o = env.run(&[], "read .env");
    assert!(o.status.success(), "{}", stderr(&o));
    let content = &tool_results(&env.request(1))[0].1;
    assert_eq!(
        content,
        "STRIPE_SECRET_KEY=[REDACTED]\nLOCAL=[REDACTED]\nHOME_DIR=ok\n"
    );
    let stored = std::fs::read(env.ws().join(".oxydra/store.db")).unwrap();
    let needle = b"sk_live_51Hx8aQ2eZvKYlo2C9xT7wLmN3pR5sU8vW";
    assert!(
        !stored.windows(needle.len()).any(|w| w == needle),
        "the store never saw it either"
    );
}

#[test]
fn kill_9_mid_turn_then_resume_with_context_intact() {
    use std::io::{BufRead, BufReader};
    let mut stalled = answer("never sent");
    stalled
        .body
        .insert(0, server::Piece::Pause(std::time::Duration::from_secs(120)));
    let env = Env::new(vec![
        tool_calls(&[(
            "k1",
            "file_write",
            json!({"path": "/shared/progress.txt", "content": "step one done"}),
        )]),
        stalled,
        answer("picked up where we left off"),
    ]);
    let mut child = env
        .cmd()
        .args([
            "run",
            "--workspace",
            env.ws().to_str().unwrap(),
            "do a long job",
        ])
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    let mut reader = BufReader::new(child.stderr.take().unwrap());
    reader.read_line(&mut first).unwrap();
    // Keep draining: a closed pipe would end the child before we kill it.
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    let session = first["[session] ".len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    // The second model call only starts after the tool result was persisted.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while env.server.requests().len() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the second model call never came"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL: no cleanup runs
    child.wait().unwrap();

    let o = env.run(&["--session", &session], "continue");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("the previous turn was interrupted"),
        "{}",
        stderr(&o)
    );
    assert_eq!(stdout(&o), "picked up where we left off\n");
    let req = env.request(2);
    let msgs = req["messages"].as_array().unwrap();
    assert_eq!(msgs[1], json!({"role": "user", "content": "do a long job"}));
    assert_eq!(msgs[2]["tool_calls"][0]["function"]["name"], "file_write");
    assert_eq!(
        tool_results(&req),
        vec![("k1".into(), "wrote 13 bytes to /shared/progress.txt".into())]
    );
    assert_eq!(
        msgs.last().unwrap(),
        &json!({"role": "user", "content": "continue"})
    );
}

/// Every tool result in a request follows the assistant message that made the call.
fn assert_pairs_intact(req: &Value) {
    let mut calls = std::collections::HashSet::new();
    for m in req["messages"].as_array().unwrap() {
        for c in m["tool_calls"].as_array().into_iter().flatten() {
            calls.insert(c["id"].as_str().unwrap().to_string());
        }
        if m["role"] == "tool" {
            assert!(
                calls.contains(m["tool_call_id"].as_str().unwrap()),
                "orphan tool result in {req}"
            );
        }
    }
}

#[test]
fn compaction_summarises_whole_turns_with_the_model() {
    let env = Env::new(vec![
        answer("ok1"),
        tool_calls(&[("t2", "file_list", json!({}))]),
        answer("ok2"),
        answer("SUMMARY: the user sent blocks A and B; the workspace was listed."),
        answer("ok3"),
        answer("ok4"),
    ]);
    let small = [
        "--set",
        "catalog.skip_catalog_validation=true",
        "--set",
        "selection.model=small-model",
        "--set",
        "runtime.context_budget.fallback_max_context_tokens=3000",
        "--set",
        "runtime.context_budget.safety_buffer_tokens=100",
        "--set",
        "providers.registry.local.max_output_tokens=500",
        "--set",
        "runtime.summarization.min_turns=2",
    ];
    let o = env.run(&small, &"A".repeat(3000));
    assert!(o.status.success(), "{}", stderr(&o));
    let session = session_of(&o);
    let mut args: Vec<&str> = small.to_vec();
    args.extend(["--session", &session]);
    assert!(env.run(&args, &"B".repeat(3000)).status.success());
    let o = env.run(&args, &"C".repeat(3000));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "ok3\n");
    assert!(
        stderr(&o).contains("[context] the model summarised 2 earlier turn(s) (through turn 2)"),
        "{}",
        stderr(&o)
    );

    let summary_req = env.request(3);
    let msgs = summary_req["messages"].as_array().unwrap();
    assert!(
        msgs.last().unwrap()["content"]
            .as_str()
            .unwrap()
            .starts_with("Summarise the conversation above")
    );
    assert_eq!(summary_req["tool_choice"], "none");
    assert_eq!(
        tool_results(&summary_req).len(),
        1,
        "turn 2's tool call and result go into the summary together"
    );
    assert!(msgs.iter().any(|m| m["content"] == "A".repeat(3000)));

    let after = env.request(4);
    let msgs = after["messages"].as_array().unwrap();
    assert_eq!(msgs[1]["role"], "system");
    assert_eq!(
        msgs[1]["content"],
        "Summary of the conversation before turn 3:\nSUMMARY: the user sent blocks A and B; the workspace was listed."
    );
    assert!(tool_results(&after).is_empty());
    assert!(
        !msgs.iter().any(|m| m["content"] == "A".repeat(3000)),
        "summarised turns are not sent again"
    );

    // The summary persists: the next process starts from it.
    assert!(env.run(&args, "one more").status.success());
    let next = env.request(5);
    assert_eq!(next["messages"][1]["content"], msgs[1]["content"]);
    for i in 0..6 {
        assert_pairs_intact(&env.request(i));
    }
}

#[test]
fn chat_runs_turns_cancels_and_manages_sessions() {
    use std::io::{Read, Write};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};
    let slow = {
        let first = format!(
            "data: {}\n\n",
            json!({"choices": [{"index": 0, "delta": {"content": "partial "}, "finish_reason": null}]})
        );
        let mut r = Reply::sse(&[&first]);
        r.body
            .push(server::Piece::Pause(Duration::from_millis(1500)));
        r.body.push(server::Piece::Bytes(format!("data: {}\n\n", json!({"choices": [{"index": 0, "delta": {"content": "never shown"}, "finish_reason": "stop"}]})).into_bytes()));
        r.body
            .push(server::Piece::Bytes(b"data: [DONE]\n\n".to_vec()));
        r
    };
    let env = Env::new(vec![answer("hi there"), slow, answer("after cancel")]);
    let mut child = env
        .cmd()
        .args(["chat", "--workspace", env.ws().to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let collect = |mut r: Box<dyn Read + Send>| {
        let buf = Arc::new(Mutex::new(String::new()));
        let b = buf.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n) = r.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                b.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&chunk[..n]));
            }
        });
        buf
    };
    let out = collect(Box::new(child.stdout.take().unwrap()));
    let err = collect(Box::new(child.stderr.take().unwrap()));
    let mut stdin = child.stdin.take().unwrap();
    let wait_for = |buf: &Arc<Mutex<String>>, needle: &str| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !buf.lock().unwrap().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "waited for {needle:?}; stderr: {}",
                err.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let mut send = |line: &str| writeln!(stdin, "{line}").unwrap();

    send("hello");
    wait_for(&out, "hi there\n");
    wait_for(&err, "[done]");
    send("tell me a long story");
    wait_for(&out, "partial ");
    send("/cancel");
    wait_for(
        &err,
        "[cancelled] the turn was cancelled; its partial output is kept",
    );
    send("/status");
    wait_for(&err, "last turn 2 cancelled");
    send("and now?");
    wait_for(&out, "after cancel");
    let first_session = {
        let e = err.lock().unwrap();
        e.lines().find(|l| l.starts_with("[session] ")).unwrap()["[session] ".len()..]
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    send("/new research");
    wait_for(&err, "[session] research-");
    send("/sessions");
    wait_for(
        &err,
        &format!("  {first_session}  agent default  3 turn(s)"),
    );
    send(&format!("/switch {}", &first_session[..6]));
    wait_for(&err, &format!("[session] {first_session}\n"));
    send("/bogus");
    wait_for(&err, "unknown command `/bogus`; /help lists them");
    drop(stdin);
    assert!(child.wait().unwrap().success());

    assert!(!out.lock().unwrap().contains("never shown"));
    let after = env.request(2);
    let msgs = after["messages"].as_array().unwrap();
    assert!(
        msgs.iter()
            .any(|m| m["role"] == "assistant" && m["content"] == "partial "),
        "the partial answer is kept: {after}"
    );
}

#[test]
fn an_agent_gets_its_prompt_file_contents_its_tools_only_and_its_own_budget() {
    let env = Env::new(vec![
        tool_calls(&[(
            "w",
            "file_write",
            json!({"path": "/shared/x.txt", "content": "nope"}),
        )]),
        tool_calls(&[("r", "file_read", json!({"path": "/shared/x.txt"}))]),
        answer("unreachable: max_turns is 2"),
    ]);
    std::fs::write(
        env.dir.path().join(".oxydra/reader.md"),
        "You only read files.\n",
    )
    .unwrap();
    let cfg = std::fs::read_to_string(env.dir.path().join(".oxydra/agent.toml")).unwrap();
    std::fs::write(
        env.dir.path().join(".oxydra/agent.toml"),
        format!("{cfg}[agents.reader]\nsystem_prompt_file = \"reader.md\"\ntools = [\"file_read\"]\nmax_turns = 2\n"),
    )
    .unwrap();
    let o = env.run(&["--agent", "reader"], "write x.txt");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("the turn stopped after 2 model call(s): agents.reader.max_turns allows 2; raise agents.reader.max_turns"), "{}", stderr(&o));
    let first = env.request(0);
    assert_eq!(
        first["messages"][0],
        json!({"role": "system", "content": "You only read files.\n"}),
        "the file's contents, not its path"
    );
    let offered: Vec<&str> = first["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(offered, vec!["file_read"]);
    let results = tool_results(&env.request(1));
    assert_eq!(
        results[0].1,
        "error: there is no tool `file_write`; the tools are: file_read"
    );
    assert!(
        !env.ws().join("shared/x.txt").exists(),
        "the disallowed tool never ran"
    );
    assert_eq!(env.server.requests().len(), 2);
}

#[test]
fn delegation_runs_a_child_session_within_the_child_agents_allowlist() {
    let env = Env::new(vec![
        tool_calls(&[(
            "d1",
            "delegate_to_agent",
            json!({"agent_name": "reader", "goal": "Read /shared/a.txt and report it", "key_facts": ["it is short"]}),
        )]),
        tool_calls(&[(
            "c1",
            "file_write",
            json!({"path": "/shared/a.txt", "content": "overwritten"}),
        )]),
        tool_calls(&[("c2", "file_read", json!({"path": "/shared/a.txt"}))]),
        answer("a.txt says: original"),
        answer("The reader reports: original"),
    ]);
    std::fs::create_dir_all(env.ws().join("shared")).unwrap();
    std::fs::write(env.ws().join("shared/a.txt"), "original").unwrap();
    let cfg = std::fs::read_to_string(env.dir.path().join(".oxydra/agent.toml")).unwrap();
    std::fs::write(
        env.dir.path().join(".oxydra/agent.toml"),
        format!("{cfg}[agents.reader]\nsystem_prompt = \"You read files.\"\ntools = [\"file_read\"]\nmax_turns = 5\n"),
    )
    .unwrap();
    let o = env.run(&[], "What does a.txt say? Ask the reader.");
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "The reader reports: original\n");
    assert_eq!(
        std::fs::read_to_string(env.ws().join("shared/a.txt")).unwrap(),
        "original",
        "the child could not write"
    );

    let parent = env.request(0);
    assert!(
        parent["messages"][0]["content"]
            .as_str()
            .unwrap()
            .contains("delegate_to_agent: reader."),
        "{parent}"
    );
    let child = env.request(1);
    assert_eq!(
        child["messages"][0],
        json!({"role": "system", "content": "You read files."})
    );
    assert_eq!(
        child["messages"][1]["content"],
        "Read /shared/a.txt and report it\n\nKey facts:\n- it is short\n"
    );
    let offered: Vec<&str> = child["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        offered,
        vec!["file_read"],
        "the child sees only its allowlist"
    );
    assert_eq!(
        tool_results(&env.request(2))[0].1,
        "error: there is no tool `file_write`; the tools are: file_read"
    );
    let result = &tool_results(&env.request(4))[0].1;
    assert!(result.starts_with("a.txt says: original\n\n[reader used 3 model call(s), 400 input + 50 output tokens, $0.000090; session sub-reader:"), "{result}");
}

#[test]
fn without_a_key_the_error_says_what_to_set() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    // A provider chosen explicitly: its missing key is an error (no local fallback).
    std::fs::create_dir_all(dir.path().join(".oxydra")).unwrap();
    std::fs::write(
        dir.path().join(".oxydra/agent.toml"),
        "[selection]\nprovider = \"openai\"\nmodel = \"gpt-4o-mini\"\n",
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_oxydra-host"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", dir.path())
        .current_dir(dir.path())
        .args([
            "run",
            "--workspace",
            dir.path().join("ws").to_str().unwrap(),
            "hello",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("error: no API key for provider `openai`: set OPENAI_API_KEY"),
        "{}",
        stderr(&o)
    );
    let _ = Path::new("");
}

#[test]
fn the_agent_reads_a_web_page_and_is_refused_an_internal_one() {
    // The page's server is allowed by config; the metadata address is not.
    let page = server::Server::routes("127.0.0.1", |_| {
        server::Reply {
        status: 200,
        headers: vec![("content-type".into(), "text/html; charset=utf-8".into())],
        body: vec![server::Piece::Bytes(
            b"<html><body><h1>Changelog</h1><p>Version 2 adds <a href=\"/v2\">pinning</a>.</p></body></html>".to_vec(),
        )],
        before_head: None,
    }
    });
    let url = format!("{}/changes", page.url);
    let env = Env::with_config(
        vec![
            tool_calls(&[
                ("w1", "web_fetch", json!({ "url": url })),
                (
                    "w2",
                    "web_fetch",
                    json!({ "url": "http://169.254.169.254/latest/meta-data/" }),
                ),
            ]),
            answer("Version 2 adds pinning."),
        ],
        &format!("[tools.web]\nallow = [\"127.0.0.1:{}\"]\n", page.port()),
    );
    let o = env.run(&[], "what changed?");
    assert!(o.status.success(), "{}", stderr(&o));
    let results = tool_results(&env.request(1));
    assert_eq!(results.len(), 2, "{results:?}");
    assert!(
        results[0].1.contains("Changelog") && results[0].1.contains("/v2"),
        "{results:?}"
    );
    assert!(
        results[1].1.contains("egress denied") && results[1].1.contains("169.254.0.0/16"),
        "{results:?}"
    );
    assert_eq!(page.requests().len(), 1);
}
