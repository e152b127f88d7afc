//! Between the generated `oxydra:llm` types and the host's own.

use super::types::*;
use crate::bindings::provider::oxydra::llm::types as wit;
use crate::capabilities::http::AuthScheme;

pub(super) fn request(r: &LlmRequest) -> wit::Request {
    wit::Request {
        model: r.model.clone(),
        messages: r.messages.iter().map(message).collect(),
        tools: r
            .tools
            .iter()
            .map(|t| wit::ToolDefinition {
                name: t.name.clone(),
                description: t.description.clone(),
                parameters_schema: t.parameters_schema.clone(),
            })
            .collect(),
        tool_choice: r.tool_choice.as_ref().map(|c| match c {
            ToolChoice::Auto => wit::ToolChoice::Auto,
            ToolChoice::None => wit::ToolChoice::None,
            ToolChoice::Required => wit::ToolChoice::Required,
            ToolChoice::Named(n) => wit::ToolChoice::Named(n.clone()),
        }),
        max_output_tokens: r.max_output_tokens,
        temperature: r.temperature,
        reasoning_effort: r.reasoning_effort.clone(),
        options: r.options.clone(),
    }
}

fn message(m: &Message) -> wit::Message {
    wit::Message {
        role: match m.role {
            Role::System => wit::Role::System,
            Role::User => wit::Role::User,
            Role::Assistant => wit::Role::Assistant,
            Role::Tool => wit::Role::Tool,
        },
        content: m
            .content
            .iter()
            .map(|c| match c {
                ContentPart::Text(t) => wit::ContentPart::Text(t.clone()),
                ContentPart::Image { mime_type, data } => wit::ContentPart::Image(wit::Image {
                    mime_type: mime_type.clone(),
                    data: data.clone(),
                }),
            })
            .collect(),
        tool_calls: m
            .tool_calls
            .iter()
            .map(|t| wit::ToolCall {
                id: t.id.clone(),
                name: t.name.clone(),
                arguments: t.arguments.clone(),
                provider_data: t.provider_data.clone(),
            })
            .collect(),
        tool_call_id: m.tool_call_id.clone(),
        tool_name: m.tool_name.clone(),
        reasoning: m
            .reasoning
            .iter()
            .map(|r| wit::Reasoning {
                text: r.text.clone(),
                signature: r.signature.clone(),
                redacted: r.redacted.clone(),
            })
            .collect(),
    }
}

pub(super) fn event(e: wit::Event) -> LlmEvent {
    match e {
        wit::Event::TextDelta(t) => LlmEvent::TextDelta(t),
        wit::Event::ReasoningDelta(t) => LlmEvent::ReasoningDelta(t),
        wit::Event::ReasoningSignature(s) => LlmEvent::ReasoningSignature(s),
        wit::Event::ToolCallStart(s) => LlmEvent::ToolCallStart {
            index: s.index,
            id: s.id,
            name: s.name,
        },
        wit::Event::ToolCallArguments((index, fragment)) => {
            LlmEvent::ToolCallArguments { index, fragment }
        }
        wit::Event::ToolCallEnd((index, provider_data)) => LlmEvent::ToolCallEnd {
            index,
            provider_data,
        },
        wit::Event::Usage(u) => LlmEvent::Usage(Usage {
            input_tokens: u.input_tokens,
            output_tokens: u.output_tokens,
            cached_tokens: u.cached_tokens,
            reasoning_tokens: u.reasoning_tokens,
        }),
        wit::Event::Stop(s) => LlmEvent::Stop(match s {
            wit::StopReason::EndTurn => StopReason::EndTurn,
            wit::StopReason::ToolCalls => StopReason::ToolCalls,
            wit::StopReason::MaxTokens => StopReason::MaxTokens,
            wit::StopReason::ContentFilter => StopReason::ContentFilter,
            wit::StopReason::Other(o) => StopReason::Other(o),
        }),
    }
}

pub(super) fn error(e: wit::LlmError) -> LlmFailure {
    match e {
        wit::LlmError::Http(h) => LlmFailure::Http {
            status: h.status,
            body: h.body,
            retry_after_ms: h.retry_after_ms,
        },
        wit::LlmError::Transport(m) => LlmFailure::Transport(m),
        wit::LlmError::Protocol(m) => LlmFailure::Protocol(m),
        wit::LlmError::Provider(m) => LlmFailure::Provider(m),
        wit::LlmError::InvalidRequest(m) => LlmFailure::InvalidRequest(m),
    }
}

impl From<wit::ProviderInfo> for ProviderInfo {
    fn from(i: wit::ProviderInfo) -> Self {
        ProviderInfo {
            id: i.id,
            protocol: i.protocol,
            auth: match i.auth {
                wit::AuthScheme::Bearer => AuthScheme::Bearer,
                wit::AuthScheme::Header(h) => AuthScheme::Header(h),
                wit::AuthScheme::UrlPlaceholder(p) => AuthScheme::UrlPlaceholder(p),
                wit::AuthScheme::None => AuthScheme::None,
            },
            default_base_url: i.default_base_url,
        }
    }
}
