//! The gateway's frames (protocol version 3): JSON text frames shaped
//! `{"type": "<snake_case>", "payload": {…}}`. Documented in `docs/reference/gateway.md`;
//! the gateway and its clients (the TUI) share these types.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The only version this gateway speaks: version 2 (the reference Oxydra's) plus the
/// token in `hello`.
pub const PROTOCOL_VERSION: u32 = 3;

/// What a client sends.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", content = "payload", rename_all = "snake_case")]
pub enum ClientFrame {
    Hello(Hello),
    SendTurn(SendTurn),
    CancelActiveTurn(CancelActiveTurn),
    CancelAllActiveTurns(Request),
    HealthCheck(Request),
    CreateSession(CreateSession),
    ListSessions(ListSessions),
    SwitchSession(SwitchSession),
}

/// The frame types a client may send, as they appear in `type`.
pub const CLIENT_TYPES: &[&str] = &[
    "hello",
    "send_turn",
    "cancel_active_turn",
    "cancel_all_active_turns",
    "health_check",
    "create_session",
    "list_sessions",
    "switch_session",
];

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hello {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub protocol_version: u32,
    /// The user's gateway token (or send `Authorization: Bearer …` on the upgrade).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Accepted for version-2 clients; it must name the token's user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Attach this session (id or unique prefix).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Start on a new session (for `agent_name`, or `default`).
    #[serde(default)]
    pub create_new_session: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendTurn {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Default: the connection's current session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    pub prompt: String,
    /// Refused for now: no provider adapter carries attachments yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachments: Option<Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelActiveTurn {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Advisory: the active turn is cancelled whatever its id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn_id: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Leads the new session's id, so `switch_session` finds it by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_name: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListSessions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Accepted; every stored session is listed (archiving only frees memory).
    #[serde(default)]
    pub include_archived: bool,
    /// Delegated sub-agent sessions (`sub-…`) are listed too.
    #[serde(default)]
    pub include_subagent_sessions: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwitchSession {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// An id or a unique prefix.
    pub session_id: String,
}

/// What the gateway sends.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", content = "payload", rename_all = "snake_case")]
pub enum ServerFrame {
    HelloAck(HelloAck),
    TurnStarted(TurnRef),
    AssistantDelta(AssistantDelta),
    TurnProgress(TurnProgress),
    TurnCompleted(TurnCompleted),
    TurnCancelled(TurnEnded),
    TurnFailed(TurnEnded),
    Error(ErrorFrame),
    HealthStatus(HealthStatus),
    SessionCreated(SessionSwitched),
    SessionList(SessionList),
    SessionSwitched(SessionSwitched),
    ScheduledNotification(ScheduledNotification),
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SessionRef {
    pub user_id: String,
    pub session_id: String,
    pub agent_name: String,
    /// The model the session's agent runs on.
    pub model: String,
}

/// A queued or running turn, as a client that attaches mid-turn sees it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ActiveTurn {
    pub turn_id: String,
    /// `queued` or `running`.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_position: Option<usize>,
    /// The answer streamed so far.
    pub text: String,
    /// Model calls made so far.
    pub step: u32,
    pub tools_running: Vec<String>,
}

/// How the last turn ended.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LastTurn {
    pub turn_id: String,
    /// `completed`, `cancelled` or `failed`.
    pub state: String,
    /// The answer (completed) or what went wrong.
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HelloAck {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub protocol_version: u32,
    pub session: SessionRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_turn: Option<ActiveTurn>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_turn: Option<LastTurn>,
    /// Limits this gateway enforces.
    pub limits: Limits,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Limits {
    pub max_frame_bytes: usize,
    pub max_prompt_bytes: usize,
    pub max_sessions_per_user: u32,
    pub max_concurrent_turns_per_user: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TurnRef {
    /// The `send_turn` that started it (absent for turns started elsewhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub session_id: String,
    pub turn_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AssistantDelta {
    pub session_id: String,
    pub turn_id: String,
    pub delta: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TurnProgress {
    pub session_id: String,
    pub turn_id: String,
    pub progress: Progress,
    /// One line for people, e.g. `[2/8] calling the model`.
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Progress {
    /// Waiting for one of the user's turn slots (`gateway.max_concurrent_turns_per_user`).
    Queued {
        position: usize,
    },
    ProviderCall {
        step: u32,
        max: u32,
    },
    ToolStarted {
        tool_name: String,
        arguments: String,
    },
    ToolFinished {
        tool_name: String,
        duration_ms: f64,
        ok: bool,
    },
    Reasoning {
        delta: String,
    },
    /// Older turns were summarised.
    Compaction {
        turns: usize,
    },
    /// Whole earlier turns were left out of the context to fit the window.
    ContextTrimmed {
        turns: usize,
    },
    Usage {
        input_tokens: u64,
        output_tokens: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cost: Option<f64>,
    },
    /// This client fell behind by `missed` events; `text` is the answer so far.
    Lagged {
        missed: u64,
        text: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
    /// Money spent, when the model is priced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
    /// Model calls.
    pub steps: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TurnCompleted {
    pub session_id: String,
    pub turn_id: String,
    pub response: Response,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Response {
    pub message: String,
    pub finish_reason: String,
    pub usage: Usage,
}

/// A turn that was cancelled or failed; what streamed before is kept in the session.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TurnEnded {
    pub session_id: String,
    pub turn_id: String,
    /// `cancelled`, `budget`, `provider` or `store`.
    pub code: String,
    pub message: String,
    pub usage: Usage,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorFrame {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn_id: Option<String>,
    /// Stable, for programs: see `docs/reference/gateway.md`.
    pub code: String,
    /// For people: what was wrong and what to do.
    pub message: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HealthStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub healthy: bool,
    pub user_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_turn: Option<ActiveTurn>,
    /// Sessions with a live actor in this gateway's service.
    pub live_sessions: usize,
    pub connections: usize,
    pub version: String,
    /// What a request that answers with health_status did (`cancel_all_active_turns`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SessionSwitched {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub session: SessionRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_turn: Option<ActiveTurn>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_turn: Option<LastTurn>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SessionList {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    pub sessions: Vec<SessionEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SessionEntry {
    pub session_id: String,
    pub agent_name: String,
    pub turns: i64,
    /// Held in memory by this gateway (not archived).
    pub live: bool,
    /// A turn is queued or running.
    pub active: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ScheduledNotification {
    pub schedule_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The run whose result this is (`schedule_run_output` pages its full output).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    pub message: String,
}

/// Why a client frame could not be read: the `error` frame's code and message.
#[derive(Debug, Clone, PartialEq)]
pub struct BadFrame {
    pub code: &'static str,
    pub message: String,
    pub request_id: Option<String>,
}

/// Read a client's text frame: the envelope first (so an unknown type is named as one),
/// then its payload; a missing payload is `{}`.
pub fn parse_client(text: &str) -> Result<ClientFrame, BadFrame> {
    let value: Value = serde_json::from_str(text).map_err(|e| BadFrame {
        code: "bad_json",
        message: format!(
            "the frame is not JSON ({e}); send {{\"type\": \"…\", \"payload\": {{…}}}}"
        ),
        request_id: None,
    })?;
    let Value::Object(mut obj) = value else {
        return Err(BadFrame {
            code: "bad_frame",
            message: "a frame is a JSON object: {\"type\": \"…\", \"payload\": {…}}".into(),
            request_id: None,
        });
    };
    let payload = obj
        .remove("payload")
        .unwrap_or(Value::Object(Default::default()));
    let request_id = payload
        .get("request_id")
        .and_then(Value::as_str)
        .map(str::to_string);
    let ty = match obj.remove("type") {
        Some(Value::String(t)) => t,
        _ => {
            return Err(BadFrame {
                code: "bad_frame",
                message: "the frame has no string `type`".into(),
                request_id,
            });
        }
    };
    if let Some(extra) = obj.keys().next() {
        return Err(BadFrame {
            code: "bad_frame",
            message: format!(
                "unknown top-level field `{extra}`: a frame has only `type` and `payload`"
            ),
            request_id,
        });
    }
    if !CLIENT_TYPES.contains(&ty.as_str()) {
        return Err(BadFrame {
            code: "unknown_type",
            message: format!(
                "unknown frame type `{ty}`; a client sends one of: {}",
                CLIENT_TYPES.join(", ")
            ),
            request_id,
        });
    }
    if ty == "hello" && !payload.get("protocol_version").is_some_and(Value::is_u64) {
        return Err(BadFrame {
            code: "protocol_version",
            message: format!(
                "hello needs payload.protocol_version: this gateway speaks protocol_version {PROTOCOL_VERSION}"
            ),
            request_id,
        });
    }
    let mut envelope = serde_json::Map::new();
    envelope.insert("type".into(), Value::String(ty.clone()));
    envelope.insert("payload".into(), payload);
    serde_json::from_value(Value::Object(envelope)).map_err(|e| BadFrame {
        code: "bad_request",
        message: format!("`{ty}` payload: {e}"),
        request_id,
    })
}

impl ServerFrame {
    pub fn to_json(&self) -> String {
        // A frame is plain data: serialising it cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{}"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_are_read_in_two_steps() {
        assert!(matches!(
            parse_client(r#"{"type":"health_check"}"#),
            Ok(ClientFrame::HealthCheck(_))
        ));
        let e = parse_client(r#"{"type":"nope","payload":{"request_id":"r1"}}"#).unwrap_err();
        assert_eq!(
            (e.code, e.request_id.as_deref()),
            ("unknown_type", Some("r1"))
        );
        assert!(e.message.contains("send_turn"));
        assert_eq!(parse_client("{nope").unwrap_err().code, "bad_json");
        assert_eq!(parse_client("[1]").unwrap_err().code, "bad_frame");
        let e = parse_client(r#"{"type":"send_turn","payload":{"promt":"x"}}"#).unwrap_err();
        assert_eq!(e.code, "bad_request");
        assert!(e.message.contains("promt"), "{}", e.message);
        // A hello without a version is told which one this gateway speaks.
        for hello in [
            r#"{"type":"hello","payload":{"token":"t"}}"#,
            r#"{"type":"hello"}"#,
        ] {
            let e = parse_client(hello).unwrap_err();
            assert_eq!(e.code, "protocol_version");
            assert!(e.message.contains("protocol_version 3"), "{}", e.message);
        }
        assert!(matches!(
            parse_client(r#"{"type":"hello","payload":{"protocol_version":3}}"#),
            Ok(ClientFrame::Hello(_))
        ));
    }

    #[test]
    fn server_frames_round_trip() {
        let f = ServerFrame::TurnProgress(TurnProgress {
            session_id: "s".into(),
            turn_id: "t".into(),
            progress: Progress::ToolFinished {
                tool_name: "file_read".into(),
                duration_ms: 1.5,
                ok: true,
            },
            message: "done".into(),
        });
        let j = f.to_json();
        assert!(
            j.starts_with(r#"{"type":"turn_progress","payload":{"#),
            "{j}"
        );
        assert!(j.contains(r#""kind":"tool_finished""#), "{j}");
        assert_eq!(serde_json::from_str::<ServerFrame>(&j).unwrap(), f);
    }
}
