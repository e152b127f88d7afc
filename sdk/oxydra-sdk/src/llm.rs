//! Writing an LLM provider adapter (feature `llm`).
//!
//! Implement [`Provider`] and export it with `oxydra_sdk::export_provider!(MyProvider)`.
//! [`http::post`] sends the request (the host allows only the configured base URL and
//! adds the credential itself: an adapter never sees an API key), [`sse::SseParser`]
//! splits the streamed body into events, and each call of [`EventSource::next_event`]
//! returns one `oxydra:llm` event as the body arrives.

pub mod base64;
pub mod http;
pub mod sse;
pub mod stream;

/// The `oxydra:llm/types` types, shared with the export glue.
pub mod types {
    pub use crate::bindings::llm::oxydra::llm::types::*;
}

use types::{Event, LlmError, ProviderInfo, Request};

/// What `export_provider!` exports.
pub trait Provider {
    fn info() -> ProviderInfo;
    /// Send the request to `base_url` and return the source of its events.
    fn complete(base_url: &str, request: Request) -> Result<Box<dyn EventSource>, LlmError>;
}

/// A streaming response, one event at a time.
pub trait EventSource {
    /// The next event, or `None` after the last one. After an error, return `None`.
    fn next_event(&mut self) -> Option<Result<Event, LlmError>>;
}

use types::{ContentPart, Message};

/// The text parts of a message, joined.
pub fn text_of(m: &Message) -> String {
    m.content
        .iter()
        .filter_map(|c| match c {
            ContentPart::Text(t) => Some(t.as_str()),
            ContentPart::Image(_) => None,
        })
        .collect()
}

/// Merge the request's provider options (key, JSON value) into a request body. Keys under
/// `oxydra.` are the adapter's own switches: they are returned, never sent.
pub fn merge_options(
    body: &mut serde_json::Map<String, serde_json::Value>,
    options: &[(String, String)],
) -> Result<std::collections::BTreeMap<String, serde_json::Value>, LlmError> {
    let mut own = std::collections::BTreeMap::new();
    for (key, raw) in options {
        let value: serde_json::Value = serde_json::from_str(raw)
            .map_err(|e| LlmError::InvalidRequest(format!("option `{key}` is not JSON: {e}")))?;
        if key.starts_with("oxydra.") {
            own.insert(key.clone(), value);
        } else {
            body.insert(key.clone(), value);
        }
    }
    Ok(own)
}
