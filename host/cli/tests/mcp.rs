//! The MCP client end to end: the real binary against real MCP servers — the official
//! Python SDK (`mcp` from PyPI) serving `tests/fixtures/mcp/server.py` — over stdio
//! (each server confined by `mcp-exec`) and streamable HTTP (through the web egress
//! policy), through `tool call`, `mcp list|tools` and the agent with a scripted model.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;
#[path = "../../runtime/tests/common/server.rs"]
mod server;

use common::mcp::{mcp_python, server_script};
use common::{Env, MODEL_KEY};
use serde_json::{Value, json};
use server::Reply;
use std::path::Path;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

fn tool_calls(calls: &[(&str, &str, Value)]) -> Reply {
    server::openai::tool_calls(calls, Some((100, 20)))
}

fn answer(text: &str) -> Reply {
    server::openai::answer(text, Some((200, 10)))
}

/// A stdio server `name` running the test script, with `extra` lines in its table.
fn stdio_server(name: &str, extra: &str) -> String {
    format!(
        "[mcp.servers.{name}]\ncommand = {:?}\nargs = [{:?}, \"stdio\"]\n{extra}\n",
        mcp_python().display().to_string(),
        server_script().display().to_string(),
    )
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

impl Env {
    fn tool(&self, name: &str, args: Value) -> Output {
        self.cmd()
            .args(["tool", "call", name, &args.to_string()])
            .args(["--workspace", self.ws().to_str().unwrap()])
            .output()
            .unwrap()
    }
    fn mcp(&self, args: &[&str]) -> Output {
        self.cmd()
            .arg("mcp")
            .args(args)
            .args(["--workspace", self.ws().to_str().unwrap()])
            .output()
            .unwrap()
    }
    fn run(&self, prompt: &str) -> Output {
        self.cmd()
            .arg("run")
            .args(["--workspace", self.ws().to_str().unwrap()])
            .arg(prompt)
            .output()
            .unwrap()
    }
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

fn offered(req: &Value) -> Vec<String> {
    req["tools"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|t| t["function"]["name"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_stdio_server_is_listed_called_and_confined() {
    let outside = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    std::fs::write(outside.path().join("secret.txt"), "not for the server").unwrap();
    let shared = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    std::fs::write(shared.path().join("notes.txt"), "for the server").unwrap();
    let env = Env::with_config(
        vec![],
        &stdio_server(
            "t",
            &format!(
                "read_only = [{:?}]\nenv = {{ GREETING = \"hello\" }}\nenv_from = {{ PASSED = \"LOCAL_KEY\" }}\nmax_result_bytes = 2000",
                shared.path().display().to_string()
            ),
        ),
    );

    // `tool list` shows the server's tools with their source; `mcp list` the server.
    let o = env.cmd().args(["tool", "list"]).output().unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let row = out.lines().find(|l| l.starts_with("t__echo ")).unwrap();
    assert!(row.contains("mcp:t"), "{row}");
    assert!(out.contains("file_read"), "{out}");
    let o = env.mcp(&["list", "--json"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let list: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list[0]["name"], "t");
    assert_eq!(list[0]["state"], "ready", "{list}");
    assert_eq!(list[0]["transport"], "stdio");
    assert!(list[0]["tools"].as_u64().unwrap() >= 10, "{list}");

    let o = env.tool("t__add", json!({"a": 2, "b": 3}));
    assert!(o.status.success(), "{:?}", text(&o));
    assert_eq!(text(&o).0.trim(), "5");

    // Arguments are checked against the server's schema at the host.
    let o = env.tool("t__echo", json!({"txt": "x"}));
    assert!(!o.status.success());
    let (_, err) = text(&o);
    assert!(
        err.contains("invalid arguments") && err.contains("text"),
        "{err}"
    );

    // Landlock: a file outside what the config names cannot be read; one inside can.
    let o = env.tool(
        "t__read_file",
        json!({"path": outside.path().join("secret.txt")}),
    );
    let (out, err) = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(err.contains("Permission denied"), "{err}");
    let o = env.tool(
        "t__read_file",
        json!({"path": shared.path().join("notes.txt")}),
    );
    assert_eq!(text(&o).0.trim(), "for the server", "{:?}", text(&o));
    // Nor the workspace's vault, nor the agent's config.
    std::fs::create_dir_all(env.ws().join("vault")).unwrap();
    std::fs::write(env.ws().join("vault/key.txt"), "vault secret").unwrap();
    for p in [
        env.ws().join("vault/key.txt"),
        env.dir.path().join(".oxydra/agent.toml"),
    ] {
        let o = env.tool("t__read_file", json!({ "path": p }));
        assert!(
            text(&o).1.contains("Permission denied"),
            "{p:?}: {:?}",
            text(&o)
        );
    }

    // Its environment: what the host sets and what the config lists, nothing inherited.
    let o = env.tool("t__env", json!({}));
    let vars: Value = serde_json::from_str(text(&o).0.trim()).unwrap();
    let mut names: Vec<&str> = vars
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["GREETING", "HOME", "LANG", "PASSED", "PATH", "TMPDIR"],
        "{vars}"
    );
    assert_eq!(vars["GREETING"], "hello");
    assert!(
        vars["HOME"].as_str().unwrap().ends_with("ws/.oxydra/mcp/t"),
        "{vars}"
    );

    // Results: long ones cut (and saying so), images described, tool errors as errors,
    // a 5 MB stderr flood drained without stalling.
    let o = env.tool("t__big", json!({"bytes": 50_000}));
    let (out, _) = text(&o);
    assert!(out.len() <= 2001, "{}", out.len());
    assert!(
        out.contains("[cut: the result was 50000 bytes; mcp.servers.t.max_result_bytes is 2000]"),
        "{out}"
    );
    let o = env.tool("t__image", json!({}));
    assert!(text(&o).0.contains("[image (image/png"), "{:?}", text(&o));
    let o = env.tool("t__fail", json!({}));
    assert!(!o.status.success());
    assert!(text(&o).1.contains("this tool always fails"));
    let o = env.tool("t__flood", json!({}));
    assert_eq!(text(&o).0.trim(), "flooded", "{:?}", text(&o).1);

    // An unknown tool of a known server names what it offers.
    let o = env.tool("t__nosuch", json!({}));
    let (_, err) = text(&o);
    assert!(
        err.contains("offers no tool `t__nosuch`") && err.contains("t__echo"),
        "{err}"
    );
}

#[test]
fn the_agent_uses_mcp_tools_sees_list_changed_and_results_are_scrubbed() {
    let env = Env::with_config(
        vec![
            tool_calls(&[("c1", "t__add_tool", json!({"channel": "request"}))]),
            tool_calls(&[
                ("c2", "t__late", json!({})),
                (
                    "c3",
                    "t__echo",
                    json!({ "text": format!("the key is {MODEL_KEY}") }),
                ),
            ]),
            answer("done"),
        ],
        &stdio_server("t", ""),
    );
    let o = env.run("use the tools");
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert_eq!(out.trim(), "done");
    let reqs = env.server.requests();
    assert_eq!(reqs.len(), 3);
    let first = offered(&reqs[0].json());
    assert!(first.contains(&"t__echo".to_string()), "{first:?}");
    assert!(!first.contains(&"t__late".to_string()), "{first:?}");
    // After notifications/tools/list_changed the model is offered the new tool.
    let second = offered(&reqs[1].json());
    assert!(second.contains(&"t__late".to_string()), "{second:?}");
    let results = tool_results(&reqs[2].json());
    assert_eq!(results[1], ("c2".into(), "late tool ran".into()));
    assert!(!results[2].1.contains(MODEL_KEY), "{results:?}");
    assert!(results[2].1.starts_with("the key is "), "{results:?}");
}

#[test]
fn a_crashed_server_says_why_and_is_started_again_a_slow_call_times_out() {
    let env = Env::with_config(
        vec![
            tool_calls(&[("c1", "t__crash", json!({}))]),
            tool_calls(&[("c2", "t__echo", json!({"text": "too soon"}))]),
            // The other server's slow call outlasts the 1 s backoff.
            tool_calls(&[("c3", "u__slow", json!({"seconds": 8}))]),
            tool_calls(&[("c4", "t__echo", json!({"text": "back"}))]),
            tool_calls(&[("c5", "u__slow", json!({"seconds": 30}))]),
            answer("done"),
        ],
        &format!(
            "{}{}",
            stdio_server("t", ""),
            stdio_server("u", "call_timeout_secs = 10")
        ),
    );
    let started = Instant::now();
    let o = env.run("crash it");
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert_eq!(out.trim(), "done");
    let reqs = env.server.requests();
    let results = tool_results(&reqs[5].json());
    let get = |id: &str| results.iter().find(|(i, _)| i == id).unwrap().1.clone();
    assert!(get("c1").starts_with("error:"), "{results:?}");
    let down = get("c2");
    assert!(down.contains("MCP server `t` exited"), "{down}");
    assert!(down.contains("crashing on purpose"), "{down}");
    assert!(
        down.contains("unavailable until it is started again"),
        "{down}"
    );
    assert_eq!(get("c3"), "done");
    assert_eq!(get("c4"), "back", "{results:?}");
    let slow = get("c5");
    assert!(
        slow.contains("did not answer `slow` within 10 s (mcp.servers.u.call_timeout_secs)"),
        "{slow}"
    );
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[test]
fn bad_servers_fail_clearly_and_the_others_still_work() {
    let env = Env::with_config(
        vec![],
        &[
            stdio_server("t", ""),
            stdio_server("bad", "env = { MCP_TEST_BAD_SCHEMA = \"1\" }"),
            format!(
                "[mcp.servers.noise]\ncommand = {:?}\nargs = [{:?}, \"garbage\"]\nstartup_timeout_secs = 2\n",
                mcp_python().display().to_string(),
                server_script().display().to_string()
            ),
            format!(
                "[mcp.servers.flood]\ncommand = {:?}\nargs = [{:?}, \"flood\"]\nstartup_timeout_secs = 8\n",
                mcp_python().display().to_string(),
                server_script().display().to_string()
            ),
            "[mcp.servers.missing]\ncommand = \"/nonexistent/mcp-server\"\n".to_string(),
        ]
        .concat(),
    );
    let o = env.mcp(&["list", "--json"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let list: Value = serde_json::from_str(&out).unwrap();
    let state = |n: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(state("t")["state"], "ready");
    assert_eq!(state("bad")["state"], "ready");
    let missing = state("missing");
    assert_eq!(missing["state"], "down");
    let why = missing["reason"].as_str().unwrap();
    assert!(
        why.contains("MCP server `missing`") && why.contains("does not exist"),
        "{why}"
    );
    let noise = state("noise");
    assert_eq!(noise["state"], "down", "{noise}");
    let why = noise["reason"].as_str().unwrap();
    assert!(
        why.contains("MCP server `noise` did not finish starting"),
        "{why}"
    );
    assert!(why.contains("hello, I am not an MCP server"), "{why}");

    // 50 MB on stdout, one line of 40 MB: read and dropped, never held, never stalling.
    let flood = state("flood");
    assert_eq!(flood["state"], "down", "{flood}");
    let why = flood["reason"].as_str().unwrap();
    assert!(
        why.contains("1 message(s) over the size limit were dropped"),
        "{why}"
    );
    assert!(why.contains("junk junk"), "{why}");

    // The invalid schema: that tool is not offered, and says why; the rest are.
    let o = env.mcp(&["tools", "bad"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let broken = out.lines().find(|l| l.starts_with("broken ")).unwrap();
    assert!(broken.contains("not a valid JSON Schema"), "{broken}");
    assert!(out.contains("bad__echo"), "{out}");

    let o = env.tool("t__echo", json!({"text": "still here"}));
    assert_eq!(text(&o).0.trim(), "still here", "{:?}", text(&o));

    // Config mistakes are refused before anything starts, naming the key.
    for (table, key) in [
        (
            "[mcp.servers.x]\nurl = \"ftp://example.com/\"\n",
            "mcp.servers.x.url",
        ),
        (
            "[mcp.servers.a__b]\ncommand = \"python3\"\n",
            "mcp.servers.a__b",
        ),
        ("[mcp.servers.x]\ncommand = \"python3\"\nnope = 1\n", "nope"),
    ] {
        let bad = Env::with_config(vec![], table);
        let o = bad.cmd().args(["tool", "list"]).output().unwrap();
        assert!(!o.status.success());
        let (_, err) = text(&o);
        assert!(err.contains(key), "{table}: {err}");
    }
}

/// The test server on streamable HTTP; its port.
fn http_server(dir: &Path) -> (Kill, u16) {
    let port_file = dir.join("port");
    let child = Kill(
        Command::new(mcp_python())
            .arg(server_script())
            .args(["http", port_file.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(p) = std::fs::read_to_string(&port_file) {
            return (child, p.trim().parse().unwrap());
        }
        assert!(
            Instant::now() < deadline,
            "the HTTP MCP server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn an_http_server_goes_through_the_web_policy_with_credentials_from_the_host() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let (_server, port) = http_server(dir.path());
    let table = format!(
        "[mcp.servers.h]\nurl = \"http://127.0.0.1:{port}/mcp\"\nheaders = {{ X-Team = \"blue-team-7\" }}\nheaders_from_env = {{ Authorization = \"H_TOKEN\" }}\n"
    );

    // Loopback is not a public address: without an allow rule the policy refuses it.
    let env = Env::with_config(vec![], &table);
    let o = env
        .cmd()
        .env("H_TOKEN", "Bearer t0ken")
        .args(["mcp", "list", "--json"])
        .args(["--workspace", env.ws().to_str().unwrap()])
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let list: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list[0]["state"], "down", "{list}");
    let why = list[0]["reason"].as_str().unwrap();
    assert!(why.contains("egress denied:"), "{why}");

    // Allowed, it works; the host adds the header from its own environment.
    let env = Env::with_config(
        vec![
            tool_calls(&[("c1", "h__add_tool", json!({"channel": "request"}))]),
            tool_calls(&[
                ("c2", "h__late", json!({})),
                ("c3", "h__headers", json!({})),
            ]),
            answer("done"),
        ],
        &format!("[tools.web]\nallow = [\"127.0.0.1:{port}\"]\n{table}"),
    );
    let o = env
        .cmd()
        .env("H_TOKEN", "Bearer t0ken")
        .args(["run", "--workspace", env.ws().to_str().unwrap(), "go"])
        .output()
        .unwrap();
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert_eq!(out.trim(), "done");
    let reqs = env.server.requests();
    assert!(offered(&reqs[1].json()).contains(&"h__late".to_string()));
    let results = tool_results(&reqs[2].json());
    assert_eq!(results[1].1, "late tool ran", "{results:?}");
    let headers: Value = serde_json::from_str(&results[2].1).unwrap();
    // The host added both: the configured header as it is, and the one from its
    // environment, which reaches the model only scrubbed (its exact value is a secret).
    assert_eq!(headers["x-team"], "blue-team-7", "{headers}");
    assert_eq!(headers["authorization"], "[REDACTED]", "{headers}");

    // Without the variable the server is not reached, and the error names it.
    let o = env.tool("h__echo", json!({"text": "x"}));
    let (_, err) = text(&o);
    assert!(err.contains("$H_TOKEN is not set"), "{err}");
}
