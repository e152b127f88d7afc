//! A pinned model catalog, compiled in (`catalog.json`): per model the context window,
//! max output, input modalities, tool and reasoning support, and prices per million
//! tokens. Prices are list prices as published by each provider (checked 2025); cached
//! input is the cache-read price. Usage turns into money with [`ModelInfo::cost`].

use oxydra_runtime::llm::types::Usage;
use serde::{Deserialize, Serialize};
use std::sync::OnceLock;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// US dollars per million input tokens (not cached).
    pub input: f64,
    pub output: f64,
    /// Per million input tokens read from the provider's prompt cache.
    pub cached: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelInfo {
    pub id: String,
    /// Catalog provider: `openai`, `anthropic` or `google`.
    pub provider: String,
    pub context_window: u64,
    pub max_output: u64,
    pub input_modalities: Vec<String>,
    pub tool_call: bool,
    pub reasoning: bool,
    pub price: Price,
}

impl ModelInfo {
    /// What `usage` costs, in US dollars. Cached tokens are part of the input count and
    /// are charged at the cache-read price; reasoning tokens are part of the output.
    pub fn cost(&self, usage: &Usage) -> f64 {
        let cached = usage.cached_tokens.min(usage.input_tokens);
        let fresh = usage.input_tokens - cached;
        (fresh as f64 * self.price.input
            + cached as f64 * self.price.cached
            + usage.output_tokens as f64 * self.price.output)
            / 1_000_000.0
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    models: Vec<ModelInfo>,
}

#[derive(Debug)]
pub struct Catalog {
    models: Vec<ModelInfo>,
}

const PINNED: &str = include_str!("catalog.json");

/// The compiled-in catalog. Its JSON is checked by a test, so parsing cannot fail at run time.
pub fn pinned() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(|| Catalog {
        models: serde_json::from_str::<File>(PINNED)
            .map(|f| f.models)
            .unwrap_or_default(),
    })
}

/// The catalog provider for a `provider_type` of `[providers.registry]`.
pub fn catalog_provider(provider_type: &str) -> &'static str {
    match provider_type {
        "anthropic" => "anthropic",
        "gemini" => "google",
        _ => "openai",
    }
}

impl Catalog {
    pub fn get(&self, provider: &str, model: &str) -> Option<&ModelInfo> {
        self.models
            .iter()
            .find(|m| m.provider == provider && m.id == model)
    }

    pub fn models(&self, provider: Option<&str>) -> impl Iterator<Item = &ModelInfo> {
        self.models
            .iter()
            .filter(move |m| provider.is_none_or(|p| m.provider == p))
    }

    pub fn providers(&self) -> Vec<&str> {
        let mut p: Vec<&str> = self.models.iter().map(|m| m.provider.as_str()).collect();
        p.dedup();
        p
    }

    /// The model, or an error that says how to list the known ones.
    pub fn require(&self, provider: &str, model: &str) -> Result<&ModelInfo, String> {
        self.get(provider, model).ok_or_else(|| {
            format!(
                "unknown model `{model}` for catalog provider `{provider}`: `oxydra-host catalog show {provider}` lists the \
                 known models; for a model the catalog does not know (a local server, a new release) set \
                 catalog.skip_catalog_validation = true"
            )
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn the_pinned_catalog_parses_and_is_sane() {
        let file: File = serde_json::from_str(PINNED).expect("catalog.json is valid");
        assert!(file.models.len() >= 20);
        for m in &file.models {
            assert!(
                ["openai", "anthropic", "google", "local"].contains(&m.provider.as_str()),
                "{}",
                m.id
            );
            assert!(
                m.max_output > 0 && m.max_output <= m.context_window,
                "{}",
                m.id
            );
            assert!(
                m.price.output >= m.price.input && m.price.cached <= m.price.input,
                "{}",
                m.id
            );
        }
        assert_eq!(pinned().models(None).count(), file.models.len());
        assert_eq!(
            pinned().providers(),
            vec!["openai", "anthropic", "google", "local"]
        );
    }

    #[test]
    fn usage_becomes_money() {
        let m = pinned().get("openai", "gpt-4o-mini").unwrap();
        // 1M fresh input at $0.15 + 1M cached at $0.075 + 1M output at $0.60
        let u = Usage {
            input_tokens: 2_000_000,
            cached_tokens: 1_000_000,
            output_tokens: 1_000_000,
            reasoning_tokens: 0,
        };
        assert!((m.cost(&u) - 0.825).abs() < 1e-9, "{}", m.cost(&u));
        let err = pinned().require("openai", "gpt-9").unwrap_err();
        assert!(err.contains("oxydra-host catalog show openai"), "{err}");
    }
}
