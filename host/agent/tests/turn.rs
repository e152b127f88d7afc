//! The turn loop end to end: the real bundled components (provider adapter and tools),
//! a scripted model on 127.0.0.1, a real store and workspace.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;
#[path = "../../runtime/tests/common/server.rs"]
mod server;

use common::*;
use oxydra_agent::history::INTERRUPTED_RESULT;
use oxydra_agent::turn::{BudgetKind, CancelToken, Progress, TurnError};
use oxydra_runtime::llm::types::{LlmFailure, Message, Role, ToolCall};
use oxydra_store::TurnStatus;
use serde_json::{Value, json};
use server::{Piece, Reply};
use std::time::Duration;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

// ---- budgets: typed, naming the key, and what a stopped turn spent ----

#[test]
fn a_budget_stop_names_its_key_and_records_what_the_turn_spent() {
    let env = Env::new(vec![tool_calls(
        &[("c1", "file_list", json!({"path": "/shared"}))],
        100_000,
        1_000,
    )]);
    let s = env.session();
    let mut b = budgets(1);
    b.keys.max_steps = "agents.coder.max_turns".into();
    let f = env
        .rt
        .run_turn(&s, &agent("coder", b), "list the files", &mut |_| {})
        .unwrap_err();
    let TurnError::Budget(e) = &f.error else {
        panic!("{:?}", f.error)
    };
    assert_eq!(e.kind, BudgetKind::ModelCalls);
    assert_eq!((e.used, e.limit), (1.0, 1.0));
    assert_eq!(e.key, "agents.coder.max_turns");
    let msg = f.to_string();
    assert!(msg.contains("agents.coder.max_turns"), "{msg}");
    assert!(
        !msg.contains("--session") && !msg.contains("raise"),
        "{msg}"
    );

    let spent = cost(100_000, 1_000);
    assert_eq!(f.spent.steps, 1);
    assert_eq!(f.spent.usage.input_tokens, 100_000);
    assert!(close(f.spent.cost.unwrap(), spent), "{:?}", f.spent);
    let turns = env.rt.store.turns(&s).unwrap();
    assert_eq!(turns[0].status, TurnStatus::Budget);
    assert!(close(turns[0].cost, spent), "recorded {}", turns[0].cost);
}

#[test]
fn a_cost_stop_shows_amounts_that_differ() {
    // 200 input + 10 output tokens: $0.000220, over a limit of $0.0002.
    let env = Env::new(vec![answer("hi", 200, 10)]);
    let s = env.session();
    let mut b = budgets(5);
    b.max_cost = Some(0.0002);
    let f = env
        .rt
        .run_turn(&s, &agent("main", b), "hi", &mut |_| {})
        .unwrap_err();
    let TurnError::Budget(e) = &f.error else {
        panic!("{:?}", f.error)
    };
    assert_eq!(e.kind, BudgetKind::Cost);
    assert_eq!(e.key, "runtime.max_cost");
    assert_eq!(
        f.to_string(),
        "the turn stopped: it cost $0.00022, over the $0.00020 allowed by runtime.max_cost"
    );
    assert!(close(
        env.rt.store.turns(&s).unwrap()[0].cost,
        cost(200, 10)
    ));
}

#[test]
fn tool_calls_a_budget_stop_does_not_run_get_results_saying_so() {
    let env = Env::new(vec![
        tool_calls(
            &[(
                "w1",
                "file_write",
                json!({"path": "/shared/a.txt", "content": "a"}),
            )],
            10_000,
            0,
        ),
        answer("ok", 100, 0),
    ]);
    let s = env.session();
    let mut b = budgets(5);
    b.max_cost = Some(0.001);
    let a = agent("main", b);
    let f = env.rt.run_turn(&s, &a, "write", &mut |_| {}).unwrap_err();
    assert!(matches!(f.error, TurnError::Budget(_)), "{:?}", f.error);
    assert!(!env.dir.path().join("ws/shared/a.txt").exists());
    env.rt
        .run_turn(&s, &agent("main", budgets(5)), "and?", &mut |_| {})
        .unwrap();
    let results = tool_results(&env.request(1));
    assert_eq!(results.len(), 1, "{results:?}");
    assert!(
        results[0].1.starts_with("error: not run: the turn stopped"),
        "{}",
        results[0].1
    );
}

