//! The session service against a scripted OpenAI-compatible server on 127.0.0.1 and the
//! real bundled components: subscriptions, one turn per session, the per-user FIFO cap,
//! cancellation, resuming from the store, archiving.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

#[path = "common/loopback.rs"]
mod loopback;
#[path = "../../runtime/tests/common/server.rs"]
mod server;

use oxydra_agent::turn::TurnError;
use oxydra_session::{ServiceError, ServiceOptions, SessionService, System, TurnEvent};
use server::{Piece, Reply, Server};
use std::sync::Arc;
use std::time::Duration;

use server::openai::{delta, stream};

fn answer(text: &str) -> Reply {
    server::openai::answer(text, None)
}

/// An answer in `n` deltas (`w0 w1 …`), pausing `pause` before the last.
fn slow_answer(n: usize, pause: Duration) -> Reply {
    let mut pieces = Vec::new();
    for i in 0..n {
        if i + 1 == n {
            pieces.push(Piece::Pause(pause));
        }
        pieces.push(delta(&format!("w{i} ")));
    }
    stream(pieces, None)
}

struct Env {
    dir: tempfile::TempDir,
    server: Server,
    system: Arc<System>,
}

impl Env {
    fn new(replies: Vec<Reply>) -> Env {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let server = Server::start(replies);
        let cfg = loopback::loopback_config(&server.url, dir.path().join("cache"));
        let system = Arc::new(System::new(cfg, None).unwrap());
        Env {
            dir,
            server,
            system,
        }
    }

    fn service(&self, opts: ServiceOptions) -> SessionService {
        SessionService::open(
            self.system.clone(),
            "alice",
            &self.dir.path().join("ws"),
            opts,
        )
        .unwrap()
    }

    fn opts(&self) -> ServiceOptions {
        ServiceOptions::from_config(&self.system.config)
    }

    /// The last user message of each request, in arrival order.
    fn prompts(&self) -> Vec<String> {
        self.server
            .requests()
            .iter()
            .map(|r| {
                let body = r.json();
                body["messages"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .rev()
                    .find(|m| m["role"] == "user")
                    .map(|m| m["content"].as_str().unwrap_or_default().to_string())
                    .unwrap_or_default()
            })
            .collect()
    }
}

fn texts(events: &[TurnEvent]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            TurnEvent::Text(t) => Some(t.as_str()),
            _ => None,
        })
        .collect()
}

#[test]
fn subscribers_share_one_ordered_stream_and_a_late_one_gets_the_state() {
    let env = Env::new(vec![slow_answer(4, Duration::from_millis(400))]);
    let svc = env.service(env.opts());
    let s = svc.create(None, None).unwrap();
    let first = svc.submit(&s.id, "hello").unwrap();
    // Wait until part of the answer streamed, then subscribe late.
    let mut seen = Vec::new();
    while !texts(&seen).contains("w2 ") {
        seen.push(first.recv().unwrap());
    }
    let late = svc.subscribe(&s.id).unwrap();
    let TurnEvent::Snapshot(state) = late.recv().unwrap() else {
        panic!("a late subscriber starts with a snapshot")
    };
    assert!(state.active);
    assert_eq!(state.text, "w0 w1 w2 ");
    let mut rest_first = Vec::new();
    first.wait_finished(|e| rest_first.push(e.clone())).unwrap();
    let mut rest_late = Vec::new();
    late.wait_finished(|e| rest_late.push(e.clone())).unwrap();
    // From the subscription on, both see the same events in the same order.
    assert_eq!(texts(&rest_first), texts(&rest_late));
    assert_eq!(texts(&rest_late), "w3 ");
    seen.extend(rest_first);
    assert_eq!(texts(&seen), "w0 w1 w2 w3 ");

    // After the turn, a new subscriber gets the last terminal event in its snapshot.
    let after = svc.subscribe(&s.id).unwrap();
    let TurnEvent::Snapshot(state) = after.recv().unwrap() else {
        panic!("snapshot first")
    };
    assert!(!state.active);
    let last = state.last.unwrap();
    assert_eq!(last.outcome.unwrap().answer, "w0 w1 w2 w3 ");
}

