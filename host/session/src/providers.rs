//! From `[providers.registry.<name>]` to a loaded provider component: the bundled adapter
//! for its `provider_type`, the key read from `api_key_env` (by the host, for the host),
//! retries from `[reliability]`, and the model checked against the catalog.

use crate::config::AgentConfig;
use crate::config::agent::{ProviderEntry, ProviderType};
use crate::error::SetupError;
use crate::local::{self, LocalServer};
use crate::tools;
use oxydra_agent::catalog::{self, ModelInfo};
use oxydra_runtime::Limits;
use oxydra_runtime::bundle;
use oxydra_runtime::llm::{ProviderSpec, RetryPolicy};
use std::sync::Arc;
use std::time::Duration;

pub fn type_name(t: ProviderType) -> &'static str {
    match t {
        ProviderType::Openai => "openai",
        ProviderType::OpenaiResponses => "openai_responses",
        ProviderType::Anthropic => "anthropic",
        ProviderType::Gemini => "gemini",
    }
}

fn default_key_env(t: ProviderType) -> &'static str {
    match t {
        ProviderType::Openai | ProviderType::OpenaiResponses => "OPENAI_API_KEY",
        ProviderType::Anthropic => "ANTHROPIC_API_KEY",
        ProviderType::Gemini => "GEMINI_API_KEY",
    }
}

pub fn entry<'a>(cfg: &'a AgentConfig, name: &str) -> Result<&'a ProviderEntry, SetupError> {
    cfg.providers
        .registry
        .get(name)
        .ok_or_else(|| SetupError::UnknownProvider {
            name: name.to_string(),
            known: cfg.providers.registry.keys().cloned().collect(),
        })
}

/// The catalog entry for `model`, or `None` when validation is skipped and it is unknown.
pub fn model_info(
    cfg: &AgentConfig,
    entry: &ProviderEntry,
    model: &str,
) -> Result<Option<&'static ModelInfo>, SetupError> {
    let provider = entry
        .catalog_provider
        .clone()
        .unwrap_or_else(|| catalog::catalog_provider(type_name(entry.provider_type)).into());
    match catalog::pinned().require(&provider, model) {
        Ok(m) => Ok(Some(m)),
        Err(_) if cfg.catalog.skip_catalog_validation => Ok(None),
        Err(msg) => Err(SetupError::Model(msg)),
    }
}

/// The managed local model's server for a `managed` entry: the one this process
/// already runs, else a new one (prepared first on first use, reporting through
/// `progress`). `None` for every other provider.
pub fn managed_server(
    cfg: &AgentConfig,
    name: &str,
    progress: &mut dyn FnMut(&str),
) -> Result<Option<Arc<LocalServer>>, SetupError> {
    if !entry(cfg, name)?.managed {
        return Ok(None);
    }
    // Inside a tier the runner runs the model server (a confined runtime can neither
    // start one that listens nor reach it but through the egress proxy).
    if let Some(url) = std::env::var(local::URL_ENV).ok().filter(|u| !u.is_empty()) {
        return Ok(Some(Arc::new(LocalServer::external(url))));
    }
    local::shared(progress).map(Some)
}

/// Request options of a provider: textual tool calls for small local models.
pub fn request_options(entry: &ProviderEntry) -> Vec<(String, String)> {
    if entry.textual_tool_calls.unwrap_or(entry.managed) {
        vec![("oxydra.textual_tool_calls".into(), "true".into())]
    } else {
        Vec::new()
    }
}

/// The provider's spec; a managed provider's base URL is its running `server`.
pub fn spec(
    cfg: &AgentConfig,
    base_dir: Option<&std::path::Path>,
    name: &str,
    server: Option<&LocalServer>,
) -> Result<ProviderSpec, SetupError> {
    let e = entry(cfg, name)?;
    let (wasm, sha) = match &e.component {
        // An installed adapter: its digest is checked against the lock as it is read.
        Some(c) => {
            let wasm =
                crate::registry::installed_provider(cfg, base_dir, &crate::registry::store(), c)
                    .map_err(|err| {
                        SetupError::Refused(format!("providers.registry.{name}.component: {err}"))
                    })?;
            (wasm, None)
        }
        None => {
            let dir = tools::bundled_dir(&cfg.components);
            let manifest = bundle::read_manifest(&dir)?;
            let (wasm, sha) =
                bundle::provider_component(&dir, &manifest, type_name(e.provider_type))?;
            (wasm, Some(sha))
        }
    };
    let env = e
        .api_key_env
        .clone()
        .unwrap_or_else(|| default_key_env(e.provider_type).to_string());
    let api_key = std::env::var(&env).ok().filter(|k| !k.trim().is_empty());
    let r = &cfg.reliability;
    Ok(ProviderSpec {
        name: name.to_string(),
        wasm,
        expected_sha256: sha,
        base_url: server
            .map(|s| format!("{}/v1", s.url))
            .or_else(|| e.base_url.clone()),
        api_key,
        api_key_env: Some(env),
        extra_headers: e
            .extra_headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        limits: Limits {
            deadline_ms: cfg.runtime.turn_timeout_secs.max(1) * 1000,
            ..cfg.components.limits
        },
        retry: RetryPolicy {
            max_attempts: r.max_attempts,
            backoff_base: Duration::from_millis(r.backoff_base_ms),
            backoff_max: Duration::from_millis(r.backoff_max_ms),
            jitter: r.jitter,
            ..RetryPolicy::default()
        },
    })
}

/// `max_output_tokens` for a request: config, else the catalog. Never a constant.
pub fn max_output(entry: &ProviderEntry, model: Option<&ModelInfo>) -> Option<u32> {
    entry
        .max_output_tokens
        .or(model.map(|m| m.max_output))
        .map(|n| n.min(u64::from(u32::MAX)) as u32)
}

/// The HTTP bounds of provider calls from `[reliability]`.
pub fn http_limits(cfg: &AgentConfig) -> oxydra_runtime::llm::HttpLimits {
    let r = &cfg.reliability;
    oxydra_runtime::llm::HttpLimits {
        first_byte_timeout: Duration::from_secs(r.first_byte_timeout_secs),
        between_bytes_timeout: Duration::from_secs(r.between_bytes_timeout_secs),
        max_response_bytes: r.max_response_bytes,
        ..Default::default()
    }
}

/// Load the provider component `name` under its spec and `[reliability]` bounds.
pub fn load(
    host: &oxydra_runtime::ComponentHost,
    cfg: &AgentConfig,
    base_dir: Option<&std::path::Path>,
    name: &str,
    server: Option<&LocalServer>,
) -> Result<oxydra_runtime::llm::LoadedProvider, SetupError> {
    host.load_provider_with(spec(cfg, base_dir, name, server)?, http_limits(cfg))
        .map_err(|e| SetupError::Refused(e.to_string()))
}
