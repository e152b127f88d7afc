//! Many writers on one store file, for real: threads with their own connections, and
//! processes (this test executable run again in a child mode). No mocks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use oxydra_store::{Store, StoreError, TurnStatus};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHILD: &str = "OXYDRA_STORE_TEST_CHILD";
const DB: &str = "OXYDRA_STORE_TEST_DB";
const INDEX: &str = "OXYDRA_STORE_TEST_INDEX";
const GO: &str = "OXYDRA_STORE_TEST_GO";

const PROCESSES: usize = 12;
const OWN_MESSAGES: i64 = 30;
const SHARED_MESSAGES: usize = 20;

/// The child processes' entry point: does nothing in a normal test run.
#[test]
fn child() {
    let Ok(mode) = std::env::var(CHILD) else {
        return;
    };
    let db = PathBuf::from(std::env::var(DB).unwrap());
    let i: usize = std::env::var(INDEX).unwrap().parse().unwrap();
    match mode.as_str() {
        "writer" => writer(&db, i, Path::new(&std::env::var(GO).unwrap())),
        "holder" => holder(&db),
        other => panic!("unknown child mode {other}"),
    }
}

/// Open the store at once, then wait for the go signal, so all writers start together.
fn writer(db: &Path, i: usize, go: &Path) {
    let s = Store::open(db).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !go.exists() {
        assert!(Instant::now() < deadline, "no go signal");
        std::thread::sleep(Duration::from_millis(1));
    }
    write_as(&s, i);
}

/// What each writer (process or thread) does: a session of its own, and messages and a
/// turn in the shared session.
fn write_as(s: &Store, i: usize) {
    let own = format!("p{i}");
    s.create_session(&own, "agent").unwrap();
    let turn = s.begin_turn(&own).unwrap();
    assert_eq!(turn, 1);
    for k in 1..=OWN_MESSAGES {
        assert_eq!(s.append(&own, turn, &format!("{k}")).unwrap(), k);
    }
    s.end_turn(&own, turn, TurnStatus::Completed, "", 0.0)
        .unwrap();
    let turn = s.begin_turn("shared").unwrap();
    for k in 0..SHARED_MESSAGES {
        s.append("shared", turn, &format!("w{i}-{k}")).unwrap();
    }
    s.end_turn("shared", turn, TurnStatus::Completed, "", 0.0)
        .unwrap();
}

/// Everything every writer wrote is there, once, numbered without gaps.
fn check_all_written(s: &Store, writers: usize) {
    for i in 0..writers {
        let m = s.messages(&format!("p{i}")).unwrap();
        let seqs: Vec<i64> = m.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, (1..=OWN_MESSAGES).collect::<Vec<_>>(), "p{i}");
    }
    let shared = s.messages("shared").unwrap();
    let seqs: Vec<i64> = shared.iter().map(|m| m.seq).collect();
    let total = (writers * SHARED_MESSAGES) as i64;
    assert_eq!(seqs, (1..=total).collect::<Vec<_>>());
    let bodies: BTreeSet<&str> = shared.iter().map(|m| m.body.as_str()).collect();
    let expected: BTreeSet<String> = (0..writers)
        .flat_map(|i| (0..SHARED_MESSAGES).map(move |k| format!("w{i}-{k}")))
        .collect();
    assert_eq!(
        bodies,
        expected.iter().map(String::as_str).collect::<BTreeSet<_>>()
    );
    // Each writer's shared messages carry its own turn, and turns are numbered 1..=N.
    let turns: Vec<i64> = s.turns("shared").unwrap().iter().map(|t| t.turn).collect();
    assert_eq!(turns, (1..=writers as i64).collect::<Vec<_>>());
    for i in 0..writers {
        let of_i: BTreeSet<i64> = shared
            .iter()
            .filter(|m| m.body.starts_with(&format!("w{i}-")))
            .map(|m| m.turn)
            .collect();
        assert_eq!(of_i.len(), 1, "writer {i}'s messages span turns {of_i:?}");
    }
    assert_eq!(s.sessions().unwrap().len(), writers + 1);
}

