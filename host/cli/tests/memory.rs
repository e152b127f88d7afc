//! Memory end to end, with the real binary, the bundled memory components and the
//! MiniLM model `scripts/build.sh` fetched: the tools through `tool call`, the CLI, and
//! the agent (auto-retrieval into the context, turns remembered across sessions), with the
//! model played by a loopback OpenAI-compatible server.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;
#[path = "../../runtime/tests/common/server.rs"]
mod server;

use common::Env;
use serde_json::{Value, json};
use server::Reply;
use std::process::Output;

const MEMORY: &str = "[memory]\nenabled = true\n";

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn answer(t: &str) -> Reply {
    server::openai::answer(t, Some((100, 10)))
}

impl Env {
    fn tool(&self, name: &str, args: Value, session: &str) -> Output {
        self.cmd()
            .args(["tool", "call", name, &args.to_string()])
            .args([
                "--workspace",
                self.ws().to_str().unwrap(),
                "--session",
                session,
            ])
            .output()
            .unwrap()
    }
    fn memory(&self, args: &[&str]) -> Output {
        self.cmd()
            .arg("memory")
            .args(args)
            .args(["--workspace", self.ws().to_str().unwrap()])
            .output()
            .unwrap()
    }
    fn run(&self, prompt: &str) -> Output {
        self.run_with(&[], prompt)
    }
    fn run_with(&self, args: &[&str], prompt: &str) -> Output {
        self.cmd()
            .arg("run")
            .args(args)
            .args(["--workspace", self.ws().to_str().unwrap()])
            .arg(prompt)
            .output()
            .unwrap()
    }
}

