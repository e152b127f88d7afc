//! `oxydra-host tui` driven like a person would: the real binary in a tmux pane of
//! 100×30, keys typed with `tmux send-keys`, the screen read with `tmux capture-pane`.
//! A real `serve` runs the session service and the gateway; a scripted
//! OpenAI-compatible server on 127.0.0.1 plays the model. Skipped (with a note) only
//! when tmux is not installed.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;
#[path = "../../runtime/tests/common/server.rs"]
mod server;

use serde_json::json;
use server::openai::{answer, delta, stream, tool_calls};
use server::{Piece, Reply, Server};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};
use unicode_width::UnicodeWidthStr;

const BIN: &str = env!("CARGO_BIN_EXE_oxydra-host");
const WIDTH: usize = 100;
const HEIGHT: usize = 30;
/// The longest any one wait for the screen may take.
const WAIT: Duration = Duration::from_secs(20);

fn tmux_installed() -> bool {
    Command::new("tmux")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

macro_rules! require_tmux {
    () => {
        if !tmux_installed() {
            eprintln!("skipped: tmux is not installed (CI installs it)");
            return;
        }
    };
}

struct Env {
    dir: tempfile::TempDir,
    model: Server,
}

impl Env {
    fn new(replies: Vec<Reply>) -> Env {
        let common::Env { dir, server } = common::Env::new(replies);
        std::fs::create_dir_all(dir.path().join("ws/shared")).unwrap();
        Env { dir, model: server }
    }

    fn ws(&self) -> PathBuf {
        self.dir.path().join("ws")
    }

    /// The environment both processes get: nothing of the test runner's but PATH.
    fn vars(&self) -> Vec<(&'static str, String)> {
        // One compile cache for every test: the components are compiled once.
        let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("tui-cache");
        vec![
            ("PATH", std::env::var("PATH").unwrap_or_default()),
            ("HOME", self.dir.path().join("home").display().to_string()),
            ("XDG_CACHE_HOME", cache.display().to_string()),
            ("LOCAL_KEY", "sk-local-5f3e9a7c1b2d4e6f8a0b".into()),
            ("LANG", "C.UTF-8".into()),
        ]
    }

    fn serve(&self) -> Serve {
        self.spawn(&["serve", "--workspace", self.ws().to_str().unwrap()])
    }

    /// The runner for user `alice`, the runtime in the process tier.
    fn runner(&self) -> Serve {
        self.spawn(&["--user", "alice", "start", "--insecure"])
    }

    fn spawn(&self, args: &[&str]) -> Serve {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("serve.log"))
            .unwrap();
        let mut c = Command::new(BIN);
        c.env_clear()
            .envs(self.vars())
            .current_dir(self.dir.path())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log);
        let mut child = c.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let mut s = Serve { child, lines: rx };
        s.wait_url(self.dir.path());
        s
    }

    /// The TUI in a fresh tmux server of its own.
    fn tui(&self, args: &[&str]) -> Tmux {
        self.tui_with(args, &[])
    }

    fn tui_with(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Tmux {
        let ws = self.ws();
        let mut all = vec!["tui", "--workspace", ws.to_str().unwrap()];
        all.extend_from_slice(args);
        self.in_tmux(&all, extra_env)
    }

    /// `oxydra-host <args>` in a fresh tmux server of its own.
    fn in_tmux(&self, args: &[&str], extra_env: &[(&str, &str)]) -> Tmux {
        static N: AtomicUsize = AtomicUsize::new(0);
        let socket = format!(
            "oxydra-tui-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        let mut cmd = String::from("exec env -i");
        for (k, v) in self.vars() {
            cmd.push_str(&format!(" {k}={}", quote(&v)));
        }
        cmd.push_str(" TERM=xterm-256color");
        for (k, v) in extra_env {
            cmd.push_str(&format!(" {k}={}", quote(v)));
        }
        cmd.push_str(&format!(" {}", quote(BIN)));
        for a in args {
            cmd.push_str(&format!(" {}", quote(a)));
        }
        cmd.push_str(&format!(
            " 2>{}",
            quote(self.dir.path().join("tui.err").to_str().unwrap())
        ));
        let mut t = Tmux {
            socket,
            err: self.dir.path().join("tui.err"),
            pid: None,
        };
        let out = t
            .tmux()
            .args([
                "new-session",
                "-d",
                "-s",
                "t",
                "-x",
                &WIDTH.to_string(),
                "-y",
                &HEIGHT.to_string(),
            ])
            .args(["-c", self.dir.path().to_str().unwrap(), &cmd])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tmux: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pid = t
            .tmux()
            .args(["display-message", "-p", "-t", "t", "#{pane_pid}"])
            .output()
            .unwrap();
        t.pid = String::from_utf8_lossy(&pid.stdout).trim().parse().ok();
        t
    }
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// A running `serve`; stopped (SIGTERM, then SIGKILL) when dropped.
struct Serve {
    child: Child,
    lines: Receiver<String>,
}

impl Serve {
    fn wait_url(&mut self, dir: &Path) -> String {
        // A cold compile cache makes the first start slow on a busy machine.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(l) = self.lines.recv_timeout(Duration::from_millis(50)) {
                return l.strip_prefix("gateway ").expect(&l).to_string();
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("serve exited with {status}: {}", log(dir, "serve.log"));
            }
            assert!(
                Instant::now() < deadline,
                "no gateway line: {}",
                log(dir, "serve.log")
            );
        }
    }

    fn stop(&mut self) {
        if self.child.try_wait().ok().flatten().is_some() {
            return;
        }
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.stop();
    }
}

