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
    /// The OCI runtime of the container tier's containers (the runtime's and the shell
    /// sidecar's), as the Docker engine names it: `runsc` for gVisor. `None`: the
    /// engine's default (runc).
    pub container_runtime: Option<String>,
    pub users: BTreeMap<String, UserRef>,
    pub web: Web,
    pub micro_vm: MicroVm,
}

/// `[micro_vm]`: how the `micro_vm` tier boots its VMs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MicroVm {
    /// QEMU (default `qemu-system-x86_64` on PATH).
    pub qemu: Option<PathBuf>,
    /// Firecracker (default `firecracker` on PATH), used when
    /// `guest_images.firecracker_oxydra_vm_config` is set.
    pub firecracker: Option<PathBuf>,
    /// The vsock device QEMU's VMs use (default `vhost-device-vsock` on PATH).
    pub vhost_device_vsock: Option<PathBuf>,
    pub accel: VmAccel,
    /// The guest's `vmlinux`, `initrd.cpio` and `runtime.ext4`, as
    /// `scripts/build-vm-images.sh` builds them (default: `guest-images/microvm` in the
    /// directory above the binary's, i.e. `target/guest-images/microvm`).
    pub images_dir: Option<PathBuf>,
    /// The guest's memory when the user's `[resources] max_memory_mib` is not set.
    pub memory_mib: u64,
}

impl Default for MicroVm {
    fn default() -> Self {
        MicroVm {
            qemu: None,
            firecracker: None,
            vhost_device_vsock: None,
            accel: VmAccel::Auto,
            images_dir: None,
            memory_mib: 1024,
        }
    }
}

