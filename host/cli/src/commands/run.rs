//! `oxydra-host run "prompt"`: one turn in a fresh (or `--session`) session. The answer
//! streams to stdout; the session id, model calls and tool calls go to stderr.

use crate::config::{self, AgentConfig, Sources};
use crate::{Failure, exit, providers, tools};
use oxydra_agent::scrub::Scrubber;
use oxydra_agent::turn::{AgentProfile, Budgets, Compaction, Progress, Runtime};
use oxydra_runtime::Workspace;
use oxydra_store::{Store, StoreError};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const DEFAULT_PROMPT: &str = "You are Oxydra, an agent working in a sandboxed workspace. Files live under \
/shared (kept) and /tmp (scratch); /vault holds secrets and is reachable only through vault_copyto. \
Use the tools to look before you answer and to act; answer concisely.";

#[derive(clap::Args)]
pub struct RunArgs {
    /// Continue this session (its id is printed on stderr when a session starts).
    #[arg(long)]
    session: Option<String>,
    /// Run as this agent from [agents.<name>] (its prompt, tools, model and budgets).
    #[arg(long)]
    agent: Option<String>,
    /// Workspace directory (shared/, tmp/, vault/); default <workspace_root>/<user>.
    #[arg(long, value_name = "DIR")]
    workspace: Option<PathBuf>,
    #[arg(long)]
    user: Option<String>,
    prompt: String,
}

pub fn session_id() -> String {
    let mut bytes = [0u8; 12];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut bytes);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn profile(cfg: &AgentConfig, name: &str, base: Option<&Path>) -> Result<AgentProfile, Failure> {
    let def = if name == "default" {
        None
    } else {
        Some(cfg.agents.get(name).ok_or_else(|| {
            let known: Vec<&str> = cfg.agents.keys().map(String::as_str).collect();
            Failure::new(
                exit::USAGE,
                format!(
                    "no agent `{name}` in [agents] (configured: {})",
                    known.join(", ")
                ),
            )
        })?)
    };
    let system_prompt = match def {
        Some(d) if d.system_prompt.is_some() => d.system_prompt.clone().unwrap_or_default(),
        Some(d) if d.system_prompt_file.is_some() => {
            let file = d.system_prompt_file.clone().unwrap_or_default();
            let path = match base {
                Some(b) if file.is_relative() => b.join(&file),
                _ => file,
            };
            std::fs::read_to_string(&path).map_err(|e| {
                Failure::new(
                    exit::USAGE,
                    format!("agents.{name}.system_prompt_file: {}: {e}", path.display()),
                )
            })?
        }
        _ => DEFAULT_PROMPT.to_string(),
    };
    Ok(AgentProfile {
        name: name.to_string(),
        system_prompt,
        tools: def.and_then(|d| d.tools.clone()),
        budgets: Budgets {
            max_steps: def
                .and_then(|d| d.max_turns)
                .unwrap_or(cfg.runtime.max_turns),
            max_tokens: cfg.runtime.max_tokens,
            max_cost: def.and_then(|d| d.max_cost).or(cfg.runtime.max_cost),
            wall_time: cfg.runtime.max_wall_secs.map(Duration::from_secs),
        },
    })
}

/// Writes a turn's progress: the answer to stdout as it streams, the rest to stderr.
pub struct Printer {
    at_line_start: bool,
}

impl Printer {
    pub fn new() -> Printer {
        Printer {
            at_line_start: true,
        }
    }

    pub fn show(&mut self, p: Progress) {
        match p {
            Progress::Text(t) => {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(t.as_bytes());
                let _ = out.flush();
                if !t.is_empty() {
                    self.at_line_start = t.ends_with('\n');
                }
            }
            Progress::Reasoning(_) | Progress::Usage { .. } => {}
            Progress::ProviderCall { step, max } => {
                if step > 1 {
                    eprintln!("[model] call {step}/{max}");
                }
            }
            Progress::ToolStart { name, arguments } => {
                let shown: String = arguments.chars().take(160).collect();
                eprintln!("[tool] {name} {shown}");
            }
            Progress::ToolEnd { name, elapsed, ok } => {
                eprintln!(
                    "[tool] {name} {} ({} ms)",
                    if ok { "ok" } else { "failed" },
                    elapsed.as_millis()
                );
            }
            Progress::Compaction { turns, upto_turn } => {
                eprintln!(
                    "[context] the model summarised {turns} earlier turn(s) (through turn {upto_turn}) to fit its window"
                );
            }
        }
    }

