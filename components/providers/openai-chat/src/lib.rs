//! `openai-chat`: `POST {base}/chat/completions` with `stream: true`, parsed into
//! `oxydra:llm` events as the SSE body arrives.
//!
//! Tolerant of OpenAI-compatible servers (Ollama, llama.cpp, vLLM, OpenRouter): usage may
//! be missing, a whole tool call may come in one chunk, finish reasons may be unknown,
//! and unknown fields are ignored. With the request option `oxydra.textual_tool_calls =
//! true`, tool calls a model writes as text (`<tool_call>{…}</tool_call>` or a fenced
//! JSON block with `name` and `arguments`) become real tool calls.

mod request;
mod stream;
mod textual;

use oxydra_sdk::llm::stream::SseStream;
use oxydra_sdk::llm::types::{AuthScheme, LlmError, ProviderInfo, Request};
use oxydra_sdk::llm::{EventSource, Provider, http};

struct OpenAiChat;

impl Provider for OpenAiChat {
    fn info() -> ProviderInfo {
        ProviderInfo {
            id: "openai-chat".into(),
            protocol: "openai-chat-completions".into(),
            auth: AuthScheme::Bearer,
            default_base_url: "https://api.openai.com/v1".into(),
        }
    }

    fn complete(base_url: &str, request: Request) -> Result<Box<dyn EventSource>, LlmError> {
        let built = request::build(&request)?;
        let url = http::join(base_url, "chat/completions");
        let resp = http::post_json_stream(&url, &[], &built.body)?;
        Ok(Box::new(SseStream::new(
            resp,
            stream::ChatStream::new(built.textual_tool_calls),
        )))
    }
}

oxydra_sdk::export_provider!(OpenAiChat);