fn shared_store(dir: &Path) -> (PathBuf, Store) {
    let db = dir.join(".oxydra").join("store.db");
    let s = Store::open(&db).unwrap();
    s.create_session("shared", "agent").unwrap();
    (db, s)
}

#[test]
fn threads_with_their_own_connections_write_concurrently_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let (db, s) = shared_store(dir.path());
    let writers = 8;
    let barrier = std::sync::Barrier::new(writers);
    std::thread::scope(|scope| {
        for i in 0..writers {
            let (db, barrier) = (&db, &barrier);
            scope.spawn(move || {
                let own = Store::open(db).unwrap();
                barrier.wait();
                write_as(&own, i);
            });
        }
    });
    check_all_written(&s, writers);
}

/// A child process, killed if the test ends first.
struct Kid(Child);

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_child(mode: &str, db: &Path, i: usize, go: &Path) -> Kid {
    let exe = std::env::current_exe().unwrap();
    Kid(Command::new(exe)
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env(CHILD, mode)
        .env(DB, db)
        .env(INDEX, i.to_string())
        .env(GO, go)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap())
}

/// Wait for a child to exit, at most `within`.
fn wait_for(kid: &mut Kid, within: Duration) -> std::process::Output {
    let deadline = Instant::now() + within;
    while kid.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "a child process did not finish");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut out = std::process::Output {
        status: kid.0.wait().unwrap(),
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    use std::io::Read;
    if let Some(mut o) = kid.0.stdout.take() {
        o.read_to_end(&mut out.stdout).unwrap();
    }
    if let Some(mut e) = kid.0.stderr.take() {
        e.read_to_end(&mut out.stderr).unwrap();
    }
    out
}