    /// End the answer's line, if it did not end with one.
    pub fn end_line(&mut self) {
        if !self.at_line_start {
            println!();
            self.at_line_start = true;
        }
    }
}

/// Everything a session needs: the runtime (provider, tools, store, workspace) for one
/// agent. Shared by `run` and `chat`.
pub fn build(
    cfg: &AgentConfig,
    base: Option<&Path>,
    ws_dir: &Path,
    agent_name: &str,
    store: Store,
) -> Result<(Runtime, AgentProfile), Failure> {
    let workspace = Workspace::open(ws_dir)
        .map_err(|e| Failure::new(exit::USAGE, format!("workspace {}: {e}", ws_dir.display())))?;
    let mut agent = profile(cfg, agent_name, base)?;
    let def = cfg.agents.get(agent_name);
    let provider_name = def
        .and_then(|d| d.selection.provider.clone())
        .unwrap_or_else(|| cfg.selection.provider.clone());
    let model = def
        .and_then(|d| d.selection.model.clone())
        .unwrap_or_else(|| cfg.selection.model.clone());
    // Agents a delegate_to_agent call may use: children run on this runtime's model.
    let mut agents = std::collections::BTreeMap::new();
    for (name, d) in &cfg.agents {
        let same = d
            .selection
            .provider
            .as_ref()
            .is_none_or(|p| p == &provider_name)
            && d.selection.model.as_ref().is_none_or(|m| m == &model);
        let entry = if same {
            Ok(profile(cfg, name, base)?)
        } else {
            Err(format!(
                "agent `{name}` uses another provider or model; delegated tasks run on this session's model \
                 ({provider_name} / {model}) for now: run it directly with --agent {name}"
            ))
        };
        agents.insert(name.clone(), entry);
    }
    let may_delegate = agent
        .tools
        .as_ref()
        .is_none_or(|t| t.iter().any(|n| n == "delegate_to_agent"));
    if may_delegate && !agents.is_empty() {
        let names: Vec<&str> = agents
            .keys()
            .filter(|n| n.as_str() != agent_name)
            .map(String::as_str)
            .collect();
        if !names.is_empty() {
            agent.system_prompt.push_str(&format!(
                "\n\nSpecialist agents you can hand self-contained tasks to with delegate_to_agent: {}.",
                names.join(", ")
            ));
        }
    }
    let entry = providers::entry(cfg, &provider_name)?;
    let info = providers::model_info(cfg, entry, &model)?;
    let spec = providers::spec(cfg, &provider_name)?;
    let secrets: Vec<String> = spec.api_key.iter().cloned().collect();
    let host = Arc::new(tools::host(&cfg.components)?);
    let provider = host
        .load_provider(spec)
        .map_err(|e| Failure::new(exit::REFUSED, e.to_string()))?;
    let mut loaded_tools = Vec::new();
    for s in tools::specs(cfg, base)? {
        match host.load(&s) {
            Ok(t) => loaded_tools.push(Arc::new(t)),
            Err(e) => eprintln!("[warning] tool not loaded: {e}"),
        }
    }
    let runtime = Runtime {
        host,
        provider,
        model,
        model_info: info.cloned(),
        max_output_tokens: providers::max_output(entry, info),
        tools: loaded_tools,
        scrubber: Scrubber::new(Some(workspace.host_root()), secrets),
        workspace: Arc::new(workspace),
        store,
        safety_buffer_tokens: cfg.runtime.context_budget.safety_buffer_tokens,
        fallback_context_tokens: cfg.runtime.context_budget.fallback_max_context_tokens,
        compaction: Compaction {
            trigger_ratio: cfg.runtime.context_budget.trigger_ratio,
            target_ratio: cfg.runtime.summarization.target_ratio,
            min_turns: cfg.runtime.summarization.min_turns,
        },
        agents,
    };
    Ok((runtime, agent))
}

