//! The runner from a test's side: `start` as a child whose output is collected, the
//! control commands, and one turn through its gateway. Included by the tests that run
//! the runner with `#[path = "common/runner.rs"] mod runner;`.

#![allow(dead_code)]

use crate::common::Env;
use crate::common::gateway::{connect, hello, next_of, send};
use crate::reap::Reaped;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `start`: its stdout lines and stderr as they arrive.
pub struct Runner {
    pub child: Reaped,
    pub out: Arc<Mutex<Vec<String>>>,
    pub err: Arc<Mutex<String>>,
}

impl Env {
    pub fn alice(&self) -> PathBuf {
        self.dir.path().join("workspaces/alice")
    }

    /// `oxydra-host --user alice start <args>`.
    pub fn start(&self, args: &[&str]) -> Runner {
        let mut c = self.cmd();
        c.args(["--user", "alice", "start"]).args(args);
        let mut child = c
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let err = crate::common::collect(child.stderr.take().unwrap());
        let out = Arc::new(Mutex::new(Vec::new()));
        let o = out.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                o.lock().unwrap().push(line);
            }
        });
        Runner {
            child: Reaped(child),
            out,
            err,
        }
    }

    /// `oxydra-host --user alice <args>`: (exit code, stdout, stderr).
    pub fn ctl(&self, args: &[&str]) -> (i32, String, String) {
        let o = self
            .cmd()
            .args(["--user", "alice"])
            .args(args)
            .output()
            .unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    pub fn status(&self) -> Value {
        let (code, out, err) = self.ctl(&["status", "--json"]);
        assert_eq!(code, 0, "status: {err}");
        serde_json::from_str(out.trim()).unwrap()
    }

    /// Wait until `status` says ready with a runtime other than `not_pid`.
    pub fn ready(&self, not_pid: Option<u64>) -> Value {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let s = self.status();
            if s["state"] == "ready" && s["runtime_pid"].as_u64() != not_pid {
                return s;
            }
            assert!(Instant::now() < deadline, "not ready again: {s}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Runner {
    pub fn url(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(l) = self.out.lock().unwrap().first() {
                return l.strip_prefix("gateway ").expect(l).to_string();
            }
            assert!(
                Instant::now() < deadline,
                "no gateway line; stderr: {}",
                self.err.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// One turn through the gateway at `url`: the answer's text.
pub fn turn(url: &str, tok: &str, prompt: &str) -> String {
    let mut ws = connect(url);
    hello(&mut ws, tok, json!({}));
    next_of(&mut ws, "hello_ack");
    send(&mut ws, "send_turn", json!({ "prompt": prompt }));
    let done = next_of(&mut ws, "turn_completed");
    done["response"]["message"].as_str().unwrap().to_string()
}
