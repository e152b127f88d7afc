//! `runner.toml` and `users/<id>.toml`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

type KeyError = (String, String);

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    #[default]
    Container,
    MicroVm,
    Process,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunnerConfig {
    pub config_version: Option<String>,
    /// Per-user workspaces live at `<workspace_root>/<user>/{shared,tmp,vault}`.
    pub workspace_root: PathBuf,
    pub default_tier: Tier,
    pub guest_images: GuestImages,
    pub users: BTreeMap<String, UserRef>,
    pub web: Web,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        RunnerConfig {
            config_version: None,
            workspace_root: PathBuf::from("workspaces"),
            default_tier: Tier::Container,
            guest_images: GuestImages::default(),
            users: BTreeMap::new(),
            web: Web::default(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuestImages {
    pub oxydra_vm: Option<String>,
    pub shell_vm: Option<String>,
    pub firecracker_oxydra_vm_config: Option<PathBuf>,
    pub firecracker_shell_vm_config: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UserRef {
    /// Relative to the directory of runner.toml.
    pub config_path: Option<PathBuf>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Web {
    pub enabled: bool,
    pub bind: String,
    pub auth_mode: String,
    pub auth_token_env: Option<String>,
}

impl Default for Web {
    fn default() -> Self {
        Web {
            enabled: false,
            bind: "127.0.0.1:9400".into(),
            auth_mode: "token".into(),
            auth_token_env: None,
        }
    }
}

impl RunnerConfig {
    pub fn validate(&self) -> Result<(), KeyError> {
        for id in self.users.keys() {
            if id.is_empty()
                || !id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err((
                    format!("users.{id}"),
                    "user ids are letters, digits, `-` and `_`".into(),
                ));
            }
        }
        if !matches!(self.web.auth_mode.as_str(), "token" | "disabled") {
            return Err((
                "web.auth_mode".into(),
                format!("expected token or disabled, got {}", self.web.auth_mode),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UserConfig {
    pub mounts: Mounts,
    pub resources: Resources,
    pub behavior: Behavior,
    pub channels: Channels,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Mounts {
    pub shared: Option<PathBuf>,
    pub tmp: Option<PathBuf>,
    pub vault: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Resources {
    pub max_vcpus: Option<f64>,
    pub max_memory_mib: Option<u64>,
    pub max_processes: Option<u64>,
}

/// These can only restrict what agent.toml allows.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Behavior {
    pub sandbox_tier: Option<Tier>,
    pub shell_enabled: Option<bool>,
    pub browser_enabled: Option<bool>,
    pub timezone: String,
}

impl Default for Behavior {
    fn default() -> Self {
        Behavior {
            sandbox_tier: None,
            shell_enabled: None,
            browser_enabled: None,
            timezone: "UTC".into(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Channels {
    pub telegram: Option<Telegram>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Telegram {
    pub enabled: bool,
    pub bot_token_env: Option<String>,
    pub polling_timeout_secs: u64,
    pub max_message_length: u32,
    /// The Bot API server (default the public one); tests and self-hosted Bot API
    /// servers point it elsewhere. The only origin the channel component may reach.
    pub api_base_url: Option<String>,
    pub senders: Vec<Sender>,
}

impl Default for Telegram {
    fn default() -> Self {
        Telegram {
            enabled: false,
            bot_token_env: None,
            polling_timeout_secs: 30,
            max_message_length: 4096,
            api_base_url: None,
            senders: vec![],
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sender {
    pub platform_ids: Vec<String>,
    pub display_name: Option<String>,
}

impl UserConfig {
    pub fn validate(&self) -> Result<(), KeyError> {
        if let Some(t) = &self.channels.telegram
            && t.enabled
        {
            if t.bot_token_env.is_none() {
                return Err((
                    "channels.telegram.bot_token_env".into(),
                    "name the variable that holds the bot token".into(),
                ));
            }
            if t.senders.iter().all(|s| s.platform_ids.is_empty()) {
                return Err((
                    "channels.telegram.senders".into(),
                    "add at least one [[channels.telegram.senders]] with platform_ids; nobody else may talk to the agent".into(),
                ));
            }
        }
        Ok(())
    }
}
