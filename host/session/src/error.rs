//! Typed errors. Nothing here gives front-end advice ("pass --session", "set
//! OPENAI_API_KEY as an environment variable"): the front end that shows an error turns it
//! into advice for its own users.

use crate::config::ConfigError;
use oxydra_agent::turn::TurnError;
use oxydra_store::StoreError;

/// Turning configuration into a running system failed.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The config names something that is not there, or a value cannot be used; `key`
    /// is the config key (`components.tools.x.path`, `agents.coder.system_prompt_file`).
    #[error("{key}: {message}")]
    Key { key: String, message: String },
    #[error("no agent `{name}` in [agents] (configured: {})", known.join(", "))]
    UnknownAgent { name: String, known: Vec<String> },
    #[error("no provider `{name}` in [providers.registry] (configured: {})", known.join(", "))]
    UnknownProvider { name: String, known: Vec<String> },
    /// The model is not in the pinned catalog.
    #[error("{0}")]
    Model(String),
    #[error("workspace {path}: {message}")]
    Workspace { path: String, message: String },
    #[error("{0}")]
    Bundle(#[from] oxydra_runtime::bundle::BundleError),
    #[error("could not start the component engine: {0}")]
    Engine(String),
    /// A component was refused at load (grant, WIT version, checksum).
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The managed local model could not be prepared or started.
    #[error("local model: {0}")]
    LocalModel(String),
}

/// What the session service refuses or fails at.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error("no session `{0}`")]
    NoSession(String),
    #[error("`{prefix}` matches {} sessions ({})", matches.len(), matches.join(", "))]
    AmbiguousSession {
        prefix: String,
        matches: Vec<String>,
    },
    /// The session already runs (or has queued) a turn; one turn per session at a time.
    #[error("session {session} is busy: a turn is running")]
    SessionBusy { session: String },
    /// Another process drives this session now (it holds the session's lease).
    #[error("session {session} is busy in another process (pid {pid})")]
    SessionBusyElsewhere { session: String, pid: u32 },
    /// Every live session of the user has a turn running or queued, at the cap
    /// (`gateway.max_sessions_per_user`).
    #[error("user {user} has {limit} live sessions, all busy (gateway.max_sessions_per_user)")]
    TooManySessions { user: String, limit: u32 },
    #[error("session name `{0}`: use letters, digits, `-` and `_`")]
    BadName(String),
    #[error("the session service has stopped")]
    Stopped,
    /// No random source for a session id: ids are never made up from the clock.
    #[error("{0}")]
    Random(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("memory: {0}")]
    Memory(String),
    #[error(transparent)]
    Turn(#[from] TurnError),
}
