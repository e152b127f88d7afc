//! `anthropic`: `POST {base}/v1/messages` with `stream: true`, parsed into `oxydra:llm`
//! events. Thinking blocks come back as reasoning deltas with their signature and are
//! sent back intact; the system prompt and the tools carry `cache_control` so repeated
//! turns hit Anthropic's prompt cache. `max_tokens` must come from the request (the host
//! fills it from the model catalog or config): nothing is hard-coded.

mod request;
mod stream;

use oxydra_sdk::llm::stream::SseStream;
use oxydra_sdk::llm::types::{AuthScheme, LlmError, ProviderInfo, Request};
use oxydra_sdk::llm::{EventSource, Provider, http};

/// The API version this adapter speaks (Anthropic's `anthropic-version` header).
const API_VERSION: &str = "2023-06-01";

struct Anthropic;

impl Provider for Anthropic {
    fn info() -> ProviderInfo {
        ProviderInfo {
            id: "anthropic".into(),
            protocol: "anthropic-messages".into(),
            auth: AuthScheme::Header("x-api-key".into()),
            default_base_url: "https://api.anthropic.com".into(),
        }
    }

    fn complete(base_url: &str, request: Request) -> Result<Box<dyn EventSource>, LlmError> {
        let body = request::build(&request)?;
        let url = http::join(base_url, "v1/messages");
        let resp = http::post_json_stream(&url, &[("anthropic-version", API_VERSION)], &body)?;
        Ok(Box::new(SseStream::new(
            resp,
            stream::MessagesStream::default(),
        )))
    }
}

oxydra_sdk::export_provider!(Anthropic);
