//! Typed errors from the layers below, turned into what a CLI user can do about them.
//! This is the only place that names CLI flags and commands in an error.

use crate::{Failure, exit};
use oxydra_agent::turn::TurnError;
use oxydra_session::{ServiceError, SetupError};

pub fn setup(e: SetupError) -> Failure {
    match e {
        SetupError::Refused(m) => Failure::new(exit::REFUSED, m),
        SetupError::UnknownAgent { .. } => Failure::new(
            exit::USAGE,
            format!("{e}; pass one of them with --agent, or add [agents.<name>] to agent.toml"),
        ),
        SetupError::Store(s) => Failure::new(exit::TOOL_ERROR, s.to_string()),
        SetupError::LocalModel(_) => Failure::new(exit::TOOL_ERROR, e.to_string()),
        other => Failure::new(exit::USAGE, other.to_string()),
    }
}

/// A turn's failure: what happened, and how to go on from the CLI.
pub fn turn(e: &TurnError, session: &str) -> String {
    match e {
        TurnError::Cancelled => format!("{e}; continue with --session {session}"),
        TurnError::Budget(b) => {
            format!(
                "{e}; raise {}, then continue with --session {session}",
                b.key
            )
        }
        _ => e.to_string(),
    }
}

pub fn service(e: ServiceError) -> Failure {
    match e {
        ServiceError::Setup(s) => setup(s),
        ServiceError::NoSession(id) if id.is_empty() => {
            Failure::new(exit::USAGE, "no session id given".to_string())
        }
        ServiceError::NoSession(id) => Failure::new(
            exit::USAGE,
            format!(
                "no session `{id}`; `oxydra-host run` without --session starts a new one, and /sessions in `oxydra-host chat` lists them"
            ),
        ),
        ServiceError::AmbiguousSession { .. } => {
            Failure::new(exit::USAGE, format!("{e}; give more of the session id"))
        }
        ServiceError::SessionBusy { session } => Failure::new(
            exit::TOOL_ERROR,
            format!("session {session} is busy: another turn is running in it; wait for it to end"),
        ),
        ServiceError::SessionBusyElsewhere { .. } => Failure::new(
            exit::TOOL_ERROR,
            format!(
                "{e}: wait for its turn to end, or start a new session (run without --session)"
            ),
        ),
        ServiceError::BadName(_) => Failure::new(exit::USAGE, e.to_string()),
        other => Failure::new(exit::TOOL_ERROR, other.to_string()),
    }
}