#[test]
fn a_provider_failure_is_typed_and_the_turn_keeps_its_spend() {
    let env = Env::new(vec![
        tool_calls(
            &[("c1", "file_list", json!({"path": "/shared"}))],
            1_000,
            100,
        ),
        Reply::status(400, "{\"error\":{\"message\":\"bad request\"}}"),
    ]);
    let s = env.session();
    let f = env
        .rt
        .run_turn(&s, &agent("main", budgets(5)), "list", &mut |_| {})
        .unwrap_err();
    assert!(
        matches!(
            f.error,
            TurnError::Provider(ref p) if matches!(**p, LlmFailure::Http { status: 400, .. })
        ),
        "{:?}",
        f.error
    );
    assert_eq!(f.spent.steps, 2);
    assert!(close(f.spent.cost.unwrap(), cost(1_000, 100)));
    let t = &env.rt.store.turns(&s).unwrap()[0];
    assert_eq!(t.status, TurnStatus::Failed);
    assert!(close(t.cost, cost(1_000, 100)), "recorded {}", t.cost);
}

#[test]
fn a_cancelled_turn_records_what_it_spent() {
    let env = Env::new(vec![tool_calls(
        &[("c1", "file_list", json!({"path": "/shared"}))],
        5_000,
        50,
    )]);
    let s = env.session();
    let cancel = CancelToken::default();
    let c = cancel.clone();
    // Cancelled while the tool runs: after the model call, before the next one.
    let f = env
        .rt
        .run_turn_cancellable(
            &s,
            &agent("main", budgets(5)),
            "list",
            &mut |p| {
                if let Progress::ToolStart { .. } = p {
                    c.cancel();
                }
            },
            &cancel,
        )
        .unwrap_err();
    assert!(matches!(f.error, TurnError::Cancelled), "{:?}", f.error);
    assert_eq!(env.requests(), 1);
    assert_eq!(f.spent.steps, 1);
    let t = &env.rt.store.turns(&s).unwrap()[0];
    assert_eq!(t.status, TurnStatus::Cancelled);
    assert!(close(t.cost, cost(5_000, 50)), "recorded {}", t.cost);
}

// ---- history a provider accepts after a crash or a cut stream ----

/// The state `kill -9` leaves between saving the assistant's tool calls and their results.
fn crashed_session(env: &Env) -> String {
    let s = env.session();
    let store = &env.rt.store;
    let turn = store.begin_turn(&s).unwrap();
    let user = Message::text(Role::User, "write then read a note");
    let assistant = Message {
        tool_calls: vec![
            ToolCall {
                id: "w1".into(),
                name: "file_write".into(),
                arguments: json!({"path": "/shared/n.txt", "content": "x"}).to_string(),
                provider_data: None,
            },
            ToolCall {
                id: "r1".into(),
                name: "file_read".into(),
                arguments: json!({"path": "/shared/n.txt"}).to_string(),
                provider_data: None,
            },
        ],
        ..Message::text(Role::Assistant, "Writing it.")
    };
    for m in [user, assistant] {
        store
            .append(&s, turn, &serde_json::to_string(&m).unwrap())
            .unwrap();
    }
    store.mark_interrupted(&s).unwrap();
    s
}

#[test]
fn tool_calls_without_results_after_a_crash_get_results_and_a_note() {
    let env = Env::new(vec![answer("ok", 100, 5)]);
    let s = crashed_session(&env);
    let o = env
        .rt
        .run_turn(&s, &agent("main", budgets(5)), "go on", &mut |_| {})
        .unwrap();
    assert_eq!(o.answer, "ok");
    let msgs = messages(&env.request(0));
    let roles: Vec<&str> = msgs.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(
        roles,
        [
            "system",
            "user",
            "assistant",
            "tool",
            "tool",
            "system",
            "user"
        ],
        "{msgs:#?}"
    );
    assert_eq!(msgs[3]["tool_call_id"], "w1");
    assert_eq!(msgs[4]["tool_call_id"], "r1");
    assert_eq!(msgs[3]["content"], INTERRUPTED_RESULT);
    assert!(
        msgs[5]["content"].as_str().unwrap().contains("interrupted"),
        "{}",
        msgs[5]
    );
}