pub fn open_store(ws_dir: &Path) -> Result<Store, Failure> {
    Store::open(&ws_dir.join(".oxydra").join("store.db"))
        .map_err(|e| Failure::new(exit::USAGE, e.to_string()))
}

pub fn new_session(store: &Store, agent: &str) -> Result<String, Failure> {
    let id = session_id();
    store
        .create_session(&id, agent)
        .map_err(|e| Failure::new(exit::TOOL_ERROR, e.to_string()))?;
    Ok(id)
}

/// Check a session exists, mark an interrupted turn, and return its agent.
pub fn resume_session(store: &Store, id: &str) -> Result<String, Failure> {
    let stored = store.session_agent(id).map_err(|e| match e {
        StoreError::NoSession(_) => Failure::new(exit::USAGE, e.to_string()),
        other => Failure::new(exit::TOOL_ERROR, other.to_string()),
    })?;
    // One process runs a session's turns; a turn still marked running was cut off
    // (kill -9, power loss): its messages stay, the turn is marked failed.
    let interrupted = store
        .mark_interrupted(id)
        .map_err(|e| Failure::new(exit::TOOL_ERROR, e.to_string()))?;
    if interrupted > 0 {
        eprintln!("[session] {id}: the previous turn was interrupted; continuing with its history");
    }
    Ok(stored)
}

/// What `run` and `chat` share: the workspace, its store, the session to use (resumed
/// or new) and a runtime for that session's agent.
pub struct Opened {
    pub runtime: Arc<Runtime>,
    pub agent: AgentProfile,
    pub agent_name: String,
    pub session: String,
}

pub fn open(
    sources: &Sources,
    workspace: Option<PathBuf>,
    user: Option<String>,
    session: Option<&str>,
    agent: Option<String>,
) -> Result<Opened, Failure> {
    let loaded = config::load_agent(sources)?;
    let ws_dir = match workspace {
        Some(d) => d,
        None => crate::commands::tool::default_workspace(sources, user)?,
    };
    std::fs::create_dir_all(&ws_dir)
        .map_err(|e| Failure::new(exit::USAGE, format!("workspace {}: {e}", ws_dir.display())))?;
    let store = open_store(&ws_dir)?;
    let (session, agent_name) = match session {
        Some(id) => {
            let stored = resume_session(&store, id)?;
            (id.to_string(), agent.unwrap_or(stored))
        }
        None => {
            let agent = agent.unwrap_or_else(|| "default".into());
            (new_session(&store, &agent)?, agent)
        }
    };
    let (runtime, agent) = build(
        &loaded.value,
        loaded.base_dir.as_deref(),
        &ws_dir,
        &agent_name,
        store,
    )?;
    Ok(Opened {
        runtime: Arc::new(runtime),
        agent,
        agent_name,
        session,
    })
}

pub fn run(args: RunArgs, sources: &Sources) -> Result<(), Failure> {
    let Opened {
        runtime,
        agent,
        agent_name,
        session,
    } = open(
        sources,
        args.workspace,
        args.user,
        args.session.as_deref(),
        args.agent,
    )?;
    eprintln!("[session] {session} (agent {agent_name})");
    let mut printer = Printer::new();
    let result = runtime.run_turn(&session, &agent, &args.prompt, &mut |p| printer.show(p));
    printer.end_line();
    match result {
        Ok(o) => {
            let cost = o.cost.map(|c| format!(", ${c:.6}")).unwrap_or_default();
            eprintln!(
                "[done] {} model call(s), {} input + {} output tokens{cost}; continue with --session {session}",
                o.steps, o.usage.input_tokens, o.usage.output_tokens
            );
            Ok(())
        }
        Err(e) => Err(Failure::new(exit::TOOL_ERROR, e.to_string())),
    }
}
