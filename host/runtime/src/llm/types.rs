//! The host's own LLM types (the rest of the host never sees generated bindings).

use crate::capabilities::http::AuthScheme;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct ProviderInfo {
    pub id: String,
    pub protocol: String,
    pub auth: AuthScheme,
    pub default_base_url: String,
}

impl Default for ProviderInfo {
    fn default() -> Self {
        ProviderInfo {
            id: String::new(),
            protocol: String::new(),
            auth: AuthScheme::None,
            default_base_url: String::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    System,
    User,
    Assistant,
    Tool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContentPart {
    Text(String),
    Image { mime_type: String, data: Vec<u8> },
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
    pub provider_data: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reasoning {
    pub text: String,
    pub signature: Option<String>,
    pub redacted: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: Vec<ContentPart>,
    #[serde(default)]
    pub tool_calls: Vec<ToolCall>,
    #[serde(default)]
    pub tool_call_id: Option<String>,
    #[serde(default)]
    pub tool_name: Option<String>,
    #[serde(default)]
    pub reasoning: Vec<Reasoning>,
}

impl Message {
    pub fn text(role: Role, text: impl Into<String>) -> Message {
        Message {
            role,
            content: vec![ContentPart::Text(text.into())],
            tool_calls: vec![],
            tool_call_id: None,
            tool_name: None,
            reasoning: vec![],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolDefinition {
    pub name: String,
    pub description: String,
    pub parameters_schema: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolChoice {
    Auto,
    None,
    Required,
    Named(String),
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LlmRequest {
    pub model: String,
    pub messages: Vec<Message>,
    pub tools: Vec<ToolDefinition>,
    pub tool_choice: Option<ToolChoice>,
    pub max_output_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub reasoning_effort: Option<String>,
    /// (key, JSON value) merged into the provider's request body.
    pub options: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
    pub reasoning_tokens: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    EndTurn,
    ToolCalls,
    MaxTokens,
    ContentFilter,
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LlmEvent {
    TextDelta(String),
    ReasoningDelta(String),
    ReasoningSignature(String),
    ToolCallStart {
        index: u32,
        id: String,
        name: String,
    },
    ToolCallArguments {
        index: u32,
        fragment: String,
    },
    ToolCallEnd {
        index: u32,
        provider_data: Option<String>,
    },
    Usage(Usage),
    Stop(StopReason),
}

/// Why a completion failed. Messages say what to do.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LlmFailure {
    #[error("the provider answered HTTP {status}: {body}")]
    Http {
        status: u16,
        body: String,
        retry_after_ms: Option<u64>,
    },
    #[error("connection failed: {0}")]
    Transport(String),
    #[error("the provider sent something unexpected: {0}")]
    Protocol(String),
    #[error("the provider reported an error: {0}")]
    Provider(String),
    #[error("the request is not valid for this provider: {0}")]
    InvalidRequest(String),
    #[error("{0}")]
    Crashed(String),
    #[error("configuration: {0}")]
    Config(String),
    #[error("{}", missing_key(provider, env.as_deref()))]
    MissingKey {
        provider: String,
        env: Option<String>,
    },
    #[error(
        "the provider component tried to reach {tried}, which is not its configured base URL; the request was refused ({detail})"
    )]
    Denied { tried: String, detail: String },
    #[error("{0}")]
    Explained(String),
    /// A wait of the call passed one of its bounds; `limit_key` names the setting.
    #[error("{}", timeout_message(*phase, *after, *limit, limit_key))]
    Timeout {
        phase: TimeoutPhase,
        /// How long the bounded wait had lasted when it was stopped.
        after: Duration,
        /// The bound that stopped it.
        limit: Duration,
        limit_key: String,
    },
    /// The caller's cancel flag was set while the call ran or waited.
    #[error("the provider call was cancelled")]
    Cancelled,
    /// The response passed the most bytes the host accepts for one model call.
    #[error(
        "the provider's response passed {limit_bytes} bytes, the most the host accepts for one model call ({limit_key}); the stream was stopped there"
    )]
    ResponseTooLarge { limit_bytes: u64, limit_key: String },
    /// A retryable failure that was not retried (any further).
    #[error("{}", gave_up(provider, *attempts, why, last))]
    GaveUp {
        provider: String,
        /// Requests actually made, the first included.
        attempts: u32,
        why: GiveUp,
        last: Box<LlmFailure>,
    },
}

/// Which bound ended a wait of a provider call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutPhase {
    /// No response headers within the time-to-first-byte limit after the request was sent.
    FirstByte,
    /// The response body paused longer than the between-bytes limit.
    BetweenBytes,
    /// The caller's deadline (the turn's deadline or wall budget) passed.
    Deadline,
    /// One event (computing and waiting together) took longer than `limits.deadline_ms`.
    Event,
}

/// Why a retryable failure was given up on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GiveUp {
    /// Every attempt the policy allows was made.
    AttemptsUsed,
    /// The server's `Retry-After` asked for a longer wait than the host waits at most.
    RetryAfterTooLong {
        asked: Duration,
        cap: Duration,
        cap_key: String,
    },
    /// The wait before the next attempt would have passed the caller's deadline.
    PastDeadline {
        wait: Duration,
        left: Duration,
        limit_key: String,
    },
}

/// `1.5 s`, `250 ms`, `1 h`: short and exact enough for a message.
pub(crate) fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms.is_multiple_of(3_600_000) {
        format!("{} h", ms / 3_600_000)
    } else if ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

fn timeout_message(phase: TimeoutPhase, after: Duration, limit: Duration, key: &str) -> String {
    match phase {
        TimeoutPhase::FirstByte => format!(
            "the provider sent no response within {} of the request (time to first byte, {key} = {}); stopped after {}",
            human(limit),
            human(limit),
            human(after)
        ),
        TimeoutPhase::BetweenBytes => format!(
            "the provider's response stalled: nothing arrived for {} (between bytes, {key} = {})",
            human(after),
            human(limit)
        ),
        TimeoutPhase::Deadline => format!(
            "the provider call was stopped at its deadline after {} ({key}: {})",
            human(after),
            human(limit)
        ),
        TimeoutPhase::Event => format!(
            "the provider took longer than {} for one event ({key}); stopped after {}",
            human(limit),
            human(after)
        ),
    }
}

fn gave_up(provider: &str, attempts: u32, why: &GiveUp, last: &LlmFailure) -> String {
    let n = if attempts == 1 {
        "1 attempt".to_string()
    } else {
        format!("{attempts} attempts")
    };
    match why {
        GiveUp::AttemptsUsed => format!("provider `{provider}` failed after {n}; the last: {last}"),
        GiveUp::RetryAfterTooLong {
            asked,
            cap,
            cap_key,
        } => format!(
            "provider `{provider}` failed after {n}: the server asked to wait {} before retrying (Retry-After), longer than the {} the host waits at most (raise {cap_key} to wait longer); the last: {last}",
            human(*asked),
            human(*cap)
        ),
        GiveUp::PastDeadline {
            wait,
            left,
            limit_key,
        } => format!(
            "provider `{provider}` failed after {n}: the wait of {} before the next attempt would pass the call's deadline ({} left, {limit_key}); the last: {last}",
            human(*wait),
            human(*left)
        ),
    }
}

fn missing_key(provider: &str, env: Option<&str>) -> String {
    match env {
        Some(var) => format!(
            "no API key for provider `{provider}`: set {var} (named by api_key_env in [providers.registry.{provider}]), \
             or point base_url at a local OpenAI-compatible server (e.g. http://127.0.0.1:8080/v1), which needs no key"
        ),
        None => format!(
            "no API key for provider `{provider}`: set api_key_env in [providers.registry.{provider}] to the variable \
             that holds it, or point base_url at a local OpenAI-compatible server"
        ),
    }
}

impl LlmFailure {
    /// Whether retrying the same request can succeed: transport errors, 408, 429, 5xx.
    pub fn retryable(&self) -> bool {
        match self {
            LlmFailure::Transport(_) => true,
            // A slow or stalled server may answer the next request; the caller's
            // deadline, a cancel and a too-large answer are final.
            LlmFailure::Timeout {
                phase: TimeoutPhase::FirstByte | TimeoutPhase::BetweenBytes,
                ..
            } => true,
            LlmFailure::Http { status, .. } => matches!(status, 408 | 429 | 500..=599),
            _ => false,
        }
    }

    pub fn retry_after_ms(&self) -> Option<u64> {
        match self {
            LlmFailure::Http { retry_after_ms, .. } => *retry_after_ms,
            _ => None,
        }
    }

    /// Add what the user can do, for the failures where the provider's text is not enough;
    /// a retryable failure says how many `attempts` were made and `why` no more were.
    pub(crate) fn explain(
        self,
        p: &super::LoadedProvider,
        attempts: u32,
        why: GiveUp,
    ) -> LlmFailure {
        let name = &p.spec.name;
        match &self {
            LlmFailure::Http {
                status: 401 | 403,
                body,
                ..
            } => {
                let key = match &p.spec.api_key_env {
                    Some(v) => format!(
                        "check the key in {v} (named by api_key_env in [providers.registry.{name}])"
                    ),
                    None => format!(
                        "set api_key_env in [providers.registry.{name}] to the variable holding the key"
                    ),
                };
                LlmFailure::Explained(format!(
                    "provider `{name}` rejected the credentials (HTTP 401/403: {body}); {key}"
                ))
            }
            LlmFailure::Http {
                status: 404, body, ..
            } if body.to_lowercase().contains("model") => LlmFailure::Explained(format!(
                "provider `{name}` does not know this model (HTTP 404: {body}); `oxydra-host catalog show` lists the known models"
            )),
            _ if self.retryable() => LlmFailure::GaveUp {
                provider: name.clone(),
                attempts,
                why,
                last: Box::new(self),
            },
            _ => self,
        }
    }

    /// The failure itself: the last one of a [`LlmFailure::GaveUp`], else `self`.
    pub fn root(&self) -> &LlmFailure {
        match self {
            LlmFailure::GaveUp { last, .. } => last.root(),
            other => other,
        }
    }
}