#[test]
fn after_a_crash_anthropic_gets_a_tool_result_for_every_tool_use() {
    let env = Env::with(
        vec![anthropic_answer("ok")],
        Setup {
            provider: "anthropic",
            ..Setup::default()
        },
        |_| {},
    );
    let s = crashed_session(&env);
    env.rt
        .run_turn(&s, &agent("main", budgets(5)), "go on", &mut |_| {})
        .unwrap();
    let req = env.request(0);
    let msgs = req["messages"].as_array().unwrap();
    // user, assistant (text + 2 tool_use), user (2 tool_result + the new prompt)
    assert_eq!(msgs.len(), 3, "{msgs:#?}");
    let uses: Vec<&str> = msgs[1]["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "tool_use")
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    let results: Vec<&str> = msgs[2]["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "tool_result")
        .map(|b| b["tool_use_id"].as_str().unwrap())
        .collect();
    assert_eq!(uses, ["w1", "r1"]);
    assert_eq!(results, uses);
    let system = req["system"].to_string();
    assert!(system.contains("interrupted"), "{system}");
}

#[test]
fn a_cut_stream_keeps_the_text_already_streamed() {
    let first = format!(
        "data: {}\n\n",
        json!({"choices": [{"index": 0, "delta": {"content": "Half an ans"}, "finish_reason": null}]})
    );
    let mut cut = Reply::sse(&[&first]);
    cut.body.push(Piece::Cut);
    let env = Env::new(vec![cut, answer("whole", 100, 5)]);
    let s = env.session();
    let a = agent("main", budgets(5));
    let f = env.rt.run_turn(&s, &a, "first", &mut |_| {}).unwrap_err();
    assert!(matches!(f.error, TurnError::Provider(_)), "{:?}", f.error);
    assert_eq!(f.spent.steps, 1);
    env.rt.run_turn(&s, &a, "second", &mut |_| {}).unwrap();
    let msgs = messages(&env.request(1));
    let roles: Vec<&str> = msgs.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["system", "user", "assistant", "user"], "{msgs:#?}");
    let text = msgs[2]["content"].as_str().unwrap();
    assert!(
        text.starts_with("Half an ans") && text.contains("interrupted"),
        "{text}"
    );
}

#[test]
fn big_rejected_arguments_are_not_sent_again() {
    let big = "x".repeat(64 * 1024);
    let env = Env::new(vec![
        // No `path`: refused by schema validation.
        tool_calls(&[("w1", "file_write", json!({"content": big}))], 100, 10),
        answer("sorry", 100, 5),
    ]);
    let s = env.session();
    env.rt
        .run_turn(&s, &agent("main", budgets(5)), "write", &mut |_| {})
        .unwrap();
    let body = &env.server.requests()[1].body;
    assert!(body.len() < 8 * 1024, "{} bytes resent", body.len());
    let msgs = messages(&env.request(1));
    let args = msgs[2]["tool_calls"][0]["function"]["arguments"]
        .as_str()
        .unwrap();
    let v: Value = serde_json::from_str(args).unwrap();
    assert!(v.to_string().contains("65550"), "{v}");
    assert!(
        tool_results(&env.request(1))[0]
            .1
            .starts_with("error: invalid arguments")
    );
}

#[test]
fn turns_left_out_of_the_context_are_noted_and_reported() {
    // A 3000-token window with 1024 kept for the output: about 7900 characters of history.
    let env = Env::with(
        vec![answer("noted", 3000, 5), answer("fine", 100, 5)],
        Setup {
            context_window: 3000,
            ..Setup::default()
        },
        |rt| rt.compaction.trigger_ratio = 100.0,
    );
    let s = env.session();
    let a = agent("main", budgets(5));
    env.rt
        .run_turn(&s, &a, &"a long paste ".repeat(1000), &mut |_| {})
        .unwrap();
    let mut trimmed = vec![];
    env.rt
        .run_turn(&s, &a, "and now?", &mut |p| {
            if let Progress::ContextTrimmed { turns } = p {
                trimmed.push(turns);
            }
        })
        .unwrap();
    assert_eq!(trimmed, [1]);
    let msgs = messages(&env.request(1));
    let roles: Vec<&str> = msgs.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["system", "system", "user"], "{msgs:#?}");
    assert_eq!(
        msgs[1]["content"],
        "1 earlier turn(s) were left out to fit the context window."
    );
}

// ---- parallel read-only calls ----

