//! The agent config the service-level tests share: provider `local` (OpenAI-compatible)
//! at a scripted server on 127.0.0.1, the bundled components of this build, and a
//! compile cache of the test's choosing. Included by path (`#[path]`) where needed.

use oxydra_session::config::AgentConfig;
use oxydra_session::config::agent::{ProviderEntry, ProviderType};
use std::path::PathBuf;

pub fn loopback_config(model_url: &str, cache_dir: PathBuf) -> AgentConfig {
    let mut cfg = AgentConfig::default();
    cfg.providers.registry.insert(
        "local".into(),
        ProviderEntry {
            provider_type: ProviderType::Openai,
            base_url: Some(format!("{model_url}/v1")),
            api_key_env: Some("OXYDRA_TEST_UNSET_KEY".into()),
            ..Default::default()
        },
    );
    cfg.selection.provider = "local".into();
    cfg.components.bundled_dir =
        Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/release/components"));
    cfg.components.cache_dir = Some(cache_dir);
    cfg
}
