//! MCP servers for a system: started once, for the workspace of the first runtime that
//! needs them (`run`, `chat`, `serve`), or for one command (`tool`, `mcp`).

use crate::config::AgentConfig;
use crate::error::SetupError;
use oxydra_mcp::{Launcher, Manager, Options};
use std::path::{Path, PathBuf};

/// The subcommand of this binary that confines itself and executes a stdio server.
pub const TRAMPOLINE: &str = "mcp-exec";

/// Whether any MCP server is configured and enabled.
pub fn configured(cfg: &AgentConfig) -> bool {
    cfg.mcp.servers.values().any(|s| s.enabled)
}

/// Start the enabled servers (`only`: just that one) for `ws_dir`; `None` when there
/// are none. Waits until each is ready or has failed (a failed one is retried in the
/// background and says why in `mcp list` and in its tools' errors).
pub fn start(
    cfg: &AgentConfig,
    ws_dir: &Path,
    only: Option<&str>,
) -> Result<Option<Manager>, SetupError> {
    let mut mcp = cfg.mcp.clone();
    if let Some(name) = only {
        mcp.servers.retain(|n, _| n == name);
    }
    if !mcp.servers.values().any(|s| s.enabled) {
        return Ok(None);
    }
    let program = std::env::current_exe().map_err(|e| SetupError::Key {
        key: "mcp".into(),
        message: format!("this binary's path (it starts stdio servers): {e}"),
    })?;
    let web = cfg
        .tools
        .access("mcp", |v| std::env::var(v).ok())
        .map_err(|(key, message)| SetupError::Key { key, message })?;
    let manager = Manager::start(
        &mcp,
        Options {
            workspace: ws_dir.to_path_buf(),
            launcher: Launcher {
                program,
                args: vec![TRAMPOLINE.into()],
            },
            web,
            socket_dir: socket_dir(ws_dir),
            // Set by the runner in the container tier.
            bridge_dir: std::env::var_os(oxydra_mcp::BRIDGE_DIR_ENV).map(PathBuf::from),
        },
    )
    .map_err(|(key, message)| SetupError::Key { key, message })?;
    Ok(Some(manager))
}

/// `<workspace>/.oxydra/mcp-sockets` (mode 0700), or, when that path is too long for
/// a unix socket, a new private directory (0700, a random name) under the system's
/// temporary directory.
fn socket_dir(ws_dir: &Path) -> PathBuf {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let dir = ws_dir.join(".oxydra").join("mcp-sockets");
    // sun_path holds 108 bytes; `<name>.<pid>.sock` adds up to 47.
    if dir.as_os_str().len() + 48 < 108 {
        let _ = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir);
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        return dir;
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let dir = std::env::temp_dir().join(format!("oxydra-mcp-{}-{nanos:08x}", std::process::id()));
    // `create`, not `create_all`: a directory someone else made first is refused.
    let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
    dir
}
