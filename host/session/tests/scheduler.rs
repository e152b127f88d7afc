//! The scheduler inside one process, against a scripted model and the real bundled
//! components: a job made in a turn from a chat records that chat as its origin (from the
//! turn, not from the model), its result goes to the chat through the channel's
//! registered `Notifier`, `conditional` sends only answers marked `[NOTIFY]`, and with no
//! notifier the result stays in the history.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

#[path = "common/loopback.rs"]
mod loopback;
#[path = "../../runtime/tests/common/server.rs"]
mod server;

use oxydra_runtime::scheduling::{CadenceKind, NewJob, Notify};
use oxydra_session::scheduler::{cadence::format_ms, executor};
use oxydra_session::{Notifier, Origin, ServiceOptions, SessionService, System};
use serde_json::json;
use server::{Recorded, Reply, Server, openai};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn last_user(r: &Recorded) -> String {
    r.json()["messages"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|m| m["role"] == "user")
        .map(|m| m["content"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default()
}

fn in_secs(s: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    format_ms(now + s * 1000)
}

fn model(r: &Recorded) -> Reply {
    let user = last_user(r);
    if user.starts_with("[Scheduled run") {
        return if user.contains("quiet") {
            openai::answer("nothing new", None)
        } else if user.contains("news") {
            openai::answer("[NOTIFY] big news", None)
        } else {
            openai::answer("hello from a job", None)
        };
    }
    let called = r.json()["messages"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["role"] == "tool");
    if called {
        openai::answer("ok", None)
    } else {
        openai::tool_calls(
            &[(
                "c1",
                "schedule_create",
                json!({"goal": "say hi", "cadence_type": "once", "cadence_value": in_secs(2)}),
            )],
            None,
        )
    }
}

#[derive(Default)]
struct Chat(Mutex<Vec<(Origin, String)>>);

impl Notifier for Chat {
    fn notify(&self, origin: &Origin, text: &str) -> Result<(), String> {
        self.0
            .lock()
            .unwrap()
            .push((origin.clone(), text.to_string()));
        Ok(())
    }
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_job_from_a_chat_reports_to_that_chat_through_its_notifier() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let server = Server::routes("127.0.0.1", model);
    let mut cfg = loopback::loopback_config(&server.url, dir.path().join("cache"));
    cfg.scheduler.poll_interval_secs = 1;
    cfg.scheduler.min_interval_secs = 1;
    cfg.scheduler.missed_grace_secs = 5;
    let system = Arc::new(System::new(cfg.clone(), None).unwrap());
    let service = Arc::new(
        SessionService::open(
            system,
            "alice",
            &dir.path().join("ws"),
            ServiceOptions::from_config(&cfg),
        )
        .unwrap(),
    );
    let chat = Arc::new(Chat::default());
    service.notifiers().register("telegram", chat.clone());
    let _executor = executor::start(service.clone()).unwrap().unwrap();
    let origin = Origin::Channel {
        channel: "telegram".into(),
        chat_id: "-1001".into(),
        thread_id: Some("7".into()),
    };

    // A turn from the chat makes a job through the agent: the job's origin is the chat.
    let session = service.create(None, None).unwrap().id;
    let sub = service
        .submit_from(&session, "say hi in 2 seconds", origin.clone())
        .unwrap();
    let done = sub.wait_finished(|_| {}).unwrap();
    assert_eq!(done.outcome.unwrap().answer, "ok");
    let sched = service.scheduler().unwrap();
    let jobs = sched.store().jobs().unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(Origin::from_json(&jobs[0].origin).unwrap(), origin);
    wait_for("the chat to be told", || !chat.0.lock().unwrap().is_empty());
    let (to, text) = chat.0.lock().unwrap()[0].clone();
    assert_eq!(to, origin);
    assert!(
        text.contains("hello from a job") && text.contains("say hi"),
        "{text}"
    );
    let run = &sched.store().runs(&jobs[0].id, 5).unwrap()[0];
    assert_eq!(run.status, "succeeded");
    assert_eq!(run.delivered, "telegram chat -1001 thread 7");

    // conditional: only an answer marked [NOTIFY] is sent, without the marker.
    let conditional = |goal: &str| NewJob {
        goal: goal.into(),
        name: None,
        cadence_kind: CadenceKind::Once,
        cadence_value: in_secs(1),
        timezone: None,
        notify: Some(Notify::Conditional),
        max_turns: None,
        max_cost: None,
        max_wall_secs: None,
    };
    let quiet = sched
        .create(conditional("stay quiet"), &origin, "default")
        .unwrap();
    let news = sched
        .create(conditional("any news?"), &origin, "default")
        .unwrap();
    wait_for("both conditional runs", || {
        [&quiet.id, &news.id].iter().all(|id| {
            sched
                .store()
                .runs(id, 5)
                .unwrap()
                .first()
                .is_some_and(|r| !r.delivered.is_empty())
        })
    });
    let told: Vec<String> = chat
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|(_, t)| t.clone())
        .collect();
    assert_eq!(told.len(), 2, "{told:?}");
    assert!(
        told[1].ends_with("big news") && !told[1].contains("[NOTIFY]"),
        "{told:?}"
    );
    let q = &sched.store().runs(&quiet.id, 5).unwrap()[0];
    assert_eq!(q.output, "nothing new", "kept in the history");
    assert!(
        q.delivered.contains("did not start with [NOTIFY]"),
        "{q:#?}"
    );

    // With the channel gone, the result stays in the history and says why.
    service.notifiers().unregister("telegram");
    let lone = sched
        .create(
            NewJob {
                notify: Some(Notify::Always),
                ..conditional("say hello")
            },
            &origin,
            "default",
        )
        .unwrap();
    wait_for("the lone run", || {
        sched
            .store()
            .runs(&lone.id, 5)
            .unwrap()
            .first()
            .is_some_and(|r| !r.delivered.is_empty())
    });
    let r = &sched.store().runs(&lone.id, 5).unwrap()[0];
    assert_eq!(r.output, "hello from a job");
    assert_eq!(r.delivered, "kept here: channel telegram is not running");
    assert_eq!(chat.0.lock().unwrap().len(), 2);
}

#[test]
fn a_run_in_flight_in_another_process_is_not_overlapped() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let server = Server::routes("127.0.0.1", model);
    let mut cfg = loopback::loopback_config(&server.url, dir.path().join("cache"));
    cfg.scheduler.poll_interval_secs = 1;
    cfg.scheduler.min_interval_secs = 1;
    cfg.scheduler.missed_grace_secs = 5;
    let system = Arc::new(System::new(cfg.clone(), None).unwrap());
    let service = Arc::new(
        SessionService::open(
            system,
            "alice",
            &dir.path().join("ws"),
            ServiceOptions::from_config(&cfg),
        )
        .unwrap(),
    );
    let sched = service.scheduler().unwrap();
    let origin = Origin::Cli {
        session: "s".into(),
    };
    let j = sched
        .create(
            NewJob {
                goal: "say hello".into(),
                name: None,
                cadence_kind: CadenceKind::Interval,
                cadence_value: "1".into(),
                timezone: None,
                notify: Some(Notify::Never),
                max_turns: None,
                max_cost: None,
                max_wall_secs: None,
            },
            &origin,
            "default",
        )
        .unwrap();
    // A run another live process holds (recorded with this process's id, which is alive).
    sched
        .store()
        .record_run(&oxydra_store::RunRow {
            id: "run-elsewhere".into(),
            job_id: j.id.clone(),
            scheduled_ms: 0,
            started_ms: 1,
            ended_ms: None,
            status: "running".into(),
            turns: 0,
            cost: None,
            output: String::new(),
            detail: String::new(),
            delivered: String::new(),
        })
        .unwrap();
    let _executor = executor::start(service.clone()).unwrap().unwrap();
    // Several ticks: after the first is skipped it is the newest run, and the next ones
    // must still find the other process's run in flight (not just look at the newest).
    wait_for("three skipped ticks", || {
        sched
            .store()
            .runs(&j.id, 20)
            .unwrap()
            .iter()
            .filter(|r| r.status == "skipped")
            .count()
            >= 3
    });
    let runs = sched.store().runs(&j.id, 20).unwrap();
    assert!(
        runs.iter()
            .filter(|r| r.status == "skipped")
            .all(|r| r.detail.contains("in another process")),
        "{runs:#?}"
    );
    assert_eq!(
        runs.iter().filter(|r| r.status != "skipped").count(),
        1,
        "only the other process's run: {runs:#?}"
    );
    assert!(
        server.requests().is_empty(),
        "no model call while it is in flight"
    );
}
