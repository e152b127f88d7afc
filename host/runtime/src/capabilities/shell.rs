//! `oxydra:shell/exec`: a tool runs a command in the shell sidecar. The runtime runs no
//! command itself: it forwards the request to the sidecar's daemon over a unix socket
//! (one JSON line each way, [`wire`]) and returns its answer. The sidecar is a separate
//! container with `/shared` and `/tmp` only (no vault, no API keys, no network) and its
//! own memory and process limits; the runner starts it in the container tier and names
//! its socket in [`SHELL_SOCKET_ENV`]. Without one, tools of the `shell` profile are not
//! registered (the session layer asks [`available`]).

use crate::bindings::imports::oxydra::shell::exec as wit;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;
use wasmtime::component::{HasData, Linker};

/// The environment variable the runner sets to the sidecar's socket.
pub const SHELL_SOCKET_ENV: &str = "OXYDRA_SHELL_SOCKET";
/// Longest time a command may run (`shell_exec` says so in its description).
pub const MAX_TIMEOUT_MS: u32 = 300_000;
/// Most bytes of stdout, and of stderr, kept per command; the rest is dropped and the
/// output marked truncated (`shell_exec` says so in its description).
pub const MAX_OUTPUT_BYTES: usize = 64 * 1024;
/// Longest command accepted.
pub const MAX_COMMAND_BYTES: usize = 16 * 1024;
/// How long past the command's own timeout the host waits for the daemon's answer
/// (killing a process group and collecting its output takes a moment).
const ANSWER_GRACE: Duration = Duration::from_secs(10);

/// The process's sidecar socket, set once at start-up.
static SIDECAR: OnceLock<PathBuf> = OnceLock::new();

/// Send this process's shell commands to the daemon at `socket`. Idempotent for the
/// same path; a second, different path is refused.
pub fn use_sidecar(socket: &Path) -> Result<(), String> {
    let set = SIDECAR.get_or_init(|| socket.to_path_buf());
    if set != socket {
        return Err(format!(
            "the shell sidecar is already {} (not {})",
            set.display(),
            socket.display()
        ));
    }
    Ok(())
}

/// The sidecar's socket, when this process was given one.
pub fn sidecar() -> Option<&'static Path> {
    SIDECAR.get().map(PathBuf::as_path)
}

/// Whether the sidecar answers now: its daemon replies to a ping. `Err` says why not.
pub fn available() -> Result<(), String> {
    let Some(socket) = sidecar() else {
        return Err(
            "there is no shell sidecar: shell tools run only in the container tier (`oxydra-host start` without --insecure)"
                .into(),
        );
    };
    match exchange(socket, &wire::Request::Ping, Duration::from_secs(5))? {
        wire::Response::Pong => Ok(()),
        other => Err(format!(
            "the shell sidecar at {} answered a ping with {other:?}",
            socket.display()
        )),
    }
}

/// The wire protocol between the runtime and the sidecar's daemon: one JSON request
/// line, one JSON response line, per connection.
pub mod wire {
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
    pub enum Request {
        Ping,
        Exec {
            command: String,
            /// A path inside the sidecar (/shared/…, /tmp/…).
            cwd: String,
            timeout_ms: u32,
            /// Bytes kept of each stream.
            max_output_bytes: usize,
        },
    }

    #[derive(Debug, Clone, Serialize, Deserialize)]
    #[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
    pub enum Response {
        Pong,
        Done(Output),
        Error { message: String },
    }

    #[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Output {
        pub stdout: String,
        pub stderr: String,
        pub truncated: bool,
        pub exit_code: Option<i32>,
        pub signal: Option<i32>,
        pub timed_out: bool,
        pub duration_ms: u64,
    }
}

/// One request and its answer.
fn exchange(socket: &Path, req: &wire::Request, wait: Duration) -> Result<wire::Response, String> {
    let down = |e: std::io::Error| {
        format!(
            "the shell sidecar is not answering ({}: {e}); the runner restarts it, so try again shortly",
            socket.display()
        )
    };
    let mut s = UnixStream::connect(socket).map_err(down)?;
    s.set_read_timeout(Some(wait)).map_err(down)?;
    s.set_write_timeout(Some(Duration::from_secs(5)))
        .map_err(down)?;
    let mut line = serde_json::to_vec(req).map_err(|e| e.to_string())?;
    line.push(b'\n');
    s.write_all(&line).map_err(down)?;
    let mut answer = String::new();
    // The daemon's answer is bounded by the two capped streams, escaped.
    let limit = (MAX_OUTPUT_BYTES as u64) * 14 + 4096;
    BufReader::new(std::io::Read::take(s, limit))
        .read_line(&mut answer)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => format!(
                "the shell sidecar did not answer within {} s",
                wait.as_secs()
            ),
            _ => down(e),
        })?;
    if answer.is_empty() {
        return Err("the shell sidecar closed the connection without answering (it may have been restarted, or hit its memory limit); try again".into());
    }
    serde_json::from_str(&answer)
        .map_err(|e| format!("the shell sidecar's answer is not valid: {e}"))
}

