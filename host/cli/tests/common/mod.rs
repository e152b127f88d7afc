//! What the binary's end-to-end tests share: a temporary directory with an agent.toml
//! pointing provider `local` at a scripted OpenAI-compatible server on 127.0.0.1, and the
//! binary with a clean environment (this test's home, cache and model key only).
#![allow(dead_code)]

pub mod gateway;
pub mod mcp;

use crate::server::{Reply, Server};
use std::io::Read;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};

/// The model key the binary gets (its scrubbing is tested with it).
pub const MODEL_KEY: &str = "sk-local-5f3e9a7c1b2d4e6f8a0b";

pub struct Env {
    pub dir: tempfile::TempDir,
    pub server: Server,
}

impl Env {
    /// The model answers `replies`, in order.
    pub fn new(replies: Vec<Reply>) -> Env {
        Env::with_config(replies, "")
    }

    /// [`Env::new`], with `extra_config` appended to agent.toml.
    pub fn with_config(replies: Vec<Reply>, extra_config: &str) -> Env {
        Env::with_server(Server::start(replies), extra_config)
    }

    /// [`Env::with_config`], with the model played by `server` (a routed one, for replies
    /// computed when they are asked for).
    pub fn with_server(server: Server, extra_config: &str) -> Env {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let cfg = format!(
            "[selection]\nprovider = \"local\"\nmodel = \"gpt-4o-mini\"\n\
             [providers.registry.local]\nprovider_type = \"openai\"\nbase_url = \"{}/v1\"\napi_key_env = \"LOCAL_KEY\"\n{extra_config}",
            server.url
        );
        std::fs::create_dir_all(dir.path().join(".oxydra")).unwrap();
        std::fs::write(dir.path().join(".oxydra/agent.toml"), cfg).unwrap();
        Env { dir, server }
    }

    /// The workspace the tests pass with `--workspace`.
    pub fn ws(&self) -> PathBuf {
        self.dir.path().join("ws")
    }

    /// The binary with a clean environment, in the test's directory.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_oxydra-host"));
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path().join("home"))
            .env("XDG_CACHE_HOME", self.dir.path().join("home/.cache"))
            .env("LOCAL_KEY", MODEL_KEY)
            .current_dir(self.dir.path());
        // The container tier's engine (tests that do not use it ignore it).
        if let Some(h) = std::env::var_os("DOCKER_HOST") {
            c.env("DOCKER_HOST", h);
        }
        c
    }
}

/// Everything `r` yields, collected by a thread as it arrives.
pub fn collect(mut r: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let t = text.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = r.read(&mut buf) {
            if n == 0 {
                break;
            }
            t.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    text
}
