//! The README's first command with no API key: `run` on the managed local model
//! (llama-server + SmolLM2-135M-Instruct, prepared by scripts/build.sh), a real streamed
//! answer, a clean exit, and no server left behind.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

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

#[test]
fn with_no_key_run_answers_on_the_local_model_and_leaves_no_server() {
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