/// `micro_vm.accel`: how QEMU runs the guest's CPU.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VmAccel {
    /// KVM when it can run the guest here (not PVM, vmx/svm present), else TCG.
    #[default]
    Auto,
    Kvm,
    Tcg,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        RunnerConfig {
            config_version: None,
            workspace_root: PathBuf::from("workspaces"),
            default_tier: Tier::Container,
            guest_images: GuestImages::default(),
            container_runtime: None,
            users: BTreeMap::new(),
            web: Web::default(),
            micro_vm: MicroVm::default(),
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
        // Keys of parts not built yet are refused when set, never silently accepted.
        let g = &self.guest_images;
        for (key, img, default) in [
            (
                "guest_images.oxydra_vm",
                &g.oxydra_vm,
                "oxydra-runtime:local",
            ),
            ("guest_images.shell_vm", &g.shell_vm, "oxydra-shell:local"),
        ] {
            if let Some(img) = img
                && (img.is_empty() || img.chars().any(|c| c.is_whitespace()))
            {
                return Err((
                    key.into(),
                    format!(
                        "{img:?} is not an image reference: name a local image such as {default} (./scripts/build-guest-images.sh builds it)"
                    ),
                ));
            }
        }
        if let Some(r) = &self.container_runtime
            && (r.is_empty()
                || !r
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        {
            return Err((
                "container_runtime".into(),
                format!(
                    "{r:?} is not an OCI runtime name: name one the Docker engine offers, e.g. \"runsc\" for gVisor"
                ),
            ));
        }
        if g.firecracker_shell_vm_config.is_some() {
            return Err((
                "guest_images.firecracker_shell_vm_config".into(),
                "the micro_vm tier's shell sidecar is the container tier's container (no vault, no network), reached over vsock, with either VMM; remove the key".into(),
            ));
        }
        if let Some(p) = &g.firecracker_oxydra_vm_config
            && !p.is_absolute()
        {
            return Err((
                "guest_images.firecracker_oxydra_vm_config".into(),
                format!(
                    "{} is not an absolute path: give the whole path of the Firecracker config file",
                    p.display()
                ),
            ));
        }
        let v = &self.micro_vm;
        for (key, path) in [
            ("micro_vm.qemu", &v.qemu),
            ("micro_vm.firecracker", &v.firecracker),
            ("micro_vm.vhost_device_vsock", &v.vhost_device_vsock),
            ("micro_vm.images_dir", &v.images_dir),
        ] {
            if let Some(p) = path
                && !p.is_absolute()
            {
                return Err((
                    key.into(),
                    format!(
                        "{} is not an absolute path: give the whole path",
                        p.display()
                    ),
                ));
            }
        }
        if !(128..=65_536).contains(&v.memory_mib) {
            return Err((
                "micro_vm.memory_mib".into(),
                format!(
                    "{} is out of range: use 128 to 65536 MiB (the guest's memory)",
                    v.memory_mib
                ),
            ));
        }
        if self.web.enabled {
            return Err((
                "web.enabled".into(),
                "the web configurator is not built yet; remove [web] or set enabled = false".into(),
            ));
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
    /// `getUpdates` long-polling wait, 1–300 s (the host bounds the exchange by it).
    pub polling_timeout_secs: u32,
    pub max_message_length: u32,
    /// The Bot API server (default the public one); tests and self-hosted Bot API
    /// servers point it elsewhere. The only origin the channel component may reach.
    pub api_base_url: Option<String>,
    /// How an answer grows while the turn runs.
    pub streaming: Streaming,
    /// Fewest milliseconds between two updates of a growing answer in one chat
    /// (a draft or an edit), 300–60000.
    pub edit_interval_ms: u64,
    /// In groups, answer only messages that mention the bot or reply to it.
    pub require_mention_in_groups: bool,
    /// Largest photo or document saved to `/shared/inbox/` (the Bot API serves files
    /// of at most 20 MB).
    pub max_file_bytes: u64,
    pub senders: Vec<Sender>,
    /// An installed `chat-channel` component (`oxydra-host component install …
    /// --grant chat-channel`) speaking the Bot API, used instead of the bundled one.
    pub component: Option<String>,
}

/// `channels.telegram.streaming`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Streaming {
    /// `sendMessageDraft` in private chats, throttled `editMessageText` elsewhere.
    Auto,
    /// Throttled `editMessageText` of one message everywhere.
    Edit,
    /// Only the final answer (with a typing indicator meanwhile).
    Off,
}

/// The Bot API's download limit for bots.
pub const TELEGRAM_MAX_FILE_BYTES: u64 = 20 * 1024 * 1024;

impl Default for Telegram {
    fn default() -> Self {
        Telegram {
            enabled: false,
            bot_token_env: None,
            polling_timeout_secs: 30,
            max_message_length: 4096,
            api_base_url: None,
            streaming: Streaming::Auto,
            edit_interval_ms: 1000,
            require_mention_in_groups: true,
            max_file_bytes: 10 * 1024 * 1024,
            senders: vec![],
            component: None,
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
        // Keys of parts not built yet are refused when set, never silently accepted.
        let m = &self.mounts;
        for (key, set) in [
            ("mounts.shared", m.shared.is_some()),
            ("mounts.tmp", m.tmp.is_some()),
            ("mounts.vault", m.vault.is_some()),
        ] {
            if set {
                return Err((
                    key.into(),
                    "mounts are not supported yet: a user's workspace is <workspace_root>/<user>/{shared,tmp,vault}; remove the key".into(),
                ));
            }
        }
        if let Some(c) = self.resources.max_vcpus
            && !(c.is_finite() && (0.01..=1024.0).contains(&c))
        {
            return Err((
                "resources.max_vcpus".into(),
                format!(
                    "{c} is out of range: use a number of CPUs from 0.01 to 1024, e.g. 1.5 (the container tier applies it)"
                ),
            ));
        }
        if self.resources.max_memory_mib == Some(0) || self.resources.max_processes == Some(0) {
            return Err((
                "resources".into(),
                "max_memory_mib and max_processes must be at least 1 (omit a key for no limit)"
                    .into(),
            ));
        }
        if self.behavior.browser_enabled == Some(true) {
            return Err((
                "behavior.browser_enabled".into(),
                "browser tools are not built yet: browser_enabled can only be false".into(),
            ));
        }
        if self.behavior.timezone != "UTC" {
            return Err((
                "behavior.timezone".into(),
                "nothing reads a user's time zone yet; set a job's time zone with schedule_create, or [scheduler] default_timezone in agent.toml; remove the key".into(),
            ));
        }
        if let Some(t) = &self.channels.telegram
            && t.enabled
        {
            if t.component.as_deref().is_some_and(|c| c.trim().is_empty()) {
                return Err((
                    "channels.telegram.component".into(),
                    "name an installed chat-channel component (`oxydra-host component list`), or remove the key for the bundled one".into(),
                ));
            }
            if t.bot_token_env.is_none() {
                return Err((
                    "channels.telegram.bot_token_env".into(),
                    "name the variable that holds the bot token".into(),
                ));
            }
            if !(1..=300).contains(&t.polling_timeout_secs) {
                return Err((
                    "channels.telegram.polling_timeout_secs".into(),
                    format!(
                        "{} is out of range: use 1 to 300 seconds",
                        t.polling_timeout_secs
                    ),
                ));
            }
            if !(16..=4096).contains(&t.max_message_length) {
                return Err((
                    "channels.telegram.max_message_length".into(),
                    format!(
                        "{} is out of range: use 16 to 4096 (Telegram's limit, in UTF-16 code units)",
                        t.max_message_length
                    ),
                ));
            }
            if !(300..=60_000).contains(&t.edit_interval_ms) {
                return Err((
                    "channels.telegram.edit_interval_ms".into(),
                    format!(
                        "{} is out of range: use 300 to 60000 ms (Telegram limits edits to about one per second per chat)",
                        t.edit_interval_ms
                    ),
                ));
            }
            if t.max_file_bytes == 0 || t.max_file_bytes > TELEGRAM_MAX_FILE_BYTES {
                return Err((
                    "channels.telegram.max_file_bytes".into(),
                    format!(
                        "{} is out of range: use 1 to {TELEGRAM_MAX_FILE_BYTES} (bots download files of at most 20 MB)",
                        t.max_file_bytes
                    ),
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
