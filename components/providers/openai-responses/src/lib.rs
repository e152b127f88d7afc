//! `openai-responses`: `POST {base}/responses` with `stream: true` and `store: false`.
//! Every request carries the whole conversation: no `previous_response_id`, so nothing
//! is shared between sessions (the earlier Oxydra kept one per provider instance).

mod request;
mod stream;

use oxydra_sdk::llm::stream::SseStream;
use oxydra_sdk::llm::types::{AuthScheme, LlmError, ProviderInfo, Request};
use oxydra_sdk::llm::{EventSource, Provider, http};

struct Responses;

impl Provider for Responses {
    fn info() -> ProviderInfo {
        ProviderInfo {
            id: "openai-responses".into(),
            protocol: "openai-responses".into(),
            auth: AuthScheme::Bearer,
            default_base_url: "https://api.openai.com/v1".into(),
        }
    }

    fn complete(base_url: &str, request: Request) -> Result<Box<dyn EventSource>, LlmError> {
        let body = request::build(&request)?;
        let url = http::join(base_url, "responses");
        let resp = http::post_json_stream(&url, &[], &body)?;
        Ok(Box::new(SseStream::new(
            resp,
            stream::ResponsesStream::default(),
        )))
    }
}

oxydra_sdk::export_provider!(Responses);