fn log(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_default()
}

/// The TUI's tmux server; killed when dropped, and the TUI with it.
struct Tmux {
    socket: String,
    err: PathBuf,
    /// The TUI's process (the pane's command execs it).
    pid: Option<u32>,
}

/// Whether process `pid` still runs (a zombie waiting for its parent does not).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit(')')
            .next()
            .is_some_and(|r| !r.trim_start().starts_with('Z'))
    })
}

impl Tmux {
    fn tmux(&self) -> Command {
        let mut c = Command::new("tmux");
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("LANG", "C.UTF-8")
            .env("TERM", "xterm-256color")
            .args(["-u", "-f", "/dev/null", "-L", &self.socket]);
        c
    }

    /// Type `text` literally, then press Enter.
    fn line(&self, text: &str) {
        self.keys(&["-l", text]);
        self.keys(&["Enter"]);
    }

    fn keys(&self, keys: &[&str]) {
        let out = self
            .tmux()
            .args(["send-keys", "-t", "t"])
            .args(keys)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "send-keys: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The screen with its styles as SGR escape sequences.
    fn styled_screen(&self) -> String {
        let out = self
            .tmux()
            .args(["capture-pane", "-p", "-e", "-t", "t"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        let out = self
            .tmux()
            .args(["capture-pane", "-p", "-t", "t"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn alive(&self) -> bool {
        self.tmux()
            .args(["has-session", "-t", "t"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Poll the screen until `ok` holds; the screen it held on.
    fn wait(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let s = self.screen();
            if ok(&s) {
                return s;
            }
            if Instant::now() > deadline {
                panic!(
                    "waited {} s for {what}; the screen:\n{s}\n---- tui stderr:\n{}",
                    WAIT.as_secs(),
                    std::fs::read_to_string(&self.err).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_for(&self, needle: &str) -> String {
        self.wait(&format!("{needle:?}"), |s| s.contains(needle))
    }

    /// The status line (the row above the prompt's rule).
    fn status(&self) -> String {
        let s = self.screen();
        let rows: Vec<&str> = s.lines().collect();
        let rule = rows
            .iter()
            .rposition(|l| l.starts_with("────"))
            .unwrap_or(0);
        rows.get(rule.saturating_sub(1)).unwrap_or(&"").to_string()
    }
}

impl Tmux {
    /// Close the terminal (kill the tmux server); whether the TUI then ended within 3 s.
    fn close(&mut self) -> bool {
        let _ = self
            .tmux()
            .arg("kill-server")
            .stderr(Stdio::null())
            .status();
        let Some(pid) = self.pid.take() else {
            return true;
        };
        let deadline = Instant::now() + Duration::from_secs(3);
        while running(pid) {
            if Instant::now() > deadline {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.close();
    }
}

/// The full id in "connected to …: session <id> (agent …".
fn session_of(screen: &str) -> String {
    let at = screen.find(": session ").expect("a session line") + ": session ".len();
    screen[at..].split_whitespace().next().unwrap().to_string()
}

#[test]
fn markdown_tools_sessions_cancel_and_wide_text() {
    require_tmux!();
    let cjk: String = "漢字仮名交じり文は日本語の表記法です。"
        .chars()
        .cycle()
        .take(130)
        .collect();
    let env = Env::new(vec![
        // 1: a markdown answer, streamed in pieces.
        stream(
            vec![
                delta("# Quarterly report\n\nThe answer is **42**"),
                delta(", see [the docs](https://example.com/d).\n\n```rust\nfn main"),
                delta("() {\n    println!(\"hi\");\n}\n```\n\nDone with `cargo run`."),
            ],
            Some((120, 30)),
        ),
        // 2, 3: a tool call, then the answer.
        tool_calls(
            &[("call_1", "file_read", json!({"path": "/shared/notes.txt"}))],
            None,
        ),
        answer("The notes say: hello from the notes", None),
        // 4: in a new session.
        answer("fresh session answer", None),
        // 5: many rows, then more after a pause, to scroll while they stream.
        stream(
            std::iter::once(delta(
                &(0..30).map(|i| format!("- row {i}\n")).collect::<String>(),
            ))
            .chain(std::iter::once(Piece::Pause(Duration::from_millis(1500))))
            .chain((30..40).flat_map(|i| {
                [
                    delta(&format!("- row {i}\n")),
                    Piece::Pause(Duration::from_millis(100)),
                ]
            }))
            .chain(std::iter::once(delta("\nend of rows")))
            .collect(),
            None,
        ),
        // 6: slow, to be cancelled.
        stream(
            vec![
                delta("slow start "),
                Piece::Pause(Duration::from_secs(15)),
                delta("never shown"),
            ],
            None,
        ),
        // 7: wide characters.
        answer(&cjk, None),
    ]);
    std::fs::write(env.ws().join("shared/notes.txt"), "hello from the notes\n").unwrap();
    let _serve = env.serve();
    let t = env.tui(&[]);
    let s = t.wait_for("connected to ws://");
    let first = session_of(&s);
    assert!(t.status().contains(&first[..8]), "{}", t.status());
    assert!(t.status().contains("idle"), "{}", t.status());

    // A streamed markdown answer: the heading without its #, code behind a gutter,
    // the link with its URL, the usage at the end.
    t.line("write the report");
    let s = t.wait_for("Done with cargo run.");
    assert!(s.contains("› write the report"), "{s}");
    let heading = s.lines().find(|l| l.contains("Quarterly report")).unwrap();
    assert_eq!(heading.trim(), "Quarterly report", "{s}");
    assert!(
        s.contains("The answer is 42, see the docs (https://example.com/d)."),
        "{s}"
    );
    assert!(s.contains("╭ rust"), "{s}");
    assert!(s.contains("│ fn main() {"), "{s}");
    assert!(s.contains("│     println!(\"hi\");"), "{s}");
    assert!(!s.contains("```"), "{s}");
    let s = t.wait_for("model call");
    let usage = s.lines().find(|l| l.contains("model call")).unwrap();
    assert!(
        usage.trim().starts_with("120 tokens in · 30 out · $0.0000"),
        "{usage}"
    );
    assert!(usage.contains(" · 1 model call · "), "{usage}");

    // A tool call: its line with the tool's name and how long it took.
    // Alt-Enter puts a new line in the prompt; Enter sends both lines.
    t.keys(&["-l", "read"]);
    t.keys(&["M-Enter"]);
    t.line("the notes");
    let s = t.wait_for("The notes say: hello from the notes");
    let tool = s
        .lines()
        .find(|l| l.contains("⚙ file_read"))
        .unwrap_or_else(|| panic!("{s}"));
    assert!(tool.contains("/shared/notes.txt"), "{tool}");
    let ms = tool.split("✓ ").nth(1).unwrap_or_else(|| panic!("{tool}"));
    assert!(
        ms.trim().ends_with(" ms") || ms.trim().ends_with(" s"),
        "{tool}"
    );
    assert!(
        ms.trim().split(' ').next().unwrap().parse::<f64>().is_ok(),
        "{tool}"
    );
    t.wait_for("2 model calls");
    assert!(s.contains("› read\n  the notes"), "{s}");
    let sent = env.model.requests()[1].json();
    let messages = sent["messages"].as_array().unwrap();
    assert_eq!(messages.last().unwrap()["content"], "read\nthe notes");

    // /new: a new session, named; a turn in it.
    t.line("/new work");
    let s = t.wait_for("new session work-");
    let second = s[s.find("new session ").unwrap() + "new session ".len()..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    assert!(t.status().contains("work-"), "{}", t.status());
    t.line("in the new one");
    t.wait_for("fresh session answer");

    // /sessions lists both, the current one marked.
    t.line("/sessions");
    let s = t.wait_for("sessions, most recent first:");
    assert!(s.contains(&format!("* {second}")), "{s}");
    assert!(s.contains(&first), "{s}");

    // /switch by prefix goes back to the first.
    t.line(&format!("/switch {}", &first[..10]));
    t.wait_for(&format!("switched to session {first}"));
    assert!(t.status().contains(&first[..8]), "{}", t.status());

    // An unknown command gets a hint.
    t.line("/sesions");
    t.wait_for("unknown command /sesions (did you mean /sessions?)");

    // Scrolled up, the view stays where it is while the answer streams on below.
    t.line("many rows");
    t.wait_for("• row 29");
    t.keys(&["PPage"]);
    t.wait("the scrolled status", |_| t.status().contains("scrolled"));
    let pane = |s: &str| -> Vec<String> {
        let rows: Vec<&str> = s.lines().collect();
        let status = rows.iter().rposition(|l| l.starts_with("────")).unwrap() - 1;
        rows[..status].iter().map(|r| r.to_string()).collect()
    };
    let before = pane(&t.screen());
    t.wait("new output below", |_| {
        t.status().contains("new output below")
    });
    assert_eq!(pane(&t.screen()), before);
    std::thread::sleep(Duration::from_millis(1200));
    let still = t.screen();
    assert_eq!(pane(&still), before, "the view moved while scrolled up");
    assert!(!still.contains("end of rows"));
    t.keys(&["End"]);
    t.wait_for("end of rows");
    assert!(!t.status().contains("scrolled"), "{}", t.status());

    // /cancel of a slow streaming answer.
    t.line("take your time");
    t.wait_for("slow start");
    t.wait("running in the status line", |_| {
        t.status().contains("running")
    });
    t.line("/cancel");
    let s = t.wait_for("cancelled:");
    assert!(!s.contains("never shown"), "{s}");
    t.wait("idle after the cancel", |_| t.status().contains("idle"));

    // Wide characters wrap within the width and nothing is lost.
    t.line("日本語で");
    let s = t.wait("the whole CJK answer", |s| joined_cjk(s).contains(&cjk));
    for l in s.lines() {
        assert!(l.width() <= WIDTH, "{} columns: {l:?}", l.width());
    }
    let rows: Vec<&str> = s
        .lines()
        .filter(|l| l.contains('漢') || l.contains('字'))
        .collect();
    assert!(
        rows.len() >= 3,
        "130 wide characters take 3 rows of 100 columns: {s}"
    );

    // Ctrl-C twice quits, and the terminal comes back (the pane's command ends).
    t.keys(&["C-c"]);
    t.wait_for("press Ctrl-C again to quit");
    t.keys(&["C-c"]);
    let deadline = Instant::now() + WAIT;
    while t.alive() {
        assert!(
            Instant::now() < deadline,
            "the TUI did not quit: {}",
            t.screen()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let err = log(env.dir.path(), "tui.err");
    assert!(err.trim().is_empty(), "the TUI wrote to stderr: {err}");
}

/// The CJK rows of the screen, trimmed and joined.
fn joined_cjk(screen: &str) -> String {
    screen
        .lines()
        .filter(|l| l.chars().any(|c| ('\u{3000}'..='\u{9fff}').contains(&c)))
        .filter(|l| !l.starts_with('›'))
        .map(str::trim_end)
        .collect()
}

#[test]
fn reconnects_when_serve_restarts_on_a_new_port() {
    require_tmux!();
    let env = Env::new(vec![
        answer("before the restart", None),
        answer("after the restart", None),
    ]);
    let mut serve = env.serve();
    let t = env.tui(&[]);
    let s = t.wait_for("connected to ws://");
    let session = session_of(&s);
    t.line("one");
    t.wait_for("before the restart");
    t.wait_for("model call");
    let first_url = std::fs::read_to_string(env.ws().join("ipc/gateway-endpoint")).unwrap();

    serve.stop();
    t.wait_for("disconnected from the gateway");
    t.wait("the disconnected status", |_| {
        t.status().contains("disconnected — reconnecting")
    });

    let _serve = env.serve();
    let second_url = std::fs::read_to_string(env.ws().join("ipc/gateway-endpoint")).unwrap();
    assert_ne!(first_url, second_url, "serve picked the same port again");
    let s = t.wait_for(&format!("reconnected to {}", second_url.trim()));
    assert!(s.contains(&format!("session {}", &session[..8])), "{s}");
    t.wait("idle once reattached", |_| t.status().contains("idle"));
    assert!(t.status().contains(&session[..8]), "{}", t.status());

    t.line("two");
    let s = t.wait_for("after the restart");
    assert!(s.contains("› two"), "{s}");
    // The same session: the first answer is still above, and the status says so.
    assert!(t.status().contains(&session[..8]), "{}", t.status());
    assert!(s.contains("before the restart"), "{s}");

    // --session attaches a session by prefix and shows how its last turn ended; --new
    // starts another.
    let other = env.tui(&["--session", &session[..6]]);
    let s = other.wait_for("the last answer in this session:");
    assert!(s.contains(&format!("session {session}")), "{s}");
    other.wait_for("after the restart");
    let fresh = env.tui_with(&["--new"], &[("NO_COLOR", "1")]);
    let s = fresh.wait_for("connected to ws://");
    assert_ne!(session_of(&s), session);

    // A terminal that goes away (its window closed) ends the TUI.
    let mut other = other;
    assert!(
        other.close(),
        "the TUI kept running after its terminal closed"
    );

    // NO_COLOR: styles, but no colours.
    assert!(colours(&t.styled_screen()), "{:?}", t.styled_screen());
    let plain = fresh.styled_screen();
    assert!(!colours(&plain), "{plain:?}");

    // A wrong token: the gateway's reason, in the pane and the status line.
    let wrong = env.tui(&["--token", "not-the-token-0123456789"]);
    let s = wrong.wait_for("the gateway refused the hello: wrong token");
    assert!(s.contains("disconnected — reconnecting"), "{s}");
}

/// Whether any SGR sequence in `s` sets a foreground or background colour.
fn colours(s: &str) -> bool {
    s.split("\x1b[").skip(1).any(|seq| {
        let Some(end) = seq.find(|c: char| !(c.is_ascii_digit() || c == ';')) else {
            return false;
        };
        if !seq[end..].starts_with('m') {
            return false;
        }
        seq[..end].split(';').any(|p| {
            matches!(
                p.parse::<u32>(),
                Ok(30..=38 | 40..=48 | 90..=97 | 100..=107)
            )
        })
    })
}

#[test]
fn without_a_gateway_it_says_how_to_start_one() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    std::fs::create_dir_all(dir.path().join(".oxydra")).unwrap();
    std::fs::write(
        dir.path().join(".oxydra/runner.toml"),
        "workspace_root = \"wsroot\"\n[users.alice]\n",
    )
    .unwrap();
    let o = Command::new(BIN)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir.path().join("home"))
        .current_dir(dir.path())
        .args(["tui", "--config", ".oxydra/runner.toml", "--user", "alice"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("no gateway running for user alice: start `oxydra-host serve --user alice` (looked for wsroot/alice/ipc/gateway-endpoint)"),
        "{err}"
    );
    assert!(o.stdout.is_empty());
    // A user runner.toml does not list is refused before anything else.
    let o = Command::new(BIN)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir.path().join("home"))
        .current_dir(dir.path())
        .args(["tui", "--user", "mallory"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no user `mallory`"));
}

#[test]
fn dash_dash_tui_connects_through_the_runner_to_a_confined_runtime() {
    require_tmux!();
    let env = Env::new(vec![answer("answered inside the process tier", None)]);
    let mut runner = env.runner();
    let t = env.in_tmux(&["--tui", "--user", "alice"], &[]);
    t.wait_for("connected to ws://127.0.0.1:");
    t.line("hello from the TUI");
    t.wait_for("answered inside the process tier");
    let status = Command::new(BIN)
        .env_clear()
        .envs(env.vars())
        .current_dir(env.dir.path())
        .args(["--user", "alice", "status", "--json"])
        .output()
        .unwrap();
    let s: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(s["tier"], "process", "{s}");
    runner.stop();
}
