//! The runner's control socket (`<workspace>/ipc/runner-control.sock`): what `status`,
//! `stop`, `restart` and `logs` send from another terminal. One JSON request line
//! (with the runner's secret, [`secret_path`]); one
//! JSON answer line (`{"ok":true,...}` or `{"ok":false,"error":"..."}`); for `logs`, the
//! log's lines follow the answer as plain text until the runner closes the connection
//! (at once, or, with `follow`, when the client hangs up or the runner stops).

use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The socket's name in `ipc/`.
pub const SOCKET: &str = "runner-control.sock";

/// The control socket of the workspace `ws`.
pub fn socket(ws: &Path) -> PathBuf {
    ws.join("ipc").join(SOCKET)
}

/// The secret every request carries (`ipc/runner-control.secret`, 0600, made by the
/// runner at start). The runtime can connect to the socket (Landlock before ABI 9 does
/// not restrict connecting to named unix sockets) but cannot read `ipc/`, so it cannot
/// stop its runner or read its log.
pub fn secret_path(ws: &Path) -> PathBuf {
    ws.join("ipc").join("runner-control.secret")
}

/// One request on the wire: the secret and the request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    pub secret: String,
    #[serde(flatten)]
    pub request: Request,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Status,
    /// Stop the runtime and the runner.
    Stop,
    /// Stop the runtime and start it again (the runner stays).
    Restart,
    /// The runtime's log: the last `tail` lines (all when `None`), then, with `follow`,
    /// each new line as it is written.
    Logs {
        tail: Option<usize>,
        follow: bool,
    },
}

/// What `status` reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub user: String,
    /// `process` or `container`.
    pub tier: String,
    /// `starting`, `ready`, `restarting`, `stopping`.
    pub state: String,
    /// The runner's own pid.
    pub runner_pid: u32,
    /// The runtime's pid (the process tier), when it runs.
    pub runtime_pid: Option<u32>,
    /// The runtime's container (the container tier), when it runs.
    pub container: Option<String>,
    /// The gateway clients connect to (the runner's 127.0.0.1 listener).
    pub gateway: String,
    /// `ok` when the runtime's gateway socket accepts a connection; else why not.
    pub health: String,
    /// Milliseconds from launching the runtime to its ready line, for the current run.
    pub ready_ms: Option<u64>,
    /// Seconds since the current runtime started.
    pub uptime_secs: Option<u64>,
    /// Times the runtime was started again after it died (or on `restart`).
    pub restarts: u32,
    /// How the previous runtime ended, when one did.
    pub last_exit: Option<String>,
    /// Each protection in force, as the runtime reported it.
    pub applied: Vec<String>,
    /// Each protection asked for and not in force.
    pub degraded: Vec<String>,
    /// What the runtime checked it can no longer do after confining itself.
    pub verified: Vec<String>,
    /// The shell sidecar (the container tier): `up (container …)`, `starting`,
    /// `restarting …`, or `off: why`; `None` when the runner starts none.
    #[serde(default)]
    pub shell: Option<String>,
    /// Each stdio MCP server's container (the container tier), by server name, in the
    /// same words as `shell`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub mcp: std::collections::BTreeMap<String, String>,
    /// Connections the egress proxy tunnelled, and refused.
    pub egress_tunnels: u64,
    pub egress_refused: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Answer {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
}

impl Answer {
    pub fn ok() -> Answer {
        Answer {
            ok: true,
            error: None,
            status: None,
        }
    }

    pub fn error(e: impl Into<String>) -> Answer {
        Answer {
            ok: false,
            error: Some(e.into()),
            status: None,
        }
    }
}

/// A connection to a running runner.
pub struct Client {
    stream: UnixStream,
    secret: String,
}

impl Client {
    /// Connect to the runner of workspace `ws`; `Err` says that none runs there.
    pub fn connect(ws: &Path) -> Result<Client, String> {
        let path = socket(ws);
        match UnixStream::connect(&path) {
            Ok(stream) => {
                let secret = std::fs::read_to_string(secret_path(ws))
                    .map_err(|e| {
                        format!(
                            "{}: {e} (the runner writes it at start; run as the runner's user)",
                            secret_path(ws).display()
                        )
                    })?
                    .trim()
                    .to_string();
                Ok(Client { stream, secret })
            }
            Err(e) => Err(format!(
                "no runner is running for this workspace ({}: {e}); start one with `oxydra-host start`",
                path.display()
            )),
        }
    }

    /// Send `req`, read the answer line; `Err` for an answer with `ok: false`. The
    /// stream is left positioned after the answer (for `logs`).
    pub fn request(
        self,
        req: &Request,
        timeout: Option<Duration>,
    ) -> Result<(Answer, BufReader<UnixStream>), String> {
        let mut stream = self.stream;
        let _ = stream.set_read_timeout(timeout);
        let envelope = Envelope {
            secret: self.secret,
            request: req.clone(),
        };
        let mut line = serde_json::to_string(&envelope).map_err(|e| e.to_string())?;
        line.push('\n');
        stream
            .write_all(line.as_bytes())
            .map_err(|e| format!("the runner's control socket: {e}"))?;
        let mut reader = BufReader::new(stream);
        let mut head = String::new();
        reader
            .read_line(&mut head)
            .map_err(|e| format!("no answer from the runner: {e}"))?;
        if head.is_empty() {
            return Err("the runner closed the control connection without an answer".into());
        }
        let answer: Answer = serde_json::from_str(head.trim())
            .map_err(|e| format!("the runner's answer is not understood ({e}): {head}"))?;
        if !answer.ok {
            return Err(answer.error.unwrap_or_else(|| "the runner refused".into()));
        }
        Ok((answer, reader))
    }
}