#[test]
fn a_slow_subscriber_is_marked_lagged_and_never_slows_the_turn() {
    let env = Env::new(vec![slow_answer(40, Duration::from_millis(1))]);
    let svc = env.service(ServiceOptions {
        subscriber_buffer: 4,
        ..env.opts()
    });
    let s = svc.create(None, None).unwrap();
    let slow = svc.subscribe(&s.id).unwrap();
    let events = svc.submit(&s.id, "go").unwrap();
    // The turn finishes while `slow` reads nothing.
    let summary = events.wait_finished(|_| {}).unwrap();
    assert!(summary.outcome.is_ok());
    let mut got = Vec::new();
    while let Ok(Some(e)) = slow.recv_timeout(Duration::from_millis(50)) {
        got.push(e);
    }
    let lagged = got
        .iter()
        .find_map(|e| match e {
            TurnEvent::Lagged { missed, state } => Some((*missed, state.clone())),
            _ => None,
        })
        .expect("a lagged marker");
    assert!(lagged.0 > 0);
    // The marker carries the latest state (the answer so far, or once the turn ended,
    // its outcome), and the terminal event is never dropped.
    let answer_so_far = match &lagged.1.last {
        Some(last) => last.outcome.as_ref().unwrap().answer.clone(),
        None => lagged.1.text.clone(),
    };
    assert!(answer_so_far.starts_with("w0 "), "{answer_so_far:?}");
    assert!(
        matches!(got.last(), Some(TurnEvent::Finished(_))),
        "{got:?}"
    );
    assert!(got.len() <= 6, "bounded: {}", got.len());
}

#[test]
fn one_turn_per_session_and_the_users_turns_queue_in_order() {
    let env = Env::new(vec![
        slow_answer(2, Duration::from_millis(300)),
        answer("second"),
        answer("third"),
    ]);
    let svc = env.service(ServiceOptions {
        max_concurrent_turns: 1,
        ..env.opts()
    });
    let a = svc.create(None, Some("a")).unwrap();
    let b = svc.create(None, Some("b")).unwrap();
    let c = svc.create(None, Some("c")).unwrap();
    let ea = svc.submit(&a.id, "prompt A").unwrap();
    // Wait until A runs, so the order of arrival is fixed.
    while !matches!(ea.recv().unwrap(), TurnEvent::Started { .. }) {}
    match svc.submit(&a.id, "again") {
        Err(ServiceError::SessionBusy { session }) => assert_eq!(session, a.id),
        other => panic!("expected SessionBusy, got {other:?}"),
    }
    let eb = svc.submit(&b.id, "prompt B").unwrap();
    let ec = svc.submit(&c.id, "prompt C").unwrap();
    let mut queued_b = Vec::new();
    let mut queued_c = Vec::new();
    eb.wait_finished(|e| {
        if let TurnEvent::Queued { position, .. } = e {
            queued_b.push(*position)
        }
    })
    .unwrap();
    ec.wait_finished(|e| {
        if let TurnEvent::Queued { position, .. } = e {
            queued_c.push(*position)
        }
    })
    .unwrap();
    ea.wait_finished(|_| {}).unwrap();
    assert_eq!(queued_b, vec![1]);
    assert_eq!(queued_c.first(), Some(&2));
    assert_eq!(env.prompts(), vec!["prompt A", "prompt B", "prompt C"]);
}

#[test]
fn cancel_reaches_a_queued_and_a_running_turn_and_cancel_all_reaches_every_one() {
    let env = Env::new(vec![
        slow_answer(3, Duration::from_millis(800)),
        answer("later"),
    ]);
    let svc = env.service(ServiceOptions {
        max_concurrent_turns: 1,
        ..env.opts()
    });
    let a = svc.create(None, None).unwrap();
    let b = svc.create(None, None).unwrap();
    let ea = svc.submit(&a.id, "long").unwrap();
    while !matches!(ea.recv().unwrap(), TurnEvent::Text(_)) {}
    let eb = svc.submit(&b.id, "queued").unwrap();
    while !matches!(eb.recv().unwrap(), TurnEvent::Queued { .. }) {}
    assert_eq!(svc.cancel_all(), 2);
    let ra = ea.wait_finished(|_| {}).unwrap();
    let rb = eb.wait_finished(|_| {}).unwrap();
    assert!(matches!(
        ra.outcome.as_ref().map_err(|e| &e.error),
        Err(TurnError::Cancelled)
    ));
    assert!(matches!(
        rb.outcome.as_ref().map_err(|e| &e.error),
        Err(TurnError::Cancelled)
    ));
    // The queued turn never reached the model.
    assert_eq!(env.prompts(), vec!["long"]);
    assert!(!svc.cancel(&a.id), "nothing left to cancel");
    // The session takes the next turn.
    let again = svc.submit(&b.id, "now").unwrap();
    let r = again.wait_finished(|_| {}).unwrap();
    assert_eq!(r.outcome.unwrap().answer, "later");
}

