//! `agent.toml`: what the agent runs with. Keys follow the product spec; every default is
//! written where it is defined.

use oxydra_runtime::{Limits, Profile};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

type KeyError = (String, String);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// Schema version of this file; major version 1.
    pub config_version: Option<String>,
    pub selection: Selection,
    pub providers: Providers,
    pub runtime: Runtime,
    pub reliability: Reliability,
    pub catalog: Catalog,
    pub memory: super::memory::MemoryConfig,
    pub scheduler: super::scheduler::SchedulerConfig,
    pub gateway: Gateway,
    pub agents: BTreeMap<String, AgentDef>,
    pub components: ComponentsConfig,
    /// `[tools.web]`, `[tools.web_fetch]`, `[tools.web_search]`.
    pub tools: super::web::ToolsConfig,
    /// `[mcp.servers.<name>]`: MCP servers whose tools the agents get.
    pub mcp: oxydra_mcp::McpConfig,
    /// What loading decided on the user's behalf (the local model when no key is set),
    /// for the front end to say once. Not a key.
    #[serde(skip)]
    pub notices: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Selection {
    /// A key of `[providers.registry]`.
    pub provider: String,
    pub model: String,
}

impl Default for Selection {
    fn default() -> Self {
        Selection {
            provider: "openai".into(),
            model: "gpt-4o-mini".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Providers {
    pub registry: BTreeMap<String, ProviderEntry>,
}

impl Default for Providers {
    /// `openai` and `anthropic`, keys from their usual environment variables.
    fn default() -> Self {
        let mut registry = BTreeMap::new();
        registry.insert(
            "openai".into(),
            ProviderEntry {
                provider_type: ProviderType::Openai,
                api_key_env: Some("OPENAI_API_KEY".into()),
                ..Default::default()
            },
        );
        registry.insert(
            "anthropic".into(),
            ProviderEntry {
                provider_type: ProviderType::Anthropic,
                api_key_env: Some("ANTHROPIC_API_KEY".into()),
                ..Default::default()
            },
        );
        registry.insert(
            "local".into(),
            ProviderEntry {
                provider_type: ProviderType::Openai,
                managed: true,
                catalog_provider: Some("local".into()),
                max_context_tokens: Some(crate::local::CONTEXT_TOKENS),
                ..Default::default()
            },
        );
        Providers { registry }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderType {
    #[default]
    Openai,
    OpenaiResponses,
    Anthropic,
    Gemini,
}

/// API keys are never written in config: `api_key_env` names the variable that holds one.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProviderEntry {
    pub provider_type: ProviderType,
    pub base_url: Option<String>,
    pub api_key_env: Option<String>,
    pub extra_headers: BTreeMap<String, String>,
    pub catalog_provider: Option<String>,
    pub max_input_tokens: Option<u64>,
    pub max_output_tokens: Option<u64>,
    pub max_context_tokens: Option<u64>,
    pub reasoning: Option<bool>,
    pub attachment: Option<bool>,
    pub input_modalities: Vec<String>,
    /// The host runs this provider's server itself: the local model
    /// (llama-server serving SmolLM2-135M-Instruct on 127.0.0.1). No `base_url`, no key.
    pub managed: bool,
    /// Turn tool calls the model writes as text (`<tool_call>{…}</tool_call>`, a fenced
    /// JSON block) into real ones: for small local models. On by default for `managed`.
    pub textual_tool_calls: Option<bool>,
    /// An installed `llm-provider` component (`oxydra-host component install …
    /// --grant llm-provider`) to use instead of the bundled adapter for `provider_type`,
    /// which still picks the catalog and the default key variable.
    pub component: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Runtime {
    pub turn_timeout_secs: u64,
    /// Model calls in one turn; at least 1.
    pub max_turns: u32,
    /// In money (US dollars), from the catalog's prices.
    pub max_cost: Option<f64>,
    /// Input + output tokens over one turn.
    pub max_tokens: Option<u64>,
    /// Wall-clock seconds for one turn.
    pub max_wall_secs: Option<u64>,
    /// How deep delegated tasks may nest: 1 lets the agent delegate and its children not.
    pub max_delegation_depth: u32,
    /// The deadline of one delegated task (`delegate_to_agent`), in seconds.
    pub delegation_timeout_secs: u64,
    pub context_budget: ContextBudget,
    pub summarization: Summarization,
}

impl Default for Runtime {
    fn default() -> Self {
        Runtime {
            turn_timeout_secs: 60,
            max_turns: 100,
            max_cost: None,
            max_tokens: None,
            max_wall_secs: None,
            max_delegation_depth: oxydra_agent::turn::DEFAULT_MAX_DELEGATION_DEPTH,
            delegation_timeout_secs: oxydra_agent::turn::DEFAULT_DELEGATION_TIMEOUT.as_secs(),
            context_budget: ContextBudget::default(),
            summarization: Summarization::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContextBudget {
    pub trigger_ratio: f64,
    pub safety_buffer_tokens: u64,
    pub fallback_max_context_tokens: u64,
}

impl Default for ContextBudget {
    fn default() -> Self {
        ContextBudget {
            trigger_ratio: 0.85,
            safety_buffer_tokens: 1024,
            fallback_max_context_tokens: 128_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Summarization {
    pub target_ratio: f64,
    pub min_turns: u32,
}

impl Default for Summarization {
    fn default() -> Self {
        Summarization {
            target_ratio: 0.5,
            min_turns: 6,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Reliability {
    pub max_attempts: u32,
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    /// Full jitter on every backoff.
    pub jitter: bool,
    /// Longest wait for a provider's first byte after a request (within the turn's
    /// deadline, whichever ends first).
    pub first_byte_timeout_secs: u64,
    /// Longest silence inside a streamed response.
    pub between_bytes_timeout_secs: u64,
    /// Most bytes accepted for one model call's response; past it the stream ends with an
    /// error (a server that ignores `max_output_tokens` cannot flood the host).
    pub max_response_bytes: u64,
}

impl Default for Reliability {
    fn default() -> Self {
        use oxydra_runtime::capabilities::http;
        Reliability {
            max_attempts: 3,
            backoff_base_ms: 250,
            backoff_max_ms: 2000,
            jitter: true,
            first_byte_timeout_secs: http::FIRST_BYTE_TIMEOUT.as_secs(),
            between_bytes_timeout_secs: http::BETWEEN_BYTES_TIMEOUT.as_secs(),
            max_response_bytes: http::MAX_RESPONSE_BYTES,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Catalog {
    pub skip_catalog_validation: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Gateway {
    pub max_sessions_per_user: u32,
    pub max_concurrent_turns_per_user: u32,
    pub session_idle_ttl_hours: u32,
    /// The largest text frame a gateway client may send.
    pub max_frame_bytes: u64,
    /// The largest prompt in a `send_turn`.
    pub max_prompt_bytes: u64,
}

impl Default for Gateway {
    fn default() -> Self {
        Gateway {
            max_sessions_per_user: 50,
            max_concurrent_turns_per_user: 10,
            session_idle_ttl_hours: 48,
            max_frame_bytes: 1024 * 1024,
            max_prompt_bytes: 256 * 1024,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentSelection {
    pub provider: Option<String>,
    pub model: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentDef {
    pub system_prompt: Option<String>,
    /// Its *contents* become the system prompt.
    pub system_prompt_file: Option<PathBuf>,
    pub selection: AgentSelection,
    /// Allowlist of tool names; absent means every tool.
    pub tools: Option<Vec<String>>,
    pub max_turns: Option<u32>,
    pub max_cost: Option<f64>,
}

/// `[components]`: where components live, and what each is granted.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ComponentsConfig {
    /// Compiled-component cache; default `$XDG_CACHE_HOME/oxydra/components`.
    pub cache_dir: Option<PathBuf>,
    /// Bundled components; default `components/` beside the binary.
    pub bundled_dir: Option<PathBuf>,
    /// Defaults for every tool (built-in defaults: see `oxydra_runtime::limits`).
    pub limits: Limits,
    pub tools: BTreeMap<String, ComponentTool>,
    /// Signatures required of components installed from a registry.
    pub trust: Trust,
    /// Per-registry settings, keyed by `HOST[:PORT]` as written in `oci://` references.
    pub registries: BTreeMap<String, RegistryEntry>,
}

/// `[components.trust]`: which keys vouch for installed components, and what happens
/// to one no key signed.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Trust {
    /// `warn` by default: an unsigned component installs with a warning; `require`
    /// refuses it (at install, and at load if it was installed unverified); `off` does
    /// not look for signatures.
    pub mode: TrustMode,
    /// PEM public keys (cosign's `cosign.pub` format, ECDSA P-256); relative paths
    /// resolve against the config file's directory.
    pub keys: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrustMode {
    Require,
    #[default]
    Warn,
    Off,
}

impl TrustMode {
    pub fn name(self) -> &'static str {
        match self {
            TrustMode::Require => "require",
            TrustMode::Warn => "warn",
            TrustMode::Off => "off",
        }
    }
}

/// `[components.registries."HOST[:PORT]"]`. Credentials are never written in config:
/// the `*_env` keys name the variables that hold them.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryEntry {
    /// Plain http to this registry (default: only loopback registries are reached
    /// without TLS).
    pub insecure: bool,
    /// PEM CA certificates trusted for this registry (a private or self-signed CA);
    /// setting it makes a loopback registry https too.
    pub ca_file: Option<PathBuf>,
    /// Basic credentials (also used to obtain a bearer token from the registry's token
    /// service).
    pub username_env: Option<String>,
    pub password_env: Option<String>,
    /// A bearer token sent as is.
    pub token_env: Option<String>,
}

/// One tool's entry: a third-party component (`path` + `grant`), or overrides for a
/// bundled one.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ComponentTool {
    pub enabled: bool,
    /// A component file; required for tools that are not bundled.
    pub path: Option<PathBuf>,
    /// The profile granted to it. A component importing more is refused at load.
    pub grant: Option<Profile>,
    pub limits: LimitOverrides,
}

impl Default for ComponentTool {
    fn default() -> Self {
        ComponentTool {
            enabled: true,
            path: None,
            grant: None,
            limits: LimitOverrides::default(),
        }
    }
}

/// Per-tool limits; unset fields come from `[components.limits]`.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitOverrides {
    pub memory_mib: Option<u64>,
    pub deadline_ms: Option<u64>,
    pub table_elements: Option<usize>,
    pub instances: Option<usize>,
    pub tables: Option<usize>,
    pub memories: Option<usize>,
    pub max_output_bytes: Option<usize>,
    pub log_bytes: Option<usize>,
}

impl ComponentsConfig {
    /// Global limits with a tool's overrides applied.
    pub fn limits_for(&self, tool: &str) -> Limits {
        let mut l = self.limits;
        if let Some(o) = self.tools.get(tool).map(|t| t.limits) {
            l.memory_mib = o.memory_mib.unwrap_or(l.memory_mib);
            l.deadline_ms = o.deadline_ms.unwrap_or(l.deadline_ms);
            l.table_elements = o.table_elements.unwrap_or(l.table_elements);
            l.instances = o.instances.unwrap_or(l.instances);
            l.tables = o.tables.unwrap_or(l.tables);
            l.memories = o.memories.unwrap_or(l.memories);
            l.max_output_bytes = o.max_output_bytes.unwrap_or(l.max_output_bytes);
            l.log_bytes = o.log_bytes.unwrap_or(l.log_bytes);
        }
        l
    }

    /// The largest memory limit any tool gets (sizes the engine's pool).
    pub fn max_memory_mib(&self) -> u64 {
        self.tools
            .keys()
            .map(|t| self.limits_for(t).memory_mib)
            .chain([self.limits.memory_mib])
            .max()
            .unwrap_or(64)
    }
}

/// A money budget: a finite positive amount (`nan` or `inf` would disable the limit).
fn money(key: &str, v: Option<f64>) -> Result<(), KeyError> {
    match v {
        Some(c) if !(c.is_finite() && c > 0.0) => Err((
            key.into(),
            format!("must be a positive amount of money (e.g. 0.50), got {c}"),
        )),
        _ => Ok(()),
    }
}

fn ratio(key: &str, v: f64) -> Result<(), KeyError> {
    if v > 0.0 && v < 1.0 {
        Ok(())
    } else {
        Err((
            key.into(),
            format!("must be between 0 and 1 (exclusive), got {v}"),
        ))
    }
}

impl AgentConfig {
    /// Every model named in the config must be in the catalog, unless validation is skipped.
    fn check_models(&self) -> Result<(), KeyError> {
        if self.catalog.skip_catalog_validation {
            return Ok(());
        }
        let check = |key: String, provider: &str, model: &str| -> Result<(), KeyError> {
            let Some(entry) = self.providers.registry.get(provider) else {
                return Err((
                    key,
                    format!("provider `{provider}` is not in [providers.registry]"),
                ));
            };
            let catalog_provider = entry.catalog_provider.clone().unwrap_or_else(|| {
                oxydra_agent::catalog::catalog_provider(crate::providers::type_name(
                    entry.provider_type,
                ))
                .into()
            });
            oxydra_agent::catalog::pinned()
                .require(&catalog_provider, model)
                .map(|_| ())
                .map_err(|m| (key, m))
        };
        check(
            "selection.model".into(),
            &self.selection.provider,
            &self.selection.model,
        )?;
        for (name, a) in &self.agents {
            if a.selection.provider.is_some() || a.selection.model.is_some() {
                let provider = a
                    .selection
                    .provider
                    .as_deref()
                    .unwrap_or(&self.selection.provider);
                let model = a
                    .selection
                    .model
                    .as_deref()
                    .unwrap_or(&self.selection.model);
                check(format!("agents.{name}.selection"), provider, model)?;
            }
        }
        Ok(())
    }

    /// Checks that need more than one key; the error names the key.
    pub fn validate(&self) -> Result<(), KeyError> {
        if let Some(v) = &self.config_version
            && !v.starts_with("1.")
            && v != "1"
        {
            return Err((
                "config_version".into(),
                format!("this Oxydra reads config version 1.x, got {v}"),
            ));
        }
        if !self
            .providers
            .registry
            .contains_key(&self.selection.provider)
        {
            let known: Vec<&str> = self.providers.registry.keys().map(String::as_str).collect();
            return Err((
                "selection.provider".into(),
                format!(
                    "`{}` is not in [providers.registry] (configured: {}); add [providers.registry.{}] or pick one of those",
                    self.selection.provider,
                    known.join(", "),
                    self.selection.provider
                ),
            ));
        }
        for (name, p) in &self.providers.registry {
            if let Some(url) = &p.base_url
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                return Err((
                    format!("providers.registry.{name}.base_url"),
                    format!("`{url}` is not an http(s) URL"),
                ));
            }
        }
        self.check_models()?;
        ratio(
            "runtime.context_budget.trigger_ratio",
            self.runtime.context_budget.trigger_ratio,
        )?;
        ratio(
            "runtime.summarization.target_ratio",
            self.runtime.summarization.target_ratio,
        )?;
        money("runtime.max_cost", self.runtime.max_cost)?;
        self.tools.validate()?;
        self.mcp.validate()?;
        self.scheduler.validate()?;
        self.memory.validate()?;
        for (name, p) in &self.providers.registry {
            let unread = [
                ("max_input_tokens", p.max_input_tokens.is_some()),
                ("reasoning", p.reasoning.is_some()),
                ("attachment", p.attachment.is_some()),
                ("input_modalities", !p.input_modalities.is_empty()),
            ];
            if let Some((key, _)) = unread.iter().find(|(_, set)| *set) {
                return Err((
                    format!("providers.registry.{name}.{key}"),
                    "not supported yet; remove the key".into(),
                ));
            }
            if let Some(c) = &p.component
                && (c.trim().is_empty() || p.managed)
            {
                return Err((
                    format!("providers.registry.{name}.component"),
                    "name an installed llm-provider component (`oxydra-host component list`); a managed provider uses the bundled adapter".into(),
                ));
            }
            if p.managed && (p.base_url.is_some() || p.provider_type != ProviderType::Openai) {
                return Err((
                    format!("providers.registry.{name}.managed"),
                    "a managed provider is the host's local model: it takes provider_type = \"openai\" and no base_url (for your own server, set base_url and leave managed out)".into(),
                ));
            }
            if p.max_context_tokens == Some(0) || p.max_output_tokens == Some(0) {
                return Err((
                    format!("providers.registry.{name}"),
                    "max_context_tokens and max_output_tokens must be at least 1".into(),
                ));
            }
        }
        if self.runtime.max_turns == 0 {
            return Err((
                "runtime.max_turns".into(),
                "must be at least 1 (model calls per turn)".into(),
            ));
        }
        if self.runtime.delegation_timeout_secs == 0 {
            return Err((
                "runtime.delegation_timeout_secs".into(),
                "must be at least 1".into(),
            ));
        }
        if self.runtime.turn_timeout_secs == 0 {
            return Err((
                "runtime.turn_timeout_secs".into(),
                "must be at least 1".into(),
            ));
        }
        let g = &self.gateway;
        for (key, v) in [
            ("gateway.max_sessions_per_user", g.max_sessions_per_user),
            (
                "gateway.max_concurrent_turns_per_user",
                g.max_concurrent_turns_per_user,
            ),
        ] {
            if v == 0 {
                return Err((key.into(), "must be at least 1".into()));
            }
        }
        if g.max_frame_bytes < 1024 {
            return Err((
                "gateway.max_frame_bytes".into(),
                "must be at least 1024".into(),
            ));
        }
        if g.max_prompt_bytes == 0 || g.max_prompt_bytes > g.max_frame_bytes {
            return Err((
                "gateway.max_prompt_bytes".into(),
                format!(
                    "must be between 1 and gateway.max_frame_bytes ({})",
                    g.max_frame_bytes
                ),
            ));
        }
        let r = &self.reliability;
        for (key, v) in [
            (
                "reliability.first_byte_timeout_secs",
                r.first_byte_timeout_secs,
            ),
            (
                "reliability.between_bytes_timeout_secs",
                r.between_bytes_timeout_secs,
            ),
            ("reliability.max_response_bytes", r.max_response_bytes),
        ] {
            if v == 0 {
                return Err((key.into(), "must be at least 1".into()));
            }
        }
        if self.reliability.max_attempts == 0 {
            return Err((
                "reliability.max_attempts".into(),
                "must be at least 1".into(),
            ));
        }
        for (name, a) in &self.agents {
            money(&format!("agents.{name}.max_cost"), a.max_cost)?;
            if a.max_turns == Some(0) {
                return Err((
                    format!("agents.{name}.max_turns"),
                    "must be at least 1 (model calls per turn)".into(),
                ));
            }
            if a.system_prompt.is_some() && a.system_prompt_file.is_some() {
                return Err((
                    format!("agents.{name}"),
                    "set system_prompt or system_prompt_file, not both".into(),
                ));
            }
        }
        self.components
            .limits
            .validate()
            .map_err(|m| ("components.limits".to_string(), m))?;
        for (name, t) in &self.components.tools {
            self.components
                .limits_for(name)
                .validate()
                .map_err(|m| (format!("components.tools.{name}.limits"), m))?;
            if t.path.is_some() && t.grant.is_none() {
                return Err((
                    format!("components.tools.{name}.grant"),
                    "a component from a file needs an explicit grant (file-read-only, file-read-write, ...)".into(),
                ));
            }
        }
        self.validate_components()
    }

    fn validate_components(&self) -> Result<(), KeyError> {
        let c = &self.components;
        if c.trust.mode == TrustMode::Require && c.trust.keys.is_empty() {
            return Err((
                "components.trust.keys".into(),
                "mode = \"require\" needs at least one public key (PEM, as cosign.pub); add keys = [\"path/to/cosign.pub\"] or set mode = \"warn\"".into(),
            ));
        }
        for (host, r) in &c.registries {
            let key = |k: &str| format!("components.registries.\"{host}\".{k}");
            let ok = !host.is_empty()
                && !host.contains('/')
                && host.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
                });
            if !ok {
                return Err((
                    format!("components.registries.\"{host}\""),
                    "the key is a registry HOST[:PORT], as written in oci://HOST[:PORT]/… references".into(),
                ));
            }
            if r.username_env.is_some() != r.password_env.is_some() {
                return Err((
                    key(if r.username_env.is_some() {
                        "password_env"
                    } else {
                        "username_env"
                    }),
                    "basic credentials need both username_env and password_env".into(),
                ));
            }
            if r.token_env.is_some() && r.username_env.is_some() {
                return Err((
                    key("token_env"),
                    "set token_env or username_env/password_env, not both".into(),
                ));
            }
            if r.insecure && r.ca_file.is_some() {
                return Err((
                    key("insecure"),
                    "insecure (plain http) and ca_file (TLS) contradict each other; keep one"
                        .into(),
                ));
            }
        }
        Ok(())
    }
}