fn session_of(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr);
    err.lines()
        .find_map(|l| l.strip_prefix("[session] "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no session in {err}"))
        .to_string()
}

fn ok_json(o: &Output) -> Value {
    let (out, err) = text(o);
    assert!(o.status.success(), "{out}{err}");
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn system_prompt(req: &Value) -> String {
    req["messages"][0]["content"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn tools_and_cli_save_find_update_and_delete_notes() {
    let env = Env::with_config(vec![], MEMORY);
    let saved = ok_json(&env.tool(
        "memory_save",
        json!({"content": "My sister Maria is allergic to peanuts", "tags": ["Family"]}),
        "cli",
    ));
    let id = saved["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("note-"), "{saved}");
    ok_json(&env.tool(
        "memory_save",
        json!({"content": "The staging database listens on port 5433"}),
        "cli",
    ));
    // A paraphrase: no word in common with the note but "my".
    let found = ok_json(&env.tool(
        "memory_search",
        json!({"query": "which food should my sibling avoid?", "top_k": 1}),
        "cli",
    ));
    assert_eq!(found["results"][0]["id"], id.as_str(), "{found}");
    assert_eq!(found["results"][0]["tags"], json!(["family"]));

    let o = env.memory(&["search", "peanut allergy"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.lines().next().unwrap().contains(&id), "{out}");
    let o = env.memory(&["list"]);
    assert!(text(&o).0.starts_with("2 notes"), "{:?}", text(&o));

    let updated = ok_json(&env.tool(
        "memory_update",
        json!({"note_id": id, "content": "My sister Maria is allergic to shellfish"}),
        "cli",
    ));
    assert_eq!(updated["id"], id.as_str());
    let o = env.memory(&["search", "shellfish", "--top-k", "1"]);
    assert!(text(&o).0.contains("shellfish"), "{:?}", text(&o));

    // Bad input is a tool error naming the limit; unknown ids say so.
    let o = env.tool("memory_save", json!({"content": "x".repeat(8001)}), "cli");
    assert!(!o.status.success());
    assert!(text(&o).1.contains("8000"), "{:?}", text(&o));
    let o = env.tool("memory_delete", json!({"note_id": "note-0000"}), "cli");
    assert!(!o.status.success());
    assert!(text(&o).1.contains("no note `note-0000`"), "{:?}", text(&o));
    ok_json(&env.tool("memory_delete", json!({"note_id": id}), "cli"));
    assert!(text(&env.memory(&["list"])).0.starts_with("1 notes"));

    // Scratchpads are per session.
    ok_json(&env.tool(
        "scratchpad_write",
        json!({"items": ["check the logs", "ask Maria"]}),
        "s1",
    ));
    let pad = ok_json(&env.tool("scratchpad_read", json!({}), "s1"));
    assert_eq!(pad["items"], json!(["check the logs", "ask Maria"]));
    let other = ok_json(&env.tool("scratchpad_read", json!({}), "s2"));
    assert_eq!(other["items"], json!([]));
    ok_json(&env.tool("scratchpad_clear", json!({}), "s1"));
    assert_eq!(
        ok_json(&env.tool("scratchpad_read", json!({}), "s1"))["items"],
        json!([])
    );

    // Reindex rebuilds from the store and finds the same.
    let o = env.memory(&["reindex"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("reindexed 1 documents"), "{out}");
    assert!(err.contains("1/1 documents"), "{err}");
    assert!(
        text(&env.memory(&["search", "staging port"]))
            .0
            .contains("5433")
    );
}

#[test]
fn memory_is_off_unless_enabled_and_says_how_to_turn_it_on() {
    let env = Env::with_config(vec![], "");
    let o = env.tool("memory_save", json!({"content": "x"}), "cli");
    assert!(!o.status.success());
    assert!(
        text(&o).1.contains("[memory] enabled = true"),
        "{:?}",
        text(&o)
    );
    let o = env.memory(&["list"]);
    assert!(!o.status.success());
    assert!(
        text(&o).1.contains("[memory] enabled = true"),
        "{:?}",
        text(&o)
    );
}

#[test]
fn turns_get_relevant_memory_and_later_sessions_find_earlier_ones() {
    let env = Env::with_config(
        vec![answer("Noted."), answer("It is in the blue drawer.")],
        MEMORY,
    );
    ok_json(&env.tool(
        "memory_save",
        json!({"content": "The spare house key is under the third flowerpot"}),
        "cli",
    ));
    // First session: the note about the key is put into the context.
    let o = env.run("Where did I leave the spare key for the house?");
    assert!(o.status.success(), "{:?}", text(&o));
    let o = env
        .run("Is the spare key for the house still there? And my passport is in the blue drawer");
    assert!(o.status.success(), "{:?}", text(&o));
    let reqs = env.server.requests();
    let first = system_prompt(&reqs[0].json());
    assert!(first.contains("Relevant memory"), "{first}");
    assert!(first.contains("third flowerpot"), "{first}");
    // The second run is a new session: the first run's exchange is found there.
    let second = system_prompt(&reqs[1].json());
    assert!(second.contains("earlier conversation"), "{second}");
    assert!(second.contains("spare key"), "{second}");
    // And from the CLI, with --conversations.
    let o = env.memory(&["search", "passport drawer", "--conversations"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("conversation of session"), "{out}");
    assert!(out.contains("blue drawer"), "{out}");
}

#[test]
fn users_memories_are_apart() {
    let env = Env::with_config(vec![], MEMORY);
    let alice = env.dir.path().join("alice");
    let bob = env.dir.path().join("bob");
    let call = |ws: &std::path::Path, user: &str, name: &str, args: Value| {
        env.cmd()
            .args(["tool", "call", name, &args.to_string()])
            .args(["--workspace", ws.to_str().unwrap(), "--user", user])
            .output()
            .unwrap()
    };
    ok_json(&call(
        &alice,
        "alice",
        "memory_save",
        json!({"content": "alice's locker code is 4471"}),
    ));
    // Bob, even in alice's workspace, finds nothing of hers.
    for ws in [&bob, &alice] {
        let r = ok_json(&call(
            ws,
            "bob",
            "memory_search",
            json!({"query": "locker code", "include_conversation": true}),
        ));
        assert_eq!(r["results"], json!([]), "{r}");
    }
    let r = ok_json(&call(
        &alice,
        "alice",
        "memory_search",
        json!({"query": "locker code"}),
    ));
    assert_eq!(r["results"].as_array().unwrap().len(), 1, "{r}");
}

#[test]
fn facts_are_saved_before_compaction_condenses_the_turns_that_held_them() {
    let env = Env::with_config(
        vec![
            answer("ok1"),
            answer("ok2"),
            // The flush, then the summary, then the turn's answer.
            answer("- The user's favourite colour is teal\n- Project Zephyr ships on May 3\nNONE"),
            answer("SUMMARY: blocks A and B were sent."),
            answer("ok3"),
        ],
        &format!("{MEMORY}record_conversations = false\n"),
    );
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
    let o = env.run_with(
        &small,
        &format!("My favourite colour is teal. {}", "A".repeat(3000)),
    );
    assert!(o.status.success(), "{:?}", text(&o));
    let session = session_of(&o);
    let mut args: Vec<&str> = small.to_vec();
    args.extend(["--session", &session]);
    let o = env.run_with(&args, &format!("Zephyr ships May 3. {}", "B".repeat(3000)));
    assert!(o.status.success(), "{:?}", text(&o));
    let o = env.run_with(&args, &"C".repeat(3000));
    assert!(o.status.success(), "{:?}", text(&o));
    assert_eq!(text(&o).0, "ok3\n");
    let reqs = env.server.requests();
    let flush = reqs[2].json();
    let last = flush["messages"].as_array().unwrap().last().unwrap()["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        last.starts_with("The part of the conversation above is about to be condensed"),
        "{last}"
    );
    assert_eq!(flush["tool_choice"], "none");
    let summary = reqs[3].json();
    assert!(
        summary["messages"].as_array().unwrap().last().unwrap()["content"]
            .as_str()
            .unwrap()
            .starts_with("Summarise the conversation above")
    );
    let o = env.memory(&["list"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.starts_with("2 notes"), "{out}");
    assert!(
        out.contains("[compaction]") && out.contains("favourite colour is teal"),
        "{out}"
    );
    assert!(out.contains("Project Zephyr ships on May 3"), "{out}");
}

#[test]
fn idle_sessions_are_summarised_into_memory_once() {
    let env = Env::with_config(
        vec![
            answer("Your passport is in the blue drawer."),
            answer("SUMMARY: the user asked where their passport is; it is in the blue drawer."),
        ],
        &format!("{MEMORY}record_conversations = false\n"),
    );
    let o = env.run("Where is my passport?");
    assert!(o.status.success(), "{:?}", text(&o));
    let session = session_of(&o);
    // Not idle for 48 hours: nothing to do.
    let o = env.memory(&["summarize"]);
    assert!(
        text(&o).0.contains("summarised 0 session(s)"),
        "{:?}",
        text(&o)
    );
    let o = env.memory(&["summarize", "--idle-hours", "0"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(
        out.contains(&format!(
            "summarised 1 session(s) idle for 0 h or more: {session}"
        )),
        "{out}"
    );
    let req = env.server.requests()[1].json();
    let msgs = req["messages"].as_array().unwrap();
    assert!(
        msgs.iter().any(|m| m["content"] == "Where is my passport?"),
        "{req}"
    );
    assert!(
        msgs.last().unwrap()["content"]
            .as_str()
            .unwrap()
            .starts_with("Summarise this conversation")
    );
    // Its summary is found from later searches; a second pass has nothing new.
    let o = env.memory(&["search", "passport drawer", "--conversations"]);
    let out = text(&o).0;
    assert!(
        out.contains(&format!("(summary of session {session})")),
        "{out}"
    );
    let o = env.memory(&["summarize", "--idle-hours", "0"]);
    assert!(
        text(&o).0.contains("summarised 0 session(s)"),
        "{:?}",
        text(&o)
    );
    assert_eq!(env.server.requests().len(), 2);
}
