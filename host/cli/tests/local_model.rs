//! The README's first command with no API key: `run` on the managed local model
//! (llama-server + SmolLM2-135M-Instruct, prepared by scripts/build.sh), a real streamed
//! answer, a clean exit, and no server left behind.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

#[path = "common/reap.rs"]
mod reap;

use reap::Reaped;
use std::path::PathBuf;
use std::process::{Command, Output};

/// The prepared model directory this test shares with the build (never re-prepared here).
fn model_dir() -> PathBuf {
    let dir = std::env::var_os("OXYDRA_LOCAL_MODEL_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .map(|c| c.join("oxydra/local-model"))
        })
        .unwrap();
    assert!(
        dir.join("llama-server").is_file() && dir.join("SmolLM2-135M-Instruct.Q4_1.gguf").is_file(),
        "{} is not prepared: run scripts/build.sh (it runs `oxydra-host model prepare`)",
        dir.display()
    );
    dir
}

/// The tests here count servers on one machine-wide directory: one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Pids of llama-server processes started from `dir`.
fn servers(dir: &std::path::Path) -> Vec<u32> {
    let bin = dir.join("llama-server");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).starts_with(bin.to_str().unwrap()))
                .unwrap_or(false)
        })
        .collect()
}

fn cmd(home: &std::path::Path, dir: &std::path::Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_oxydra-host"));
    c.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("OXYDRA_LOCAL_MODEL_DIR", dir)
        .current_dir(home);
    c
}

/// `serve` for the test's home, killed and reaped when dropped.
fn serve(home: &std::path::Path, dir: &std::path::Path, stdout: std::process::Stdio) -> Reaped {
    Reaped(
        cmd(home, dir)
            .args(["serve", "--workspace", home.join("ws").to_str().unwrap()])
            .stdout(stdout)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    )
}

#[test]
fn with_no_key_run_answers_on_the_local_model_and_leaves_no_server() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = model_dir();
    let home = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let before = servers(&dir);
    let o: Output = cmd(home.path(), &dir)
        .args([
            "run",
            "--workspace",
            home.path().join("ws").to_str().unwrap(),
        ])
        .arg("Say hello in one short sentence.")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{stderr}");
    assert!(
        stderr.contains("no API key set: using the local SmolLM2-135M-Instruct"),
        "{stderr}"
    );
    assert!(
        !stdout.trim().is_empty(),
        "an answer on stdout; stderr: {stderr}"
    );
    let after: Vec<u32> = servers(&dir)
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    assert!(after.is_empty(), "llama-server left running: {after:?}");

    // `llm complete` streams from the same managed model.
    let o = cmd(home.path(), &dir)
        .args(["llm", "complete", "Name a colour."])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!String::from_utf8_lossy(&o.stdout).trim().is_empty());
    let after: Vec<u32> = servers(&dir)
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    assert!(after.is_empty(), "llama-server left running: {after:?}");

    // An explicit provider wins, and its missing key is the error it always was.
    let o = cmd(home.path(), &dir)
        .args(["--set", "selection.provider=openai", "run", "--workspace"])
        .arg(home.path().join("ws"))
        .arg("hello")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no API key for provider `openai`"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn serve_runs_one_local_server_and_stops_it_on_sigterm() {
    use std::io::BufRead;
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = model_dir();
    let home = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let before = servers(&dir);
    let mut child = serve(home.path(), &dir, std::process::Stdio::piped());
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("gateway ws://"), "{line}");
    // serve warms the default agent's runtime after it is ready: one server starts.
    let started = std::time::Instant::now();
    let mut new: Vec<u32> = Vec::new();
    while started.elapsed() < std::time::Duration::from_secs(60) {
        new = servers(&dir)
            .into_iter()
            .filter(|p| !before.contains(p))
            .collect();
        if !new.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(new.len(), 1, "one llama-server for serve: {new:?}");
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    let after: Vec<u32> = servers(&dir)
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    assert!(
        after.is_empty(),
        "llama-server left running after serve: {after:?}"
    );

    // kill -9 leaves the server behind; `model status` names it and `model stop` ends it.
    let mut child = serve(home.path(), &dir, std::process::Stdio::null());
    let started = std::time::Instant::now();
    let mut orphan: Vec<u32> = Vec::new();
    while orphan.is_empty() && started.elapsed() < std::time::Duration::from_secs(60) {
        orphan = servers(&dir)
            .into_iter()
            .filter(|p| !before.contains(p))
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(orphan.len(), 1, "{orphan:?}");
    child.kill().unwrap();
    child.wait().unwrap();
    let status = cmd(home.path(), &dir)
        .args(["model", "status"])
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.contains(&format!("pid {}", orphan[0])) && status.contains("gone"),
        "{status}"
    );
    let stop = cmd(home.path(), &dir)
        .args(["model", "stop"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&stop.stdout),
        "stopped 1 server(s)\n"
    );
    let started = std::time::Instant::now();
    while servers(&dir).contains(&orphan[0])
        && started.elapsed() < std::time::Duration::from_secs(10)
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        !servers(&dir).contains(&orphan[0]),
        "the orphan was stopped"
    );
}