#[test]
fn sessions_resume_from_the_store_after_a_restart_and_after_archiving() {
    let env = Env::new(vec![answer("one"), answer("two"), answer("three")]);
    let id = {
        let svc = env.service(env.opts());
        let s = svc.create(None, Some("notes")).unwrap();
        let r = svc
            .submit(&s.id, "first")
            .unwrap()
            .wait_finished(|_| {})
            .unwrap();
        assert_eq!(r.outcome.unwrap().answer, "one");
        s.id
    };
    // A new service (a restart): found by a prefix of its id, with its context.
    let svc = env.service(ServiceOptions {
        idle_ttl: Duration::ZERO,
        ..env.opts()
    });
    let found = svc.resolve("notes").unwrap();
    assert_eq!(found, id);
    let attached = svc.attach("notes", None).unwrap();
    assert_eq!(attached.last_turn.map(|t| t.0), Some(1));
    svc.submit(&id, "second")
        .unwrap()
        .wait_finished(|_| {})
        .unwrap();
    let body = env.server.requests()[1].json();
    let contents: Vec<String> = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] != "system")
        .map(|m| m["content"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(contents, vec!["first", "one", "second"]);
    // Archived when idle: out of memory, and back from the store on the next turn.
    assert_eq!(svc.archive_idle(), vec![id.clone()]);
    assert!(svc.snapshot(&id).is_none());
    assert!(!svc.list().unwrap()[0].live);
    let r = svc
        .submit(&id, "third")
        .unwrap()
        .wait_finished(|_| {})
        .unwrap();
    assert_eq!(r.outcome.unwrap().answer, "three");
    assert_eq!(
        env.server.requests()[2].json()["messages"]
            .as_array()
            .unwrap()
            .len(),
        6,
        "system + five messages of three turns"
    );
    match svc.resolve("zzz") {
        Err(ServiceError::NoSession(p)) => assert_eq!(p, "zzz"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn past_the_live_session_cap_the_least_recently_active_idle_session_is_archived() {
    let env = Env::new(vec![]);
    let svc = env.service(ServiceOptions {
        max_live_sessions: 2,
        ..env.opts()
    });
    let a = svc.create(None, None).unwrap();
    std::thread::sleep(Duration::from_millis(5));
    let b = svc.create(None, None).unwrap();
    let c = svc.create(None, None).unwrap();
    let live: Vec<String> = svc
        .list()
        .unwrap()
        .into_iter()
        .filter(|s| s.live)
        .map(|s| s.id)
        .collect();
    assert_eq!(live.len(), 2);
    assert!(!live.contains(&a.id), "{live:?}");
    assert!(live.contains(&b.id) && live.contains(&c.id));
    // Ids come from a random source: distinct, 24 hex digits.
    assert_ne!(a.id, b.id);
    assert_eq!(a.id.len(), 24);
    assert!(a.id.chars().all(|ch| ch.is_ascii_hexdigit()));
}

#[test]
fn clients_attaching_one_session_at_once_get_one_actor_and_one_lease() {
    let env = Env::new(vec![answer("only one")]);
    let svc = Arc::new(env.service(env.opts()));
    let id = svc.create(None, Some("shared")).unwrap().id;
    // A restart: the session is in the store, no actor holds it.
    drop(svc);
    let restarted = Arc::new(env.service(env.opts()));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let s = restarted.clone();
            let id = id.clone();
            std::thread::spawn(move || s.attach(&id, None).map(|a| a.id))
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap().unwrap(), id);
    }
    assert_eq!(restarted.live_sessions(), 1);
    // The lease is still held: another process (another service) is refused.
    let other = env.service(env.opts());
    match other.attach(&id, None) {
        Err(ServiceError::SessionBusyElsewhere { .. }) => {}
        r => panic!("expected busy elsewhere, got {:?}", r.map(|a| a.id)),
    }
    restarted
        .submit(&id, "go")
        .unwrap()
        .wait_finished(|_| {})
        .unwrap()
        .outcome
        .unwrap();
}

#[test]
fn a_queued_turn_shows_none_of_the_previous_answer_and_an_idle_session_keeps_it_once() {
    let env = Env::new(vec![
        answer("first answer "),
        slow_answer(2, Duration::from_millis(400)),
        answer("queued one "),
    ]);
    let svc = env.service(ServiceOptions {
        max_concurrent_turns: 1,
        ..env.opts()
    });
    let a = svc.create(None, Some("a")).unwrap();
    let b = svc.create(None, Some("b")).unwrap();
    svc.submit(&b.id, "one")
        .unwrap()
        .wait_finished(|_| {})
        .unwrap();
    let idle = svc.snapshot(&b.id).unwrap();
    assert_eq!(idle.text, "", "the answer is kept in `last` only");
    assert!(idle.last.is_some());
    let ea = svc.submit(&a.id, "slow").unwrap();
    while !matches!(ea.recv().unwrap(), TurnEvent::Started { .. }) {}
    let eb = svc.submit(&b.id, "two").unwrap();
    while !matches!(eb.recv().unwrap(), TurnEvent::Queued { .. }) {}
    let queued = svc.snapshot(&b.id).unwrap();
    assert!(queued.active && queued.queued == Some(1));
    assert_eq!(queued.text, "", "not the previous turn's answer");
    assert_eq!(queued.turn_id.as_deref(), eb.turn_id());
    ea.wait_finished(|_| {}).unwrap();
    eb.wait_finished(|_| {}).unwrap();
}
