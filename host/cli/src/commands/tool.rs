//! `oxydra-host tool list` and `oxydra-host tool call`.

use crate::{Failure, exit};
use clap::Subcommand;
use oxydra_runtime::{CallError, Workspace};
use oxydra_session::config::{self, Sources};
use oxydra_session::tools;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Subcommand)]
pub enum ToolCommand {
    /// Name, profile, tier and a one-line description of every tool.
    List {
        /// Print JSON (name, description, parameters, tier, profiles).
        #[arg(long)]
        json: bool,
    },
    /// Run one tool through the whole host path (profile linker, limits, path policy).
    Call {
        /// Tool name, e.g. file_read.
        name: String,
        /// Arguments as a JSON object, e.g. '{"path": "/shared/a.txt"}'.
        arguments: String,
        /// Workspace directory holding shared/, tmp/ and vault/ (created if missing).
        /// Default: <workspace_root>/<user> from runner.toml.
        #[arg(long, value_name = "DIR")]
        workspace: Option<PathBuf>,
        /// User whose workspace (and, for memory tools, whose memory) to use.
        #[arg(long)]
        user: Option<String>,
        /// The session whose scratchpad the scratchpad_* tools use.
        #[arg(long, default_value = "cli")]
        session: String,
    },
}

pub fn run(cmd: ToolCommand, sources: &Sources) -> Result<(), Failure> {
    let agent = config::load_agent(sources)?;
    match cmd {
        ToolCommand::List { json } => {
            // MCP servers' tools too, started for the default workspace.
            let mcp = if oxydra_session::mcp::configured(&agent.value) {
                let ws = default_workspace(sources, None)?;
                oxydra_session::mcp::start(&agent.value, &ws, None)?
            } else {
                None
            };
            list(&agent.value, agent.base_dir.as_deref(), json, mcp.as_ref())
        }
        ToolCommand::Call {
            name,
            arguments,
            workspace,
            user,
            session,
        } => {
            let (user, default_ws) = oxydra_session::compose::user_and_workspace(sources, user)?;
            let ws_dir = workspace.unwrap_or(default_ws);
            call(
                &agent.value,
                agent.base_dir.as_deref(),
                &name,
                &arguments,
                &ws_dir,
                (&user, &session),
            )
        }
    }
}

pub fn default_workspace(sources: &Sources, user: Option<String>) -> Result<PathBuf, Failure> {
    Ok(oxydra_session::compose::default_workspace(sources, user)?)
}

fn first_sentence(text: &str) -> String {
    let end = text.find(". ").map(|i| i + 1).unwrap_or(text.len());
    let s: String = text[..end].chars().take(90).collect();
    if s.len() < end { format!("{s}...") } else { s }
}

fn list(
    cfg: &config::AgentConfig,
    base: Option<&std::path::Path>,
    json: bool,
    mcp: Option<&oxydra_mcp::Manager>,
) -> Result<(), Failure> {
    let host = tools::host(&cfg.components)?;
    let mut rows = Vec::new();
    let mut refused = 0;
    for spec in tools::specs(cfg, base)? {
        match host.load(&spec) {
            Ok(t) => rows.push(t.descriptor),
            Err(e) => {
                refused += 1;
                eprintln!("refused: {e}");
            }
        }
    }
    if let Some(m) = mcp {
        use oxydra_runtime::ToolSource;
        rows.extend(m.tools().iter().map(|t| t.descriptor.clone()));
        for s in m.servers().iter().filter(|s| s.state != "ready") {
            eprintln!(
                "MCP server `{}` is {}: {}",
                s.name,
                s.state,
                s.reason.clone().unwrap_or_default()
            );
        }
    }
    if json {
        let text = serde_json::to_string_pretty(&rows)
            .map_err(|e| Failure::new(exit::USAGE, e.to_string()))?;
        println!("{text}");
    } else {
        println!(
            "{:<16} {:<34} {:<15} DESCRIPTION",
            "NAME", "PROFILE", "TIER"
        );
        for d in &rows {
            let profiles: Vec<&str> = d.profiles.iter().map(|p| p.name()).collect();
            // An MCP tool has no profile: its source says where it runs.
            let kind = d.source.clone().unwrap_or_else(|| profiles.join("+"));
            println!(
                "{:<16} {:<34} {:<15} {}",
                d.name,
                kind,
                d.tier.name(),
                first_sentence(&d.description)
            );
        }
    }
    if refused > 0 {
        return Err(Failure::new(
            exit::REFUSED,
            format!("{refused} component(s) refused at load (see above)"),
        ));
    }
    Ok(())
}