#[test]
fn processes_started_at_once_on_one_store_all_succeed_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let (db, s) = shared_store(dir.path());
    let go = dir.path().join("go");
    let mut kids: Vec<Kid> = (0..PROCESSES)
        .map(|i| spawn_child("writer", &db, i, &go))
        .collect();
    std::fs::write(&go, "").unwrap();
    let mut failures = Vec::new();
    for (i, kid) in kids.iter_mut().enumerate() {
        let out = wait_for(kid, Duration::from_secs(300));
        if !out.status.success() {
            failures.push(format!(
                "writer {i}: {}\n{}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    check_all_written(&s, PROCESSES);
}

/// Take the lease on `lease` (for an hour), start a turn, say so, and work until killed
/// (at most a minute, should the test die without killing it).
fn holder(db: &Path) {
    let s = Store::open(db).unwrap();
    let lease = s
        .acquire_lease("leased", Duration::from_secs(3600))
        .unwrap();
    let turn = s.begin_turn("leased").unwrap();
    println!("HELD {turn} {}", lease.expires_ms());
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn a_live_holder_keeps_its_session_and_a_killed_one_does_not_brick_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.db");
    let s = Store::open(&db).unwrap();
    s.create_session("leased", "agent").unwrap();
    let mut kid = spawn_child("holder", &db, 0, &dir.path().join("unused"));
    let mut lines = BufReader::new(kid.0.stdout.take().unwrap()).lines();
    let held = loop {
        let line = lines.next().expect("the holder ended early").unwrap();
        // libtest may have printed `test child ... ` before it on the same line.
        if let Some((_, held)) = line.split_once("HELD ") {
            break held.to_string();
        }
    };
    let turn: i64 = held.split(' ').next().unwrap().parse().unwrap();
    let pid = kid.0.id();

    // While it lives: the session is busy, and its running turn is not marked failed.
    match s.acquire_lease("leased", Duration::from_secs(60)) {
        Err(StoreError::SessionBusy {
            session,
            holder_pid,
            expires_in_ms,
        }) => {
            assert_eq!(session, "leased");
            assert_eq!(holder_pid, pid);
            assert!(expires_in_ms > 0);
        }
        other => panic!("expected SessionBusy, got {other:?}"),
    }
    assert_eq!(s.mark_interrupted("leased").unwrap(), 0);
    assert_eq!(s.running_turn("leased").unwrap(), Some(turn));

    // kill -9: the lease has an hour left, but its holder is gone.
    kid.0.kill().unwrap();
    kid.0.wait().unwrap();
    let lease = s.acquire_lease("leased", Duration::from_secs(60)).unwrap();
    assert_eq!(lease.session(), "leased");
    assert_eq!(s.mark_interrupted("leased").unwrap(), 1);
    assert_eq!(s.running_turn("leased").unwrap(), None);
    let t = &s.turns("leased").unwrap()[0];
    assert_eq!((t.turn, t.status), (turn, TurnStatus::Failed));
    s.release_lease(lease).unwrap();
}

#[test]
fn a_second_holder_is_refused_until_release_or_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.db");
    let a = Store::open(&db).unwrap();
    let b = Store::open(&db).unwrap();
    a.create_session("s", "agent").unwrap();
    let hour = Duration::from_secs(3600);

    let lease = a.acquire_lease("s", hour).unwrap();
    let err = b.acquire_lease("s", hour).unwrap_err();
    assert!(
        matches!(&err, StoreError::SessionBusy { holder_pid, .. } if *holder_pid == std::process::id()),
        "{err:?}"
    );
    assert!(err.to_string().contains("session `s`"), "{err}");
    // The holder itself may take it again (that renews it).
    let mut lease = {
        let again = a.acquire_lease("s", hour).unwrap();
        assert!(again.expires_ms() >= lease.expires_ms());
        again
    };
    a.renew_lease(&mut lease, hour).unwrap();
    a.release_lease(lease).unwrap();
    let lease = b.acquire_lease("s", hour).unwrap();
    b.release_lease(lease).unwrap();

    // Expiry: the holder is alive but stopped renewing.
    let mut short = a.acquire_lease("s", Duration::from_millis(100)).unwrap();
    assert!(matches!(
        b.acquire_lease("s", hour),
        Err(StoreError::SessionBusy { .. })
    ));
    let deadline = Instant::now() + Duration::from_secs(30);
    let taken = loop {
        match b.acquire_lease("s", hour) {
            Ok(lease) => break lease,
            Err(StoreError::SessionBusy { .. }) => {
                assert!(Instant::now() < deadline, "the lease never expired");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("{e}"),
        }
    };
    // The old holder finds out when it tries to renew, and cannot take it back.
    assert!(matches!(
        a.renew_lease(&mut short, hour),
        Err(StoreError::LeaseLost(s)) if s == "s"
    ));
    assert!(matches!(
        a.acquire_lease("s", hour),
        Err(StoreError::SessionBusy { .. })
    ));
    // Releasing a lost lease does not release the new holder's.
    a.release_lease(short).unwrap();
    assert!(matches!(
        a.acquire_lease("s", hour),
        Err(StoreError::SessionBusy { .. })
    ));
    b.release_lease(taken).unwrap();
    a.acquire_lease("s", hour).unwrap();
}

#[test]
fn leases_and_lookups_of_missing_sessions_are_neutral_no_session_errors() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("store.db")).unwrap();
    let err = s.acquire_lease("nope", Duration::from_secs(1)).unwrap_err();
    assert!(matches!(&err, StoreError::NoSession(id) if id == "nope"));
    let err = s.session_agent("nope").unwrap_err();
    assert_eq!(err.to_string(), "no session `nope`");
}

#[test]
fn sessions_are_found_by_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(&dir.path().join("store.db")).unwrap();
    for id in ["abc1", "abc2", "abd", "x%y", "x_z"] {
        s.create_session(id, "agent").unwrap();
    }
    let ids = |p: &str| -> BTreeSet<String> {
        s.sessions_with_prefix(p)
            .unwrap()
            .into_iter()
            .map(|(id, _, _)| id)
            .collect()
    };
    assert_eq!(ids("abc"), ["abc1", "abc2"].map(String::from).into());
    assert_eq!(ids("ab").len(), 3);
    assert_eq!(ids("ABC").len(), 0, "case-sensitive");
    assert_eq!(ids("x%"), ["x%y"].map(String::from).into(), "no wildcards");
    assert_eq!(ids("x_"), ["x_z"].map(String::from).into(), "no wildcards");
    assert_eq!(ids("").len(), 5);
    assert_eq!(ids("q").len(), 0);
}
