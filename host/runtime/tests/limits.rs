//! Limits: a runaway loop is stopped by its deadline, a memory bomb by its memory limit;
//! the host survives and the next call works.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;
use common::{host, spec};
use oxydra_runtime::{CallError, Profile, Workspace};
use std::sync::Arc;
use std::time::Instant;

fn workspace() -> (tempfile::TempDir, Arc<Workspace>) {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let ws = Workspace::open(dir.path()).unwrap();
    (dir, Arc::new(ws))
}

#[test]
fn an_infinite_loop_is_stopped_by_its_deadline_and_the_next_call_works() {
    let h = host();
    let mut s = spec("fx_probe", "fx-probe", Profile::FileReadOnly);
    s.limits.deadline_ms = 200;
    let tool = h.load(&s).unwrap();
    let (_d, ws) = workspace();
    let started = Instant::now();
    let err = h.call(&tool, r#"{"mode":"spin"}"#, &ws).unwrap_err();
    let took = started.elapsed();
    assert_eq!(
        err,
        CallError::Deadline {
            tool: "fx_probe".into(),
            deadline_ms: 200
        }
    );
    assert!(
        err.to_string().contains("ran past its deadline of 200 ms"),
        "{err}"
    );
    assert!(
        took.as_millis() >= 200 && took.as_millis() < 2000,
        "stopped after {took:?}"
    );
    assert_eq!(h.call(&tool, r#"{"mode":"noop"}"#, &ws).unwrap(), "");
}

#[test]
fn a_memory_bomb_is_stopped_by_its_limit_and_the_next_call_works() {
    let h = host();
    let mut s = spec("fx_probe", "fx-probe", Profile::FileReadOnly);
    s.limits.memory_mib = 32;
    let tool = h.load(&s).unwrap();
    let (_d, ws) = workspace();
    let err = h
        .call(&tool, r#"{"mode":"alloc","mib":200}"#, &ws)
        .unwrap_err();
    match &err {
        CallError::Memory {
            tool,
            limit_mib,
            wanted_mib,
        } => {
            assert_eq!((tool.as_str(), *limit_mib), ("fx_probe", 32));
            assert!(*wanted_mib > 32, "{wanted_mib}");
        }
        other => panic!("expected a memory error, got {other:?}"),
    }
    assert!(
        err.to_string().contains("past its limit of 32 MiB"),
        "{err}"
    );
    assert_eq!(
        h.call(&tool, r#"{"mode":"alloc","mib":8}"#, &ws).unwrap(),
        "allocated 8388608 bytes"
    );
}

#[test]
fn a_panic_is_a_clear_error_with_the_guest_message() {
    let h = host();
    let tool = h
        .load(&spec("fx_probe", "fx-probe", Profile::FileReadOnly))
        .unwrap();
    let (_d, ws) = workspace();
    let err = h
        .call(&tool, r#"{"mode":"panic"}"#, &ws)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("tool `fx_probe` crashed"), "{err}");
    assert!(err.contains("probe asked to panic"), "{err}");
    assert_eq!(h.call(&tool, r#"{"mode":"noop"}"#, &ws).unwrap(), "");
}

#[test]
fn a_stack_overflow_traps_and_the_next_call_works() {
    let h = host();
    let tool = h
        .load(&spec("fx_probe", "fx-probe", Profile::FileReadOnly))
        .unwrap();
    let (_d, ws) = workspace();
    let err = h.call(&tool, r#"{"mode":"recurse"}"#, &ws).unwrap_err();
    assert!(matches!(err, CallError::Trap { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("tool `fx_probe` crashed (trap: "),
        "{err}"
    );
    assert_eq!(h.call(&tool, r#"{"mode":"noop"}"#, &ws).unwrap(), "");
}

#[test]
fn output_over_the_limit_is_refused() {
    let h = host();
    let mut s = spec("fx_probe", "fx-probe", Profile::FileReadOnly);
    s.limits.max_output_bytes = 1 << 20;
    let tool = h.load(&s).unwrap();
    let (_d, ws) = workspace();
    let err = h
        .call(&tool, r#"{"mode":"big_output","mib":2}"#, &ws)
        .unwrap_err();
    assert_eq!(
        err,
        CallError::OutputTooLarge {
            tool: "fx_probe".into(),
            bytes: 2 << 20,
            limit: 1 << 20
        }
    );
}

#[test]
fn concurrent_calls_each_get_their_own_store() {
    let h = Arc::new(host());
    let tool = Arc::new(
        h.load(&spec("fx_probe", "fx-probe", Profile::FileReadOnly))
            .unwrap(),
    );
    let (_d, ws) = workspace();
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let (h, tool, ws) = (h.clone(), tool.clone(), ws.clone());
            std::thread::spawn(move || {
                let mode = if i % 2 == 0 { "panic" } else { "noop" };
                (i, h.call(&tool, &format!(r#"{{"mode":"{mode}"}}"#), &ws))
            })
        })
        .collect();
    for t in threads {
        let (i, r) = t.join().unwrap();
        assert_eq!(r.is_ok(), i % 2 == 1, "call {i}: {r:?}");
    }
}

#[test]
fn arguments_are_checked_against_the_schema_inside_the_component() {
    let h = host();
    let tool = h
        .load(&spec("fx_probe", "fx-probe", Profile::FileReadOnly))
        .unwrap();
    let (_d, ws) = workspace();
    for (args, want) in [
        (
            r#"{"mode":"fly"}"#,
            "`mode` must be one of \"noop\", \"spin\", \"alloc\", \"panic\", \"big_output\", \"print\", \"recurse\", got \"fly\"",
        ),
        (
            r#"{"mode":"alloc","mib":99999}"#,
            "`mib` must be at most 4096, got 99999",
        ),
        (
            r#"{"mode":"noop","extra":1}"#,
            "unknown argument `extra`; expected one of: mib, mode",
        ),
        (r#"{}"#, "missing required argument `mode`"),
        (r#"[1]"#, "the arguments must be an object, got array"),
    ] {
        let err = h.call(&tool, args, &ws).unwrap_err().to_string();
        assert_eq!(err, format!("invalid arguments: {want}"), "{args}");
    }
}
