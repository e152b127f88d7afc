//! `oxydra-host mcp list|tools <server>`: the configured MCP servers, started for a
//! workspace as a runtime would start them, for diagnosis; and `mcp-exec`, the
//! trampoline a stdio server is started through.

use crate::{Failure, exit};
use clap::Subcommand;
use oxydra_session::config::{self, Sources};
use std::ffi::OsString;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum McpCommand {
    /// Each configured server: transport, state (ready, down and why), tool count,
    /// and for a stdio server what it may read and write.
    List {
        #[command(flatten)]
        at: At,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The tools one server lists: the name the model sees, or why it is not offered.
    Tools {
        /// The server's name (`[mcp.servers.<name>]`).
        server: String,
        #[command(flatten)]
        at: At,
        /// Print JSON (with each tool's input schema).
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
pub struct At {
    /// Workspace whose `.oxydra/mcp/<server>` holds stdio servers' scratch directories.
    /// Default: <workspace_root>/<user> from runner.toml.
    #[arg(long, value_name = "DIR")]
    workspace: Option<PathBuf>,
    /// User whose workspace to use when --workspace is not given.
    #[arg(long)]
    user: Option<String>,
}

fn json<T: serde::Serialize>(v: &T) -> Result<(), Failure> {
    let text =
        serde_json::to_string_pretty(v).map_err(|e| Failure::new(exit::USAGE, e.to_string()))?;
    println!("{text}");
    Ok(())
}

pub fn run(cmd: McpCommand, sources: &Sources) -> Result<(), Failure> {
    let agent = config::load_agent(sources)?.value;
    let (at, only) = match &cmd {
        McpCommand::List { at, .. } => (at, None),
        McpCommand::Tools { server, at, .. } => (at, Some(server.as_str())),
    };
    if agent.mcp.servers.is_empty() {
        return Err(Failure::new(
            exit::USAGE,
            "no MCP server is configured: add [mcp.servers.<name>] to agent.toml (docs/guide/mcp.md)",
        ));
    }
    if let Some(name) = only
        && !agent.mcp.servers.contains_key(name)
    {
        let known: Vec<&str> = agent.mcp.servers.keys().map(String::as_str).collect();
        return Err(Failure::new(
            exit::USAGE,
            format!("no MCP server `{name}`; configured: {}", known.join(", ")),
        ));
    }
    let ws = match &at.workspace {
        Some(d) => d.clone(),
        None => super::tool::default_workspace(sources, at.user.clone())?,
    };
    let manager = oxydra_session::mcp::start(&agent, &ws, only)?;
    let Some(manager) = manager else {
        return Err(Failure::new(
            exit::USAGE,
            match only {
                Some(name) => format!("MCP server `{name}` is disabled (enabled = false)"),
                None => "every configured MCP server is disabled (enabled = false)".to_string(),
            },
        ));
    };
    match cmd {
        McpCommand::List { json: true, .. } => json(&manager.servers()),
        McpCommand::List { .. } => {
            println!(
                "{:<16} {:<6} {:<9} {:>5}  DETAIL",
                "SERVER", "KIND", "STATE", "TOOLS"
            );
            for s in manager.servers() {
                println!(
                    "{:<16} {:<6} {:<9} {:>5}  {}",
                    s.name,
                    s.transport,
                    s.state,
                    s.tools,
                    s.reason.clone().unwrap_or_default()
                );
                if !s.reads.is_empty() {
                    let list = |v: &[PathBuf]| {
                        v.iter()
                            .map(|p| p.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    println!("{:<16} reads: {}", "", list(&s.reads));
                    println!(
                        "{:<16} writes: {} and its scratch directory",
                        "",
                        list(&s.writes)
                    );
                }
            }
            Ok(())
        }
        McpCommand::Tools {
            server, json: j, ..
        } => {
            let status = manager.servers().into_iter().find(|s| s.name == server);
            let tools = manager.listed(&server).unwrap_or_default();
            if let Some(s) = status
                && s.state != "ready"
                && tools.is_empty()
            {
                return Err(Failure::new(
                    exit::TOOL_ERROR,
                    s.reason
                        .unwrap_or_else(|| format!("MCP server `{server}` is {}", s.state)),
                ));
            }
            if j {
                return json(&tools);
            }
            for t in tools {
                match (&t.offered_as, &t.skipped) {
                    (Some(full), _) => println!("{full:<40} {}", t.description),
                    (None, Some(why)) => println!("{:<40} not offered: {why}", t.name),
                    _ => {}
                }
            }
            Ok(())
        }
    }
}

/// `mcp-exec -- PROGRAM ARGS…`: confine this process as the plan in
/// [`oxydra_mcp::PLAN_ENV`] says (rlimits, no_new_privs, no capabilities, Landlock,
/// seccomp), then execute the server in its place. Only errors reach stderr; stdout is
/// the server's.
pub fn exec(argv: Vec<OsString>) -> Failure {
    let Some((program, args)) = argv.split_first() else {
        return Failure::new(exit::USAGE, "mcp-exec: no program to execute");
    };
    let plan: oxydra_tiers::confine::Plan = match std::env::var(oxydra_mcp::PLAN_ENV)
        .map_err(|e| e.to_string())
        .and_then(|p| serde_json::from_str(&p).map_err(|e| e.to_string()))
    {
        Ok(p) => p,
        Err(e) => {
            return Failure::new(
                exit::USAGE,
                format!(
                    "mcp-exec: no confinement plan in {}: {e}",
                    oxydra_mcp::PLAN_ENV
                ),
            );
        }
    };
    let mut plan = plan;
    // Inside a confined runtime (the process tier) the data limit cannot be raised past
    // the runtime's own.
    if let (Some(m), Some(hard)) = (plan.memory_bytes, oxydra_mcp::launch::data_limit()) {
        plan.memory_bytes = Some(m.min(hard));
    }
    oxydra_tiers::confine::die_with_parent();
    match oxydra_tiers::confine::confine(&plan) {
        // What the kernel did not give is said where the host reads it (the server's
        // stderr: `mcp list` and its tools' errors).
        Ok(report) => {
            for d in &report.degraded {
                eprintln!("mcp-exec: degraded: {d}");
            }
        }
        Err(e) => {
            return Failure::new(exit::REFUSED, format!("mcp-exec: confining failed: {e}"));
        }
    }
    use std::os::unix::process::CommandExt;
    let e = std::process::Command::new(program)
        .args(args)
        .env_remove(oxydra_mcp::PLAN_ENV)
        .exec();
    Failure::new(
        exit::USAGE,
        format!(
            "mcp-exec: could not execute {}: {e}",
            program.to_string_lossy()
        ),
    )
}

/// `mcp-bridge --socket PATH`: in a stdio server's own container (the container tier),
/// answer on `PATH`; for each connection (one at a time) start the server through
/// `mcp-exec` as [`oxydra_mcp::BRIDGE_ENV`] describes and join the connection to its
/// stdin and stdout. Its stderr is the container's (the runner's log). When either side
/// ends, the server is stopped and the next connection starts a new one.
pub fn bridge(socket: &std::path::Path) -> Result<(), Failure> {
    let launch: oxydra_mcp::StdioCommand = std::env::var(oxydra_mcp::BRIDGE_ENV)
        .map_err(|e| e.to_string())
        .and_then(|j| serde_json::from_str(&j).map_err(|e| e.to_string()))
        .map_err(|e| {
            Failure::new(
                exit::USAGE,
                format!("mcp-bridge: no server in {}: {e}", oxydra_mcp::BRIDGE_ENV),
            )
        })?;
    let exe = std::env::current_exe()
        .map_err(|e| Failure::new(exit::USAGE, format!("mcp-bridge: this binary: {e}")))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(exit::USAGE, format!("mcp-bridge: {e}")))?;
    rt.block_on(async move {
        let _ = std::fs::remove_file(socket);
        let listener = tokio::net::UnixListener::bind(socket).map_err(|e| {
            Failure::new(
                exit::USAGE,
                format!("mcp-bridge: {}: {e}", socket.display()),
            )
        })?;
        eprintln!(
            "mcp-bridge: {} answers on {}",
            launch.program.display(),
            socket.display()
        );
        loop {
            let (conn, _) = listener
                .accept()
                .await
                .map_err(|e| Failure::new(exit::TOOL_ERROR, format!("mcp-bridge: accept: {e}")))?;
            let mut child = match launch
                .command(&exe, &[oxydra_session::mcp::TRAMPOLINE.into()])
                .spawn()
            {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("mcp-bridge: could not start the server: {e}");
                    continue;
                }
            };
            let (Some(mut stdin), Some(mut stdout)) = (child.stdin.take(), child.stdout.take())
            else {
                continue;
            };
            let (mut from_client, mut to_client) = conn.into_split();
            let up = tokio::io::copy(&mut from_client, &mut stdin);
            let down = tokio::io::copy(&mut stdout, &mut to_client);
            tokio::select! {
                _ = up => {}
                _ = down => {}
            }
            // The server and whatever it started.
            if let Some(pid) = child.id() {
                oxydra_mcp::launch::kill_group(pid);
            }
            let _ = child.start_kill();
            match child.wait().await {
                Ok(st) => eprintln!("mcp-bridge: the server {st}"),
                Err(e) => eprintln!("mcp-bridge: {e}"),
            }
        }
    })
}
