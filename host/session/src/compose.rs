//! The composition root: layered config → a running system (engine, tools, providers,
//! agents and their budgets). Every front end — `run`, `chat`, the gateway, channels, the
//! scheduler — gets its runtimes from here, never by assembling them itself.

use crate::config::{self, AgentConfig, Sources};
use crate::error::SetupError;
use crate::{providers, tools};
use oxydra_agent::scrub::Scrubber;
use oxydra_agent::turn::{AgentProfile, BudgetKeys, Budgets, Compaction, Runtime};
use oxydra_runtime::{ComponentHost, LoadedTool, Workspace};
use oxydra_store::Store;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub const DEFAULT_PROMPT: &str = "You are Oxydra, an agent working in a sandboxed workspace. Files live under \
/shared (kept) and /tmp (scratch); /vault holds secrets and is reachable only through vault_copyto. \
Use the tools to look before you answer and to act; answer concisely.";

/// The store of a workspace: `<workspace>/.oxydra/store.db`.
pub fn store_path(ws_dir: &Path) -> PathBuf {
    ws_dir.join(".oxydra").join("store.db")
}

/// Whether a user id is usable as a directory name.
pub fn valid_user_id(user: &str) -> bool {
    !user.is_empty()
        && user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// `<workspace_root>/<user>` from runner.toml; the user defaults to the only configured
/// one, else `local`.
pub fn default_workspace(sources: &Sources, user: Option<String>) -> Result<PathBuf, SetupError> {
    let runner = config::load_runner(sources)?.value;
    Ok(pick_user(&runner, user, false)?.1)
}

/// The user a long-running role (`serve`, `tui`) acts for and their workspace: `user`,
/// else the only user in runner.toml, else `local`. A user runner.toml does not list is
/// refused when it lists any.
pub fn user_and_workspace(
    sources: &Sources,
    user: Option<String>,
) -> Result<(String, PathBuf), SetupError> {
    let runner = config::load_runner(sources)?.value;
    pick_user(&runner, user, true)
}

/// `user`'s own file (`users/<id>.toml` beside runner.toml, or the `config_path`
/// runner.toml names); the defaults when there is none.
pub fn user_config(sources: &Sources, user: &str) -> Result<config::UserConfig, SetupError> {
    let runner = config::load_runner(sources)?;
    let Some(base) = runner.base_dir.clone() else {
        return Ok(config::UserConfig::default());
    };
    let configured = runner
        .value
        .users
        .get(user)
        .and_then(|u| u.config_path.clone());
    let path = match &configured {
        Some(p) if p.is_relative() => base.join(p),
        Some(p) => p.clone(),
        None => base.join("users").join(format!("{user}.toml")),
    };
    if configured.is_none() && !path.exists() {
        return Ok(config::UserConfig::default());
    }
    Ok(config::load_user(&path)?)
}

fn pick_user(
    runner: &config::RunnerConfig,
    user: Option<String>,
    listed_only: bool,
) -> Result<(String, PathBuf), SetupError> {
    if listed_only
        && let Some(u) = &user
        && !runner.users.is_empty()
        && !runner.users.contains_key(u)
    {
        return Err(SetupError::Key {
            key: "users".into(),
            message: format!(
                "no user `{u}` in runner.toml [users] (configured: {})",
                runner.users.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        });
    }
    let user = match user {
        Some(u) => u,
        None if runner.users.len() == 1 => runner.users.keys().next().cloned().unwrap_or_default(),
        None => "local".to_string(),
    };
    if !valid_user_id(&user) {
        return Err(SetupError::Key {
            key: "user".into(),
            message: format!("user id `{user}`: use letters, digits, `-` and `_`"),
        });
    }
    let ws = runner.workspace_root.join(&user);
    Ok((user, ws))
}

/// The running system for one configuration: the component engine and the loaded tools
/// are shared by every user and session; providers are loaded once per provider name.
/// What a runtime reaches over the network ([`System::egress`]).
#[derive(Debug, Default, Clone)]
pub struct Egress {
    /// The providers the agents select.
    pub providers: Vec<String>,
    /// `(host, port)` of each provider origin.
    pub origins: Vec<(String, u16)>,
    /// The environment variables that hold the providers' keys.
    pub key_envs: Vec<String>,
    /// The managed local model this system started (`http://127.0.0.1:PORT`).
    pub local_model_url: Option<String>,
    /// The web tools' policy, when web tools are loaded.
    pub web: Option<oxydra_runtime::capabilities::web::policy::Policy>,
}

pub struct System {
    pub config: AgentConfig,
    /// Where relative paths in the config resolve (the directory of the last agent.toml).
    pub base_dir: Option<PathBuf>,
    pub host: Arc<ComponentHost>,
    pub tools: Vec<Arc<LoadedTool>>,
    /// Tools that were configured but could not be loaded, with the reason.
    pub warnings: Vec<String>,
    /// The managed local model's server, started when a runtime first needs it and
    /// shared by every session of this system; stopped when the system is dropped.
    local: std::sync::Mutex<Option<Arc<crate::local::LocalServer>>>,
    /// The MCP servers, started for the workspace of the first runtime that needs them.
    mcp: std::sync::Mutex<Option<(PathBuf, Arc<oxydra_mcp::Manager>)>>,
}

impl System {
    /// Load the layered config and start the engine and the tools.
    pub fn load(sources: &Sources) -> Result<System, SetupError> {
        let loaded = config::load_agent(sources)?;
        System::new(loaded.value, loaded.base_dir)
    }

    pub fn new(config: AgentConfig, base_dir: Option<PathBuf>) -> Result<System, SetupError> {
        let host = Arc::new(tools::host(&config.components)?);
        let mut loaded = Vec::new();
        let mut warnings = Vec::new();
        for s in tools::specs(&config, base_dir.as_deref())? {
            match host.load(&s) {
                Ok(t) => loaded.push(Arc::new(t)),
                Err(e) => warnings.push(format!("tool not loaded: {e}")),
            }
        }
        // Scheduler tools only with the scheduler: without it nothing would run their jobs.
        if !config.scheduler.enabled {
            loaded.retain(|t: &Arc<LoadedTool>| {
                !t.descriptor
                    .profiles
                    .contains(&oxydra_runtime::Profile::Scheduler)
            });
        }
        // Memory tools only with memory: otherwise there is nothing for them to reach.
        if !config.memory.enabled {
            loaded.retain(|t: &Arc<LoadedTool>| {
                !t.descriptor
                    .profiles
                    .contains(&oxydra_runtime::Profile::Memory)
            });
        }
        // Shell tools only with a shell sidecar that answers (the container tier's):
        // outside one no command may run, and the model is not offered what would fail.
        let is_shell = |t: &Arc<LoadedTool>| {
            t.descriptor
                .profiles
                .contains(&oxydra_runtime::Profile::Shell)
        };
        if loaded.iter().any(is_shell) {
            match oxydra_runtime::capabilities::shell::available() {
                Ok(()) => {}
                Err(why) => {
                    if oxydra_runtime::capabilities::shell::sidecar().is_some() {
                        warnings.push(format!("shell tools not registered: {why}"));
                    }
                    loaded.retain(|t| !is_shell(t));
                }
            }
        }
        Ok(System {
            config,
            base_dir,
            host,
            tools: loaded,
            warnings,
            local: std::sync::Mutex::new(None),
            mcp: std::sync::Mutex::new(None),
        })
    }

    /// Names of the configured agents, `default` first.
    pub fn agent_names(&self) -> Vec<String> {
        std::iter::once("default".to_string())
            .chain(
                self.config
                    .agents
                    .keys()
                    .filter(|n| *n != "default")
                    .cloned(),
            )
            .collect()
    }

    /// Whether `name` is an agent this system can run.
    pub fn has_agent(&self, name: &str) -> bool {
        name == "default" || self.config.agents.contains_key(name)
    }

    /// The agent's profile: prompt, tool allowlist and budgets.
    pub fn profile(&self, name: &str) -> Result<AgentProfile, SetupError> {
        let cfg = &self.config;
        let def = if name == "default" {
            cfg.agents.get(name)
        } else {
            Some(
                cfg.agents
                    .get(name)
                    .ok_or_else(|| SetupError::UnknownAgent {
                        name: name.to_string(),
                        known: self.agent_names(),
                    })?,
            )
        };
        let system_prompt = match def {
            Some(d) if d.system_prompt.is_some() => d.system_prompt.clone().unwrap_or_default(),
            Some(d) if d.system_prompt_file.is_some() => {
                let file = d.system_prompt_file.clone().unwrap_or_default();
                let path = match &self.base_dir {
                    Some(b) if file.is_relative() => b.join(&file),
                    _ => file,
                };
                std::fs::read_to_string(&path).map_err(|e| SetupError::Key {
                    key: format!("agents.{name}.system_prompt_file"),
                    message: format!("{}: {e}", path.display()),
                })?
            }
            _ => DEFAULT_PROMPT.to_string(),
        };
        // Each budget names the key that set it, so a stop says what to raise.
        let mut keys = BudgetKeys::default();
        if def.is_some_and(|d| d.max_turns.is_some()) {
            keys.max_steps = format!("agents.{name}.max_turns");
        }
        if def.is_some_and(|d| d.max_cost.is_some()) {
            keys.max_cost = format!("agents.{name}.max_cost");
        }
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
                keys,
            },
        })
    }

    /// The provider and model an agent runs on.
    pub fn selection(&self, agent: &str) -> (String, String) {
        let def = self.config.agents.get(agent);
        let provider = def
            .and_then(|d| d.selection.provider.clone())
            .unwrap_or_else(|| self.config.selection.provider.clone());
        let model = def
            .and_then(|d| d.selection.model.clone())
            .unwrap_or_else(|| self.config.selection.model.clone());
        (provider, model)
    }

    /// What a runtime of this system reaches over the network, for the egress proxy a
    /// runner puts in front of a confined runtime: the origin of every provider an agent
    /// selects (its base URL, else the adapter's default; a managed local model is
    /// started here, by the runner), and the web tools' policy when web tools are loaded.
    pub fn egress(&self) -> Result<Egress, SetupError> {
        let mut out = Egress::default();
        for agent in self.agent_names() {
            let (provider, _) = self.selection(&agent);
            if out.providers.contains(&provider) {
                continue;
            }
            let loaded = self.provider(&provider)?;
            let o = oxydra_runtime::capabilities::http::Origin::parse(loaded.base_url()).map_err(
                |message| SetupError::Key {
                    key: format!("providers.registry.{provider}.base_url"),
                    message,
                },
            )?;
            if !out.origins.contains(&(o.host.clone(), o.port)) {
                out.origins.push((o.host, o.port));
            }
            if let Some(env) = loaded.spec.api_key_env.clone()
                && !out.key_envs.contains(&env)
            {
                out.key_envs.push(env);
            }
            out.providers.push(provider);
        }
        out.local_model_url = self
            .local
            .lock()
            .ok()
            .and_then(|l| l.as_ref().map(|s| s.url.clone()));
        out.web = self.tools.iter().find_map(|t| t.web_policy().cloned());
        // MCP: an HTTP server's origin; the host variables a server's config names.
        for (name, s) in self.config.mcp.servers.iter().filter(|(_, s)| s.enabled) {
            if let Some(url) = &s.url {
                let o =
                    oxydra_runtime::capabilities::http::Origin::parse(url).map_err(|message| {
                        SetupError::Key {
                            key: format!("mcp.servers.{name}.url"),
                            message,
                        }
                    })?;
                if !out.origins.contains(&(o.host.clone(), o.port)) {
                    out.origins.push((o.host, o.port));
                }
            }
            for var in s.env_from.values().chain(s.headers_from_env.values()) {
                if !out.key_envs.contains(var) {
                    out.key_envs.push(var.clone());
                }
            }
        }
        Ok(out)
    }

    /// The MCP servers for `ws_dir` (started on first use; `None` when none is
    /// configured). One set per system: a second workspace shares the first's.
    pub fn mcp(&self, ws_dir: &Path) -> Result<Option<Arc<oxydra_mcp::Manager>>, SetupError> {
        if !crate::mcp::configured(&self.config) {
            return Ok(None);
        }
        let mut slot = self.mcp.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((ws, m)) = slot.as_ref() {
            if ws != ws_dir {
                tracing::warn!(
                    first = %ws.display(),
                    now = %ws_dir.display(),
                    "MCP servers run for the first workspace of this process"
                );
            }
            return Ok(Some(m.clone()));
        }
        let Some(m) = crate::mcp::start(&self.config, ws_dir, None)? else {
            return Ok(None);
        };
        let m = Arc::new(m);
        *slot = Some((ws_dir.to_path_buf(), m.clone()));
        Ok(Some(m))
    }

    /// The managed local model's server this system started, if any.
    pub fn local_server(&self) -> Option<Arc<crate::local::LocalServer>> {
        self.local.lock().ok().and_then(|l| l.clone())
    }

    /// Load a provider component (a cached compile: well under a millisecond warm).
    fn provider(&self, name: &str) -> Result<oxydra_runtime::llm::LoadedProvider, SetupError> {
        let server = providers::managed_server(&self.config, name, &mut |line| {
            eprintln!("[local model] {line}")
        })?;
        if let (Some(s), Ok(mut slot)) = (&server, self.local.lock()) {
            *slot = Some(s.clone());
        }
        providers::load(
            &self.host,
            &self.config,
            self.base_dir.as_deref(),
            name,
            server.as_deref(),
        )
    }

    /// A runtime for `agent_name` over one workspace and its store, with the agents a
    /// `delegate_to_agent` call may hand work to.
    pub fn runtime(
        &self,
        ws_dir: &Path,
        agent_name: &str,
        store: Store,
    ) -> Result<(Runtime, AgentProfile), SetupError> {
        let cfg = &self.config;
        let workspace = Workspace::open(ws_dir).map_err(|e| SetupError::Workspace {
            path: ws_dir.display().to_string(),
            message: e.to_string(),
        })?;
        let mut agent = self.profile(agent_name)?;
        let (provider_name, model) = self.selection(agent_name);
        // Agents a delegate_to_agent call may use: children run on this runtime's model.
        let mut agents = BTreeMap::new();
        for (name, d) in &cfg.agents {
            let same = d
                .selection
                .provider
                .as_ref()
                .is_none_or(|p| p == &provider_name)
                && d.selection.model.as_ref().is_none_or(|m| m == &model);
            let entry = if same {
                Ok(self.profile(name)?)
            } else {
                Err(format!(
                    "agent `{name}` uses another provider or model; delegated tasks run on this session's model \
                     ({provider_name} / {model}) for now: run agent `{name}` directly instead"
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
        if info.is_none() && agent.budgets.max_cost.is_some() {
            // Without prices the spend is unknown: a money budget would silently never stop.
            return Err(SetupError::Key {
                key: agent.budgets.keys.max_cost.clone(),
                message: format!(
                    "model `{model}` has no prices in the catalog, so a money budget cannot be enforced; \
                     remove the key, or use a model the catalog prices"
                ),
            });
        }
        let provider = self.provider(&provider_name)?;
        let mut secrets: Vec<String> = provider.spec.api_key.iter().cloned().collect();
        // What MCP servers get from the host's environment (tokens, keys) is scrubbed
        // exactly, whatever shape it has, should a server echo it.
        for s in cfg.mcp.servers.values().filter(|s| s.enabled) {
            for var in s.env_from.values().chain(s.headers_from_env.values()) {
                if let Ok(v) = std::env::var(var)
                    && v.len() >= 8
                {
                    secrets.push(v);
                }
            }
        }
        // `max_context_tokens` overrides the catalog's window (a local server's is smaller).
        let mut model_info = info.cloned();
        if let (Some(m), Some(n)) = (model_info.as_mut(), entry.max_context_tokens) {
            m.context_window = n;
        }
        let runtime = Runtime {
            host: self.host.clone(),
            provider,
            model,
            model_info,
            max_output_tokens: providers::max_output(entry, info),
            request_options: providers::request_options(entry),
            tools: self.tools.clone(),
            tool_sources: self
                .mcp(ws_dir)?
                .into_iter()
                .map(|m| m as Arc<dyn oxydra_runtime::ToolSource>)
                .collect(),
            scrubber: Scrubber::new(Some(workspace.host_root()), secrets),
            workspace: Arc::new(workspace),
            store,
            safety_buffer_tokens: cfg.runtime.context_budget.safety_buffer_tokens,
            fallback_context_tokens: entry
                .max_context_tokens
                .unwrap_or(cfg.runtime.context_budget.fallback_max_context_tokens),
            compaction: Compaction {
                trigger_ratio: cfg.runtime.context_budget.trigger_ratio,
                target_ratio: cfg.runtime.summarization.target_ratio,
                min_turns: cfg.runtime.summarization.min_turns,
                flush_to_memory: cfg.memory.enabled && cfg.memory.flush_before_compaction,
            },
            agents,
            max_delegation_depth: cfg.runtime.max_delegation_depth,
            delegation_timeout: Duration::from_secs(cfg.runtime.delegation_timeout_secs),
        };
        Ok((runtime, agent))
    }
}