/// Two calls of `tool` in one batch; each result's [start, end] in wall-clock ns.
fn two_sleeps(tool: &'static str) -> Vec<(u128, u128)> {
    let env = Env::with(
        vec![
            tool_calls(
                &[
                    ("a", tool, json!({"sleep_ms": 200})),
                    ("b", tool, json!({"sleep_ms": 200})),
                ],
                100,
                10,
            ),
            answer("both done", 100, 5),
        ],
        Setup {
            tools: vec![tool],
            ..Setup::default()
        },
        |_| {},
    );
    let s = env.session();
    env.rt
        .run_turn(&s, &agent("main", budgets(5)), "sleep twice", &mut |_| {})
        .unwrap();
    let results = tool_results(&env.request(1));
    assert_eq!(results.len(), 2);
    results
        .iter()
        .map(|(_, text)| {
            let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
            assert!(v["slept_ns"].as_u64().unwrap() >= 200_000_000, "{v}");
            (
                v["start_ns"].as_u64().unwrap() as u128,
                v["end_ns"].as_u64().unwrap() as u128,
            )
        })
        .collect()
}

#[test]
fn read_only_calls_in_one_batch_run_at_the_same_time() {
    let span = two_sleeps("fx_sleep");
    // The intervals overlap: each started before the other ended.
    assert!(
        span[0].0 < span[1].1 && span[1].0 < span[0].1,
        "the calls ran one after the other: {span:?}"
    );
}

#[test]
fn a_tool_that_claims_read_only_under_a_side_effecting_grant_runs_alone() {
    // fx_handoff declares itself read-only, but it is granted `delegation`, whose floor
    // is side-effecting: its calls never overlap.
    let span = two_sleeps("fx_handoff");
    assert!(
        span[0].1 <= span[1].0 || span[1].1 <= span[0].0,
        "the calls overlapped: {span:?}"
    );
}

// ---- delegation ----

fn helper(env_rt: &mut oxydra_agent::turn::Runtime, b: oxydra_agent::turn::Budgets) {
    env_rt
        .agents
        .insert("helper".into(), Ok(agent("helper", b)));
}

#[test]
fn a_childs_spending_counts_against_the_parent_which_bounds_it() {
    let env = Env::with(
        vec![
            // parent: $0.001
            tool_calls(
                &[(
                    "d1",
                    "delegate_to_agent",
                    json!({"agent_name": "helper", "goal": "list the files"}),
                )],
                1_000,
                0,
            ),
            // child: $0.02, past what the parent has left ($0.009)
            tool_calls(
                &[("c1", "file_list", json!({"path": "/shared"}))],
                20_000,
                0,
            ),
            // Reached only by an unbounded child and parent.
            answer("child done", 20_000, 0),
            answer("parent done", 1_000, 0),
        ],
        Setup {
            tools: vec!["file_list", "delegate_to_agent"],
            ..Setup::default()
        },
        |rt| helper(rt, budgets(10)),
    );
    let s = env.session();
    let mut b = budgets(10);
    b.max_cost = Some(0.01);
    let f = env
        .rt
        .run_turn(&s, &agent("main", b), "delegate", &mut |_| {})
        .unwrap_err();
    let TurnError::Budget(e) = &f.error else {
        panic!("{:?}", f.error)
    };
    assert_eq!(e.kind, BudgetKind::Cost);
    assert_eq!(e.key, "runtime.max_cost");
    let total = cost(1_000, 0) + cost(20_000, 0);
    assert!(close(e.used, total), "{e:?}");
    assert!(close(f.spent.cost.unwrap(), total), "{:?}", f.spent);
    assert_eq!(f.spent.steps, 2);
    assert_eq!(f.spent.usage.input_tokens, 21_000);
    assert_eq!(env.requests(), 2, "the child or the parent went on");
    // The child stopped on the parent's remaining money, and said so.
    let child = env
        .rt
        .store
        .sessions()
        .unwrap()
        .into_iter()
        .find(|(_, agent, _)| agent == "helper")
        .unwrap()
        .0;
    let t = &env.rt.store.turns(&child).unwrap()[0];
    assert_eq!(t.status, TurnStatus::Budget);
    assert!(t.detail.contains("runtime.max_cost"), "{}", t.detail);
    assert!(close(t.cost, cost(20_000, 0)));
    let parent = &env.rt.store.turns(&s).unwrap()[0];
    assert!(close(parent.cost, total), "recorded {}", parent.cost);
}

