//! The scheduler end to end: `oxydra-host serve` runs due jobs as turns and sends their
//! results to where they came from, over the gateway (`scheduled_notification`).
//!
//! A scripted OpenAI-compatible server plays the model, routing by what it is asked: a
//! gateway turn makes it call `schedule_create`; a scheduled run (its prompt starts with
//! `[Scheduled run`) is answered by the goal's keyword (`hello`, `slow`, `loop`, `worth it`, `fail`).
//! Jobs are created through the agent, or with `Scheduler::create` on the same store
//! (what the tool does), with the origin of a gateway session this test follows.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;
#[path = "common/reap.rs"]
mod reap;
#[path = "../../runtime/tests/common/server.rs"]
mod server;

use common::gateway::{self, Ws, next_of_within as next_of, send};
use oxydra_runtime::scheduling::{CadenceKind, NewJob, Notify};
use oxydra_session::Origin;
use oxydra_session::config::SchedulerConfig;
use oxydra_session::scheduler::Scheduler;
use reap::Reaped;
use serde_json::{Value, json};
use server::{Piece, Recorded, Reply, Server, openai};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The last user message of a chat-completions request.
fn last_user(r: &Recorded) -> String {
    let body = r.json();
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .map(|m| m["content"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default()
}

fn has_tool_result(r: &Recorded) -> bool {
    r.json()["messages"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["role"] == "tool")
}

/// The model: see the module docs. `create` is the `schedule_create` arguments a
/// gateway turn calls with (then it answers "job made").
fn model(
    create: impl Fn() -> Value + Send + Sync + 'static,
) -> impl Fn(&Recorded) -> Reply + Send + Sync + 'static {
    move |r| {
        let user = last_user(r);
        if user.starts_with("[Scheduled run") {
            if user.contains("slow") {
                return openai::stream(
                    vec![
                        Piece::Pause(Duration::from_secs(4)),
                        openai::delta("slow done"),
                    ],
                    Some((10, 5)),
                );
            }
            if user.contains("loop") {
                return openai::tool_calls(&[("c1", "schedule_search", json!({}))], Some((10, 5)));
            }
            if user.contains("worth it") {
                return openai::answer("[NOTIFY] worth telling ✓", Some((10, 5)));
            }
            if user.contains("fail") {
                return Reply::status(400, "{\"error\":{\"message\":\"scripted failure\"}}");
            }
            return openai::answer("scheduled hello ✓", Some((10, 5)));
        }
        if has_tool_result(r) {
            openai::answer("job made", Some((10, 5)))
        } else {
            openai::tool_calls(&[("c1", "schedule_create", create())], Some((10, 5)))
        }
    }
}

/// The shared test environment, with the model of [`model`] and a fast scheduler.
struct Env(common::Env);

impl std::ops::Deref for Env {
    type Target = common::Env;
    fn deref(&self) -> &common::Env {
        &self.0
    }
}

impl Env {
    fn new(create: impl Fn() -> Value + Send + Sync + 'static, scheduler_cfg: &str) -> Env {
        Env(common::Env::with_server(
            Server::routes("127.0.0.1", model(create)),
            &format!(
                "[scheduler]\npoll_interval_secs = 1\nmin_interval_secs = 1\nmissed_grace_secs = 5\n{scheduler_cfg}"
            ),
        ))
    }

    fn serve(&self, sets: &[&str]) -> Serve {
        let mut c = self.cmd();
        for s in sets {
            c.args(["--set", s]);
        }
        c.args(["serve", "--workspace", self.ws().to_str().unwrap()]);
        let mut child = c
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let err = common::collect(child.stderr.take().unwrap());
        let url = Arc::new(Mutex::new(None));
        let u = url.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.strip_prefix("gateway ") {
                    *u.lock().unwrap() = Some(rest.to_string());
                }
            }
        });
        let mut s = Serve {
            child: Reaped(child),
            err,
            url: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(l) = url.lock().unwrap().clone() {
                s.url = l;
                return s;
            }
            if let Some(status) = s.child.try_wait().unwrap() {
                panic!("serve exited with {status}: {}", s.err.lock().unwrap());
            }
            assert!(
                Instant::now() < deadline,
                "no gateway line: {}",
                s.err.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The scheduler over the same store, as the tools see it.
    fn scheduler(&self) -> Scheduler {
        let cfg = SchedulerConfig {
            poll_interval_secs: 1,
            min_interval_secs: 1,
            missed_grace_secs: 5,
            ..Default::default()
        };
        Scheduler::open(&self.ws(), cfg).unwrap()
    }

    /// `oxydra-host schedule …`: stdout, after checking it succeeded.
    fn schedule(&self, args: &[&str]) -> String {
        let out = self
            .cmd()
            .arg("schedule")
            .args(args)
            .args(["--workspace", self.ws().to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }
}

struct Serve {
    child: Reaped,
    err: Arc<Mutex<String>>,
    url: String,
}

impl Serve {
    fn stderr(&self) -> String {
        self.err.lock().unwrap().clone()
    }

    fn kill9(mut self) {
        let _ = self.child.0.kill();
        let _ = self.child.0.wait();
    }
}

/// A gateway client, said hello: (the connection, its session).
fn client(serve: &Serve, ws_dir: &Path) -> (Ws, String) {
    let mut ws = gateway::connect(&serve.url);
    gateway::hello(&mut ws, &gateway::token(ws_dir), json!({}));
    let ack = next_of(&mut ws, "hello_ack", Duration::from_secs(30));
    let session = ack["session"]["session_id"].as_str().unwrap().to_string();
    (ws, session)
}

fn rfc3339_in(secs: i64) -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        + secs;
    oxydra_session::scheduler::cadence::format_ms(t * 1000)
}

fn job(goal: &str, kind: CadenceKind, value: &str) -> NewJob {
    NewJob {
        goal: goal.into(),
        name: None,
        cadence_kind: kind,
        cadence_value: value.into(),
        timezone: None,
        notify: Some(Notify::Always),
        max_turns: None,
        max_cost: None,
        max_wall_secs: None,
    }
}

/// Wait until `f` holds (checked every 100 ms), or fail saying `what`.
fn wait_for(what: &str, within: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_job_made_through_the_agent_fires_in_serve_and_its_result_reaches_the_gateway_session() {
    // The time is taken when the model asks for the job: 2 s later.
    let env = Env::new(
        || json!({"goal": "say hello", "cadence_type": "once", "cadence_value": rfc3339_in(2), "name": "greeting ✓"}),
        "",
    );
    let serve = env.serve(&[]);
    let (mut ws, session) = client(&serve, &env.ws());
    send(
        &mut ws,
        "send_turn",
        json!({"prompt": "remind me in 3 seconds to say hello"}),
    );
    let done = next_of(&mut ws, "turn_completed", Duration::from_secs(30));
    assert_eq!(done["response"]["message"], "job made");
    let asked = Instant::now();
    let n = next_of(&mut ws, "scheduled_notification", Duration::from_secs(20));
    assert!(
        asked.elapsed() < Duration::from_secs(12),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(n["message"], "scheduled hello ✓");
    assert_eq!(n["schedule_name"], "greeting ✓");
    assert_eq!(n["session_id"], session.as_str());
    let id = n["schedule_id"].as_str().unwrap().to_string();
    let run = n["run_id"].as_str().unwrap().to_string();
    // The origin came from the turn: this gateway session.
    let list = env.schedule(&["list"]);
    assert!(
        list.contains(&id)
            && list.contains("finished")
            && list.contains(&format!("gateway session {session}")),
        "{list}"
    );
    let runs = env.schedule(&["runs", &id]);
    assert!(runs.contains(&run) && runs.contains("succeeded"), "{runs}");
    assert!(
        runs.contains("1 turn(s)") && runs.contains("$0."),
        "turns and cost recorded: {runs}"
    );
    assert!(
        runs.contains(&format!("session {session}: 1 client(s)")),
        "{runs}"
    );
    // A one-off runs once: nothing more after a few polls.
    std::thread::sleep(Duration::from_secs(3));
    let s = env.scheduler();
    assert_eq!(s.runs(&id, 20).unwrap().len(), 1);
    drop(serve);
}

#[test]
fn bad_input_through_the_agent_is_refused_naming_the_field() {
    let env = Env::new(
        || json!({"goal": "x", "cadence_type": "cron", "cadence_value": "61 * * * *"}),
        "",
    );
    let serve = env.serve(&[]);
    let (mut ws, _) = client(&serve, &env.ws());
    send(&mut ws, "send_turn", json!({"prompt": "schedule it"}));
    next_of(&mut ws, "turn_completed", Duration::from_secs(30));
    let tool_result = env
        .server
        .requests()
        .iter()
        .filter_map(|r| {
            r.json()["messages"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["role"] == "tool")
                .map(|m| m["content"].to_string())
        })
        .next()
        .expect("the model saw the tool's result");
    assert!(
        tool_result.contains("cadence_value")
            && tool_result.contains("not a valid cron expression"),
        "{tool_result}"
    );
    assert!(env.scheduler().store().jobs().unwrap().is_empty());
    drop(serve);
}

#[test]
fn a_run_that_outlasts_its_interval_is_never_overlapped_and_skipped_ticks_are_recorded() {
    let env = Env::new(|| json!({}), "");
    let serve = env.serve(&[]);
    let (_ws, session) = client(&serve, &env.ws());
    let s = env.scheduler();
    let j = s
        .create(
            job("be slow", CadenceKind::Interval, "1"),
            &Origin::Gateway { session },
            "default",
        )
        .unwrap();
    std::thread::sleep(Duration::from_secs(9));
    s.set_status(&j.id, false).unwrap();
    let runs = s.store().runs(&j.id, 20).unwrap();
    let ran: Vec<_> = runs.iter().filter(|r| r.status != "skipped").collect();
    let skipped: Vec<_> = runs.iter().filter(|r| r.status == "skipped").collect();
    assert!(!ran.is_empty() && ran.len() <= 3, "{runs:#?}");
    assert!(
        skipped.len() >= 2,
        "ticks during a run are skipped: {runs:#?}"
    );
    assert!(
        skipped.iter().all(|r| r.detail.contains("still in flight")),
        "{skipped:#?}"
    );
    // No two runs overlap in time.
    for a in &ran {
        for b in &ran {
            if a.id < b.id {
                let (a0, a1) = (a.started_ms, a.ended_ms.unwrap_or(i64::MAX));
                let (b0, b1) = (b.started_ms, b.ended_ms.unwrap_or(i64::MAX));
                assert!(a1 <= b0 || b1 <= a0, "overlap: {a:#?} {b:#?}");
            }
        }
    }
    let model_calls = env
        .server
        .requests()
        .iter()
        .filter(|r| last_user(r).starts_with("[Scheduled run"))
        .count();
    assert_eq!(
        model_calls,
        ran.len(),
        "one model call per run, none queued"
    );
    drop(serve);
}

#[test]
fn missed_ticks_are_caught_up_once_or_skipped_and_a_killed_run_is_interrupted() {
    let env = Env::new(|| json!({}), "");
    let s = env.scheduler();
    let origin = Origin::Cli {
        session: "none".into(),
    };
    // Two hourly jobs made 3.5 h ago whose ticks (2.5 h, 1.5 h and 0.5 h ago) passed
    // while no serve ran; the next regular tick is 30 min away, so none comes during
    // the test and every run below is a catch-up.
    let mut ids = Vec::new();
    for goal in ["say hello", "say hello again"] {
        let j = s
            .create(job(goal, CadenceKind::Interval, "3600"), &origin, "default")
            .unwrap();
        let mut row = s.store().job(&j.id).unwrap().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        // Made again with an earlier creation (the interval's anchor), which
        // update_job keeps.
        s.store().delete_job(&j.id).unwrap();
        row.created_ms = now - 3 * 3_600_000 - 1_800_000;
        row.next_run_ms = Some(row.created_ms + 3_600_000);
        assert!(s.store().insert_job(&row, 50).unwrap());
        ids.push(j.id);
    }
    s.set_status(&ids[1], false).unwrap();
    {
        let serve = env.serve(&[]);
        wait_for("the catch-up run", Duration::from_secs(15), || {
            s.store()
                .runs(&ids[0], 20)
                .unwrap()
                .iter()
                .any(|r| r.status == "succeeded")
        });
        drop(serve);
    }
    let runs = s.store().runs(&ids[0], 20).unwrap();
    assert_eq!(runs.len(), 1, "one run for all missed ticks: {runs:#?}");
    assert!(
        runs[0].detail.contains("catching up: 3 tick(s) missed"),
        "{runs:#?}"
    );
    assert!(
        runs[0].delivered.contains("kept here"),
        "a CLI origin keeps it: {runs:#?}"
    );

    // With missed_ticks = "skip": one skipped record, no run.
    let mut row = s.store().job(&ids[0]).unwrap().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    row.next_run_ms = Some(now - 60_000);
    s.store().update_job(&row).unwrap();
    {
        let serve = env.serve(&["scheduler.missed_ticks=skip"]);
        wait_for("the skipped record", Duration::from_secs(15), || {
            s.store().runs(&ids[0], 20).unwrap().len() == 2
        });
        std::thread::sleep(Duration::from_millis(1500));
        drop(serve);
    }
    let runs = s.store().runs(&ids[0], 20).unwrap();
    assert_eq!(runs[0].status, "skipped", "{runs:#?}");
    assert!(
        runs[0].detail.contains("missed_ticks = \"skip\""),
        "{runs:#?}"
    );
    assert_eq!(runs.iter().filter(|r| r.status == "succeeded").count(), 1);

    // kill -9 during a run: the next serve marks it interrupted.
    s.set_status(&ids[0], false).unwrap();
    let slow = s
        .create(
            job("be slow", CadenceKind::Once, &rfc3339_in(1)),
            &origin,
            "default",
        )
        .unwrap();
    let serve = env.serve(&[]);
    wait_for("the slow run to start", Duration::from_secs(15), || {
        s.store()
            .runs(&slow.id, 5)
            .unwrap()
            .iter()
            .any(|r| r.status == "running")
    });
    serve.kill9();
    let serve = env.serve(&[]);
    wait_for(
        "the run marked interrupted",
        Duration::from_secs(15),
        || s.store().runs(&slow.id, 5).unwrap()[0].status == "interrupted",
    );
    let r = &s.store().runs(&slow.id, 5).unwrap()[0];
    assert!(
        r.detail.contains("interrupted") && r.ended_ms.is_some(),
        "{r:#?}"
    );
    drop(serve);
}

#[test]
fn a_budget_stops_a_run_and_failures_pause_the_job_and_are_announced() {
    let env = Env::new(|| json!({}), "pause_after_failures = 2\n");
    let serve = env.serve(&[]);
    let (mut ws, session) = client(&serve, &env.ws());
    let s = env.scheduler();
    let origin = Origin::Gateway {
        session: session.clone(),
    };
    // The run wants a second model call after its tool call; max_turns 1 stops it.
    let looping = s
        .create(
            NewJob {
                max_turns: Some(1),
                ..job("loop", CadenceKind::Once, &rfc3339_in(1))
            },
            &origin,
            "default",
        )
        .unwrap();
    let n = next_of(&mut ws, "scheduled_notification", Duration::from_secs(20));
    assert_eq!(n["schedule_id"], looping.id.as_str());
    let msg = n["message"].as_str().unwrap();
    assert!(
        msg.contains("failed (budget)") && msg.contains("the job's max_turns (1)"),
        "{msg}"
    );
    let r = &s.store().runs(&looping.id, 5).unwrap()[0];
    assert_eq!((r.status.as_str(), r.turns), ("budget", 1), "{r:#?}");
    assert!(r.cost.is_some_and(|c| c > 0.0), "{r:#?}");

    // A job whose runs fail: each failure announced, paused after the second.
    let failing = s
        .create(job("fail", CadenceKind::Interval, "2"), &origin, "default")
        .unwrap();
    let first = next_of(&mut ws, "scheduled_notification", Duration::from_secs(20));
    assert_eq!(first["schedule_id"], failing.id.as_str());
    assert!(
        first["message"]
            .as_str()
            .unwrap()
            .contains("failed (failed)"),
        "{first}"
    );
    let second = next_of(&mut ws, "scheduled_notification", Duration::from_secs(20));
    let msg = second["message"].as_str().unwrap();
    assert!(
        msg.contains("paused after 2 consecutive failed runs")
            && msg.contains("oxydra-host schedule resume"),
        "{msg}"
    );
    let list = env.schedule(&["list"]);
    assert!(
        list.contains("paused") && list.contains("pause_after_failures"),
        "{list}"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        s.store().runs(&failing.id, 20).unwrap().len(),
        2,
        "no run after the pause"
    );
    // Resumed from the CLI, it runs again.
    let out = env.schedule(&["resume", &failing.id]);
    assert!(out.contains("active"), "{out}");
    let again = next_of(&mut ws, "scheduled_notification", Duration::from_secs(20));
    assert_eq!(again["schedule_id"], failing.id.as_str());
    env.schedule(&["delete", &failing.id]);
    assert!(s.store().job(&failing.id).unwrap().is_none());
    let _ = serve.stderr();
    drop(serve);
}

#[test]
fn money_and_wall_time_budgets_stop_runs_and_the_cli_pauses_a_job() {
    let env = Env::new(|| json!({}), "");
    let serve = env.serve(&[]);
    let (_ws, session) = client(&serve, &env.ws());
    let s = env.scheduler();
    let origin = Origin::Gateway { session };
    // One model call costs about $0.0000045 here (gpt-4o-mini, 10 + 5 tokens): over
    // a max_cost of $0.000001, so the run stops after it.
    let costly = s
        .create(
            NewJob {
                max_cost: Some(0.000001),
                ..job("say hello", CadenceKind::Once, &rfc3339_in(1))
            },
            &origin,
            "default",
        )
        .unwrap();
    // The model takes 4 s to answer; a wall time of 1 s stops the run in the call.
    let slow = s
        .create(
            NewJob {
                max_wall_secs: Some(1),
                ..job("be slow", CadenceKind::Once, &rfc3339_in(1))
            },
            &origin,
            "default",
        )
        .unwrap();
    let ended = |id: &str| {
        s.store()
            .runs(id, 5)
            .unwrap()
            .first()
            .is_some_and(|r| r.ended_ms.is_some())
    };
    wait_for("both runs to end", Duration::from_secs(30), || {
        ended(&costly.id) && ended(&slow.id)
    });
    let r = &s.store().runs(&costly.id, 5).unwrap()[0];
    assert_eq!(r.status, "budget", "{r:#?}");
    assert!(
        r.detail.contains("the job's max_cost ($0.000001)") && r.cost.is_some_and(|c| c > 0.000001),
        "{r:#?}"
    );
    let r = &s.store().runs(&slow.id, 5).unwrap()[0];
    assert_eq!(r.status, "budget", "{r:#?}");
    assert!(r.detail.contains("the job's max_wall_secs (1)"), "{r:#?}");
    assert!(
        r.ended_ms.unwrap() - r.started_ms < 3500,
        "stopped at its wall time, not after the model's 4 s: {r:#?}"
    );

    // `schedule pause` from the CLI: the job stops running.
    let every = s
        .create(
            job("say hello", CadenceKind::Interval, "3600"),
            &origin,
            "default",
        )
        .unwrap();
    let out = env.schedule(&["pause", &every.id]);
    assert!(out.contains(&format!("{} paused", every.id)), "{out}");
    let row = s.store().job(&every.id).unwrap().unwrap();
    assert_eq!((row.status.as_str(), row.next_run_ms), ("paused", None));
    let list = env.schedule(&["list"]);
    assert!(list.contains("paused by the user"), "{list}");
    // An unknown id is a usage error (exit 2) naming it.
    let out = env
        .cmd()
        .args(["schedule", "pause", "job-nope", "--workspace"])
        .arg(env.ws())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("job-nope"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(serve);
}

#[test]
fn with_an_unpriced_model_a_money_budget_is_refused_and_runs_say_their_cost_is_unknown() {
    // The model asks for a job with a money budget; the catalog has no prices for it.
    let env = Env::new(
        || json!({"goal": "say hello", "cadence_type": "interval", "cadence_value": "3600", "max_cost": 0.1}),
        "",
    );
    let serve = env.serve(&[
        "selection.model=scripted-unpriced",
        "catalog.skip_catalog_validation=true",
    ]);
    let (mut ws, session) = client(&serve, &env.ws());
    send(
        &mut ws,
        "send_turn",
        json!({"prompt": "say hello every hour, at most 10 cents"}),
    );
    next_of(&mut ws, "turn_completed", Duration::from_secs(30));
    let tool_result = env
        .server
        .requests()
        .iter()
        .filter_map(|r| {
            r.json()["messages"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["role"] == "tool")
                .map(|m| m["content"].to_string())
        })
        .next()
        .expect("the model saw the tool's result");
    assert!(
        tool_result.contains("max_cost")
            && tool_result.contains("model `scripted-unpriced` has no prices in the catalog"),
        "{tool_result}"
    );
    let s = env.scheduler();
    assert!(s.store().jobs().unwrap().is_empty(), "nothing was made");
    // A job with the default money budget runs; its run says the budget did not apply
    // and records no cost (none is made up).
    let j = s
        .create(
            job("say hello", CadenceKind::Once, &rfc3339_in(1)),
            &Origin::Gateway { session },
            "default",
        )
        .unwrap();
    let n = next_of(&mut ws, "scheduled_notification", Duration::from_secs(20));
    assert_eq!(n["message"], "scheduled hello ✓");
    let r = &s.store().runs(&j.id, 5).unwrap()[0];
    assert_eq!((r.status.as_str(), r.cost), ("succeeded", None), "{r:#?}");
    assert!(
        r.detail
            .contains("cost unknown: model not priced; max_cost not enforceable"),
        "{r:#?}"
    );
    let runs = env.schedule(&["runs", &j.id]);
    assert!(
        runs.contains("cost unknown") && runs.contains("max_cost not enforceable"),
        "{runs}"
    );
    drop(serve);
}

#[test]
fn conditional_jobs_tell_only_marked_answers_and_never_jobs_tell_nothing_not_even_failures() {
    let env = Env::new(|| json!({}), "");
    let serve = env.serve(&[]);
    let (mut ws, session) = client(&serve, &env.ws());
    let s = env.scheduler();
    let origin = Origin::Gateway { session };
    let make = |goal: &str, notify| {
        s.create(
            NewJob {
                notify: Some(notify),
                ..job(goal, CadenceKind::Once, &rfc3339_in(1))
            },
            &origin,
            "default",
        )
        .unwrap()
    };
    let unmarked = make("say hello", Notify::Conditional);
    let marked = make("worth it", Notify::Conditional);
    let silent_failure = make("fail", Notify::Never);
    // Only the marked answer is sent, without its marker.
    let n = next_of(&mut ws, "scheduled_notification", Duration::from_secs(20));
    assert_eq!(n["schedule_id"], marked.id.as_str());
    assert_eq!(n["message"], "worth telling ✓");
    let delivered = |id: &str| {
        s.store()
            .runs(id, 5)
            .unwrap()
            .first()
            .map(|r| (r.status.clone(), r.delivered.clone()))
            .unwrap_or_default()
    };
    wait_for(
        "the three runs to be recorded",
        Duration::from_secs(20),
        || {
            [&unmarked.id, &marked.id, &silent_failure.id]
                .iter()
                .all(|id| !delivered(id).1.is_empty())
        },
    );
    assert_eq!(
        delivered(&unmarked.id),
        (
            "succeeded".to_string(),
            "none: the answer did not start with [NOTIFY]".to_string()
        )
    );
    assert_eq!(
        delivered(&silent_failure.id),
        (
            "failed".to_string(),
            "none: the job's policy is never".to_string()
        )
    );
    // And no other notification reaches the session.
    ws.get_ref()
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    loop {
        match ws.read() {
            Ok(tungstenite::Message::Text(t)) => {
                let f: Value = serde_json::from_str(t.as_str()).unwrap();
                assert_ne!(f["type"], "scheduled_notification", "{f}");
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
    drop(serve);
}
