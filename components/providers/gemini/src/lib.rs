//! `gemini`: `POST {base}/v1beta/models/{model}:streamGenerateContent?alt=sse` with the
//! key in `x-goog-api-key` (added by the host). Function calls arrive whole; their
//! `thoughtSignature` is kept as the call's provider data and sent back with it. Tool
//! schemas are reduced to the OpenAPI subset Gemini accepts.

mod request;
mod schema;
mod stream;

use oxydra_sdk::llm::stream::SseStream;
use oxydra_sdk::llm::types::{AuthScheme, LlmError, ProviderInfo, Request};
use oxydra_sdk::llm::{EventSource, Provider, http};

struct Gemini;

impl Provider for Gemini {
    fn info() -> ProviderInfo {
        ProviderInfo {
            id: "gemini".into(),
            protocol: "gemini-generate-content".into(),
            auth: AuthScheme::Header("x-goog-api-key".into()),
            default_base_url: "https://generativelanguage.googleapis.com".into(),
        }
    }

    fn complete(base_url: &str, request: Request) -> Result<Box<dyn EventSource>, LlmError> {
        if request.model.is_empty() || request.model.contains(['/', '?', '#', ' ']) {
            return Err(LlmError::InvalidRequest(format!(
                "`{}` is not a Gemini model name",
                request.model
            )));
        }
        let body = request::build(&request)?;
        let url = http::join(
            base_url,
            &format!(
                "v1beta/models/{}:streamGenerateContent?alt=sse",
                request.model
            ),
        );
        let resp = http::post_json_stream(&url, &[], &body)?;
        Ok(Box::new(SseStream::new(
            resp,
            stream::GeminiStream::default(),
        )))
    }
}

oxydra_sdk::export_provider!(Gemini);