#[test]
fn a_delegated_task_has_its_own_deadline() {
    let env = Env::with(
        vec![
            tool_calls(
                &[(
                    "d1",
                    "delegate_to_agent",
                    json!({"agent_name": "helper", "goal": "list the files"}),
                )],
                100,
                0,
            ),
            delayed(
                tool_calls(&[("c1", "file_list", json!({"path": "/shared"}))], 100, 0),
                Duration::from_millis(1200),
            ),
            answer("child done", 100, 0),
            answer("parent done", 100, 0),
        ],
        Setup {
            tools: vec!["file_list", "delegate_to_agent"],
            ..Setup::default()
        },
        |rt| {
            helper(rt, budgets(10));
            rt.delegation_timeout = Duration::from_secs(1);
        },
    );
    let s = env.session();
    env.rt
        .run_turn(&s, &agent("main", budgets(10)), "delegate", &mut |_| {})
        .unwrap();
    // The parent's second call carries the child's failure.
    let results = tool_results(&env.request(2));
    assert_eq!(results[0].0, "d1", "{results:?}");
    assert!(
        results[0].1.contains("runtime.delegation_timeout_secs"),
        "{}",
        results[0].1
    );
}

#[test]
fn delegation_depth_bounds_every_delegating_tool_whatever_its_name() {
    let env = Env::with(
        vec![
            // parent hands a task on through a tool not called delegate_to_agent
            tool_calls(
                &[(
                    "h1",
                    "fx_handoff",
                    json!({"agent": "helper", "goal": "count"}),
                )],
                100,
                0,
            ),
            // the child tries to hand it on again
            tool_calls(
                &[(
                    "h2",
                    "fx_handoff",
                    json!({"agent": "helper", "goal": "count deeper"}),
                )],
                100,
                0,
            ),
            answer("child done", 100, 0),
            answer("parent done", 100, 0),
        ],
        Setup {
            tools: vec!["file_list", "fx_handoff"],
            ..Setup::default()
        },
        |rt| helper(rt, budgets(10)),
    );
    let s = env.session();
    let o = env
        .rt
        .run_turn(&s, &agent("main", budgets(10)), "delegate", &mut |_| {})
        .unwrap();
    assert_eq!(o.answer, "parent done");
    assert!(offered(&env.request(0)).contains(&"fx_handoff".to_string()));
    // At the depth limit the child is not offered it, and its call is refused.
    assert_eq!(offered(&env.request(1)), ["file_list"]);
    let refused = &tool_results(&env.request(2))[0].1;
    assert!(
        refused.starts_with("error: delegation is refused")
            && refused.contains("runtime.max_delegation_depth is 1"),
        "{refused}"
    );
    assert_eq!(env.requests(), 4);
    // Model calls of the parent (2) and of its child (2).
    assert_eq!(o.steps, 4);
}

#[test]
fn compaction_summarises_whole_turns_with_their_tool_pairs() {
    let env = Env::with(
        vec![
            tool_calls(&[("l1", "file_list", json!({"path": "/shared"}))], 100, 5),
            answer("listed", 100, 5),
            answer("SUMMARY: the user listed /shared", 100, 5),
            answer("done", 100, 5),
        ],
        Setup::default(),
        |rt| {
            rt.compaction.trigger_ratio = 0.0001;
            rt.compaction.target_ratio = 0.0001;
            rt.compaction.min_turns = 1;
        },
    );
    let s = env.session();
    let a = agent("main", budgets(5));
    env.rt
        .run_turn(&s, &a, "list /shared", &mut |_| {})
        .unwrap();
    let mut compacted = vec![];
    let o = env
        .rt
        .run_turn(&s, &a, "what next?", &mut |p| {
            if let Progress::Compaction { turns, upto_turn } = p {
                compacted.push((turns, upto_turn));
            }
        })
        .unwrap();
    assert_eq!(o.answer, "done");
    assert_eq!(compacted, [(1, 1)]);
    // The summary request holds turn 1 whole: the call and its result together.
    let msgs = messages(&env.request(2));
    let call = msgs
        .iter()
        .position(|m| m["tool_calls"][0]["id"] == "l1")
        .unwrap();
    assert_eq!(msgs[call + 1]["role"], "tool");
    assert_eq!(msgs[call + 1]["tool_call_id"], "l1");
    // The next request has the summary instead of turn 1, and no orphan result.
    let msgs = messages(&env.request(3));
    let roles: Vec<&str> = msgs.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["system", "system", "user"], "{msgs:#?}");
    assert!(msgs[1]["content"].as_str().unwrap().contains("SUMMARY"));
    // The summary's cost is the turn's too (not a model call of its budget).
    assert_eq!(o.steps, 1);
    assert_eq!(o.usage.input_tokens, 200);
}
