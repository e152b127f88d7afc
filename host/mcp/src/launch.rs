//! How a stdio server is started: its program, arguments, environment (the host's fixed
//! variables, what its config lists, and the confinement plan for `mcp-exec`) and
//! working directory. The same for a child of the runtime and for a child of a bridge
//! in the server's own container (the container tier).

use crate::config::{self, Access, ServerConfig};
use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::path::PathBuf;

/// The environment variable the trampoline (`oxydra-host mcp-exec`) reads its
/// confinement from (JSON, the process tier's plan).
pub const PLAN_ENV: &str = "OXYDRA_MCP_PLAN";

/// The environment variable a bridge (`oxydra-host mcp-bridge`) reads its
/// [`StdioCommand`] from (JSON).
pub const BRIDGE_ENV: &str = "OXYDRA_MCP_BRIDGE";

/// The environment variable that tells a runtime in the container tier where the
/// bridges to its stdio servers answer.
pub const BRIDGE_DIR_ENV: &str = "OXYDRA_MCP_BRIDGE_DIR";

/// The confinement the trampoline applies (the fields of the process tier's plan).
#[derive(Debug, Clone, Serialize)]
struct ExecPlan {
    read_only: Vec<PathBuf>,
    read_write: Vec<PathBuf>,
    memory_bytes: Option<u64>,
    max_open_files: u64,
}

/// One stdio server's start, run through `mcp-exec`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StdioCommand {
    pub program: PathBuf,
    pub args: Vec<String>,
    /// Everything it gets (nothing is inherited), the plan included.
    pub env: Vec<(String, OsString)>,
    pub cwd: PathBuf,
    /// Its scratch directory (HOME), created by [`StdioCommand::new`].
    pub scratch: PathBuf,
    /// What it may read and write (the plan's lists).
    pub access: Access,
}

impl StdioCommand {
    /// `name`'s start for `workspace`; `Err` names the server and what to do (a command
    /// that does not exist, a variable of `env_from` the host does not have).
    pub fn new(
        name: &str,
        cfg: &ServerConfig,
        access: Option<&Access>,
        workspace: &std::path::Path,
    ) -> Result<StdioCommand, String> {
        let command = cfg.command.clone().unwrap_or_default();
        let program = config::resolve_command(name, &command)?;
        let access = match access {
            Some(a) => a.clone(),
            None => config::access(name, cfg)?,
        };
        let scratch = config::scratch_dir(workspace, name);
        let tmp = scratch.join("tmp");
        std::fs::create_dir_all(&tmp).map_err(|e| {
            format!(
                "MCP server `{name}`: its scratch directory {}: {e}",
                scratch.display()
            )
        })?;
        let mut read_write = access.read_write.clone();
        read_write.push(scratch.clone());
        let plan = ExecPlan {
            read_only: access.read_only.clone(),
            read_write,
            memory_bytes: Some(cfg.max_memory_mib << 20),
            max_open_files: 1024,
        };
        let mut env: Vec<(String, OsString)> = vec![
            (
                PLAN_ENV.into(),
                serde_json::to_string(&plan).unwrap_or_default().into(),
            ),
            ("PATH".into(), config::SERVER_PATH.into()),
            ("HOME".into(), scratch.clone().into()),
            ("TMPDIR".into(), tmp.into()),
            ("LANG".into(), "C.UTF-8".into()),
        ];
        for (k, v) in &cfg.env {
            env.push((k.clone(), v.into()));
        }
        for (k, from) in &cfg.env_from {
            match std::env::var_os(from) {
                Some(v) => env.push((k.clone(), v)),
                None => {
                    return Err(format!(
                        "MCP server `{name}`: mcp.servers.{name}.env_from.{k} = \"{from}\", but ${from} is not set in the host's environment"
                    ));
                }
            }
        }
        Ok(StdioCommand {
            program,
            args: cfg.args.clone(),
            env,
            cwd: cfg.cwd.clone().unwrap_or_else(|| scratch.clone()),
            scratch,
            access,
        })
    }
}

impl StdioCommand {
    /// `trampoline trampoline_args -- program args`, with exactly this environment,
    /// stdin and stdout piped, in its own process group, killed when dropped (stderr is
    /// the caller's to set).
    pub fn command(
        &self,
        trampoline: &std::path::Path,
        trampoline_args: &[OsString],
    ) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(trampoline);
        cmd.args(trampoline_args)
            .arg("--")
            .arg(&self.program)
            .args(&self.args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(&self.cwd)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        cmd
    }
}

/// The hard `RLIMIT_DATA` of this process, when it has one.
pub fn data_limit() -> Option<u64> {
    rustix::process::getrlimit(rustix::process::Resource::Data).maximum
}

/// A process group, killed (SIGKILL) when this is dropped: a server and whatever it
/// started.
#[derive(Debug)]
pub struct Group(pub u32);

impl Drop for Group {
    fn drop(&mut self) {
        kill_group(self.0);
    }
}

/// Kill the process group `pgid` (a server started in its own group).
pub fn kill_group(pgid: u32) {
    if let Some(pid) = i32::try_from(pgid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

/// Where the bridge of stdio server `name` answers, under the bridges' directory: its
/// own directory, so each server's container mounts only its own socket.
pub fn bridge_socket(dir: &std::path::Path, name: &str) -> PathBuf {
    dir.join(name).join("bridge.sock")
}