fn call(
    cfg: &config::AgentConfig,
    base: Option<&std::path::Path>,
    name: &str,
    arguments: &str,
    ws_dir: &std::path::Path,
    (user, session): (&str, &str),
) -> Result<(), Failure> {
    let parsed: serde_json::Value = serde_json::from_str(arguments).map_err(|e| {
        Failure::new(exit::USAGE, format!("arguments are not valid JSON ({e}); pass an object, e.g. '{{\"path\": \"/shared/a.txt\"}}'"))
    })?;
    if !parsed.is_object() {
        return Err(Failure::new(
            exit::USAGE,
            "arguments must be a JSON object, e.g. '{\"path\": \"/shared/a.txt\"}'",
        ));
    }
    let specs = tools::specs(cfg, base)?;
    if !specs.iter().any(|s| s.name == name)
        && let Some((server, _)) = name.split_once(oxydra_mcp::config::SEPARATOR)
        && cfg.mcp.servers.contains_key(server)
    {
        return call_mcp(cfg, server, name, &parsed, arguments, ws_dir);
    }
    let Some(spec) = specs.iter().find(|s| s.name == name) else {
        let known: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        return Err(Failure::new(
            exit::USAGE,
            format!(
                "no tool named `{name}`; the tools are: {} (see `oxydra-host tool list`)",
                known.join(", ")
            ),
        ));
    };
    let host = tools::host(&cfg.components)?;
    let tool = host
        .load(spec)
        .map_err(|e| Failure::new(exit::REFUSED, e.to_string()))?;
    let ws = Workspace::open(ws_dir)
        .map_err(|e| Failure::new(exit::USAGE, format!("workspace {}: {e}", ws_dir.display())))?;
    // A memory tool reaches the user's memory, and the session's scratchpad.
    let mut context = oxydra_runtime::CallContext::default();
    if spec
        .components
        .iter()
        .any(|c| c.grant == oxydra_runtime::Profile::Memory)
    {
        if !cfg.memory.enabled {
            return Err(Failure::new(
                exit::USAGE,
                format!("`{name}` needs memory: set `[memory] enabled = true` in agent.toml"),
            ));
        }
        let memory = oxydra_session::memory::open(&cfg.memory, ws_dir, user)?;
        context.memory = Some(Arc::new(oxydra_session::memory::Scoped {
            memory,
            session: session.to_string(),
        }));
    }
    print_outcome(host.call_with(&tool, arguments, &Arc::new(ws), &context))
}

/// `tool call <server>__<tool>`: that server alone, started for `ws_dir`; the arguments
/// checked against the tool's schema as the agent checks them.
fn call_mcp(
    cfg: &config::AgentConfig,
    server: &str,
    name: &str,
    parsed: &serde_json::Value,
    arguments: &str,
    ws_dir: &std::path::Path,
) -> Result<(), Failure> {
    use oxydra_runtime::ToolSource;
    let Some(manager) = oxydra_session::mcp::start(cfg, ws_dir, Some(server))? else {
        return Err(Failure::new(
            exit::USAGE,
            format!("MCP server `{server}` is disabled (enabled = false)"),
        ));
    };
    let tools = manager.tools();
    let Some(tool) = tools.iter().find(|t| t.descriptor.name == name) else {
        let status = manager.servers().into_iter().next();
        if let Some(s) = status.filter(|s| s.state != "ready") {
            return Err(Failure::new(
                exit::TOOL_ERROR,
                s.reason
                    .unwrap_or_else(|| format!("MCP server `{server}` is {}", s.state)),
            ));
        }
        let known: Vec<&str> = tools.iter().map(|t| t.descriptor.name.as_str()).collect();
        return Err(Failure::new(
            exit::USAGE,
            format!(
                "MCP server `{server}` offers no tool `{name}`; it offers: {} (see `oxydra-host mcp tools {server}`)",
                known.join(", ")
            ),
        ));
    };
    if let Err(problem) = oxydra_agent::args::check(parsed, &tool.descriptor.parameters) {
        return Err(Failure::new(
            exit::USAGE,
            format!("invalid arguments for `{name}`: {problem}"),
        ));
    }
    let host = tools::host(&cfg.components)?;
    let ws = Workspace::open(ws_dir)
        .map_err(|e| Failure::new(exit::USAGE, format!("workspace {}: {e}", ws_dir.display())))?;
    print_outcome(host.call(tool, arguments, &Arc::new(ws)))
}

/// A call's output on stdout (with a final newline), or its failure and exit code.
fn print_outcome(outcome: Result<String, CallError>) -> Result<(), Failure> {
    match outcome {
        Ok(out) => {
            print!("{out}");
            if !out.ends_with('\n') {
                println!();
            }
            Ok(())
        }
        Err(CallError::Tool(f)) => Err(Failure::new(exit::TOOL_ERROR, f.to_string())),
        Err(e) => Err(Failure::new(exit::LIMIT, e.to_string())),
    }
}