/// A working directory as the sidecar sees it: `/shared` by default; a relative path is
/// under /shared; only /shared and /tmp (and below) are accepted, without `..`.
pub fn sidecar_dir(dir: Option<&str>) -> Result<String, String> {
    let dir = dir
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .unwrap_or("/shared");
    let path = if dir.starts_with('/') {
        dir.to_string()
    } else {
        format!("/shared/{dir}")
    };
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.contains(&"..") {
        return Err(format!(
            "working directory {dir}: `..` is not allowed; name a directory under /shared or /tmp"
        ));
    }
    match parts.first() {
        Some(&"shared") | Some(&"tmp") => Ok(format!("/{}", parts.join("/"))),
        _ => Err(format!(
            "working directory {dir} is outside /shared and /tmp: the shell sees only those (the vault is not there; copy a file out with vault_copyto)"
        )),
    }
}

/// The per-call context of `oxydra:shell/exec`.
#[derive(Default)]
pub struct ShellCtx {
    in_call: bool,
}

impl ShellCtx {
    /// `in_call`: false while a component describes itself (nothing runs then).
    pub fn new(in_call: bool) -> ShellCtx {
        ShellCtx { in_call }
    }
}

/// Store data that carries a [`ShellCtx`].
pub trait ShellView: Send {
    fn shell(&mut self) -> &mut ShellCtx;
}

pub struct HasShell;

impl HasData for HasShell {
    type Data<'a> = &'a mut ShellCtx;
}

impl wit::Host for ShellCtx {
    fn run(&mut self, req: wit::Request) -> Result<wit::Output, String> {
        if !self.in_call {
            return Err("no command runs while a tool describes itself".into());
        }
        let Some(socket) = sidecar() else {
            return Err(
                "there is no shell sidecar: shell tools run only in the container tier".into(),
            );
        };
        if req.command.trim().is_empty() {
            return Err("the command is empty".into());
        }
        if req.command.len() > MAX_COMMAND_BYTES {
            return Err(format!(
                "the command is {} bytes; the limit is {MAX_COMMAND_BYTES} (write a script to /shared and run it instead)",
                req.command.len()
            ));
        }
        if req.timeout_ms == 0 || req.timeout_ms > MAX_TIMEOUT_MS {
            return Err(format!(
                "timeout {} ms is out of range: use 1 to {MAX_TIMEOUT_MS} ms",
                req.timeout_ms
            ));
        }
        let cwd = sidecar_dir(req.working_dir.as_deref())?;
        let wait = Duration::from_millis(u64::from(req.timeout_ms)) + ANSWER_GRACE;
        let answer = exchange(
            socket,
            &wire::Request::Exec {
                command: req.command,
                cwd,
                timeout_ms: req.timeout_ms,
                max_output_bytes: MAX_OUTPUT_BYTES,
            },
            wait,
        )?;
        match answer {
            wire::Response::Done(o) => Ok(wit::Output {
                stdout: o.stdout,
                stderr: o.stderr,
                truncated: o.truncated,
                exit_code: o.exit_code,
                signal: o.signal,
                timed_out: o.timed_out,
                duration_ms: o.duration_ms,
            }),
            wire::Response::Error { message } => Err(message),
            wire::Response::Pong => Err("the shell sidecar answered a command with a pong".into()),
        }
    }
}

/// `oxydra:shell/exec`.
pub fn add_to_linker<T: ShellView + 'static>(l: &mut Linker<T>) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, HasShell>(l, |t| t.shell())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn working_directories_stay_in_shared_and_tmp() {
        assert_eq!(sidecar_dir(None).as_deref(), Ok("/shared"));
        assert_eq!(sidecar_dir(Some("")).as_deref(), Ok("/shared"));
        assert_eq!(
            sidecar_dir(Some("src/app")).as_deref(),
            Ok("/shared/src/app")
        );
        assert_eq!(sidecar_dir(Some("/tmp/./x/")).as_deref(), Ok("/tmp/x"));
        for bad in [
            "/vault",
            "/etc",
            "/",
            "/shared/../vault",
            "../x",
            "/sharedx",
        ] {
            assert!(sidecar_dir(Some(bad)).is_err(), "{bad}");
        }
    }
}
