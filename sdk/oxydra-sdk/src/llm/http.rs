//! A streaming HTTP POST over `wasi:http/outgoing-handler`. The host decides whether the
//! request may leave (only to the configured base URL) and adds the credential; this
//! module never sees a key.

use super::types::{HttpFailure, LlmError};
use crate::http_target::{request, target};
use wasip2::http::outgoing_handler;
use wasip2::http::types::{ErrorCode, IncomingBody, IncomingResponse, Method, OutgoingBody};
use wasip2::io::streams::{InputStream, StreamError};

/// Most bytes of an error response kept for the message.
const ERROR_BODY_BYTES: usize = 4096;
/// `blocking-write-and-flush` accepts at most 4096 bytes per call.
const WRITE_CHUNK: usize = 4096;

/// Join a base URL and a path without doubling or dropping the `/`.
pub fn join(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

fn transport(e: ErrorCode) -> LlmError {
    match e {
        ErrorCode::HttpRequestDenied => LlmError::Transport(
            "the host refused the request: providers may only reach their configured base URL"
                .into(),
        ),
        other => LlmError::Transport(format!("{other:?}")),
    }
}

/// A response whose body is read as it arrives.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, Vec<u8>)>,
    // Field order is drop order: the stream before its body, the body before the response.
    stream: Option<InputStream>,
    _body: Option<IncomingBody>,
    _response: IncomingResponse,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    /// The next bytes of the body, `Ok(None)` at its end. Blocks until bytes arrive.
    pub fn read(&mut self) -> Result<Option<Vec<u8>>, LlmError> {
        let Some(stream) = &self.stream else {
            return Ok(None);
        };
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(bytes) if bytes.is_empty() => continue,
                Ok(bytes) => return Ok(Some(bytes)),
                Err(StreamError::Closed) => {
                    self.stream = None;
                    return Ok(None);
                }
                Err(StreamError::LastOperationFailed(e)) => {
                    self.stream = None;
                    return Err(LlmError::Transport(format!(
                        "the connection broke while the response was streaming: {}",
                        e.to_debug_string()
                    )));
                }
            }
        }
    }

    /// The failure for a non-success status, with the start of the body and Retry-After.
    pub fn failure(mut self) -> LlmError {
        let mut body = Vec::new();
        while body.len() < ERROR_BODY_BYTES {
            match self.read() {
                Ok(Some(b)) => body.extend_from_slice(&b),
                _ => break,
            }
        }
        body.truncate(ERROR_BODY_BYTES);
        let retry_after_ms = self
            .header("retry-after")
            .and_then(|v| parse_retry_after(&v));
        LlmError::Http(HttpFailure {
            status: self.status,
            body: String::from_utf8_lossy(&body).trim().to_string(),
            retry_after_ms,
        })
    }
}

/// `Retry-After` in seconds (HTTP dates are not used by LLM APIs; treated as absent).
pub fn parse_retry_after(v: &str) -> Option<u64> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(secs.saturating_mul(1000));
    }
    v.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| (s * 1000.0) as u64)
}

/// POST `body` to `url` and return the response as soon as its headers arrive. The body
/// goes with a `Content-Length` (any given in `headers` is replaced): without one it
/// would be sent chunked, and servers that read only `Content-Length` (Python's
/// `http.server`, several proxies) see an empty request.
pub fn post(url: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<Response, LlmError> {
    let t = target(url).map_err(LlmError::InvalidRequest)?;
    let mut entries: Vec<(String, Vec<u8>)> = headers
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("content-length"))
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect();
    entries.push((
        "content-length".to_string(),
        body.len().to_string().into_bytes(),
    ));
    let request = request(&Method::Post, &t, &entries).map_err(LlmError::InvalidRequest)?;
    let bad = |what: &str| LlmError::InvalidRequest(format!("could not set the request {what}"));
    let outgoing = request.body().map_err(|_| bad("body"))?;
    // Send first, then stream the body: the host reads it while we write.
    let future = outgoing_handler::handle(request, None).map_err(transport)?;
    {
        let out = outgoing.write().map_err(|_| bad("body stream"))?;
        for chunk in body.chunks(WRITE_CHUNK) {
            out.blocking_write_and_flush(chunk)
                .map_err(|e| LlmError::Transport(format!("sending the request failed: {e:?}")))?;
        }
    }
    OutgoingBody::finish(outgoing, None).map_err(transport)?;
    future.subscribe().block();
    let response = match future.get() {
        Some(Ok(Ok(r))) => r,
        Some(Ok(Err(e))) => return Err(transport(e)),
        Some(Err(())) | None => return Err(LlmError::Transport("no response".into())),
    };
    let status = response.status();
    let headers = response.headers().entries();
    let body = response
        .consume()
        .map_err(|_| LlmError::Transport("the response has no body".into()))?;
    let stream = body
        .stream()
        .map_err(|_| LlmError::Transport("the response body cannot be read".into()))?;
    Ok(Response {
        status,
        headers,
        stream: Some(stream),
        _body: Some(body),
        _response: response,
    })
}

/// POST a JSON body to a streaming endpoint (`accept: text/event-stream`), plus `headers`,
/// and turn a non-success status into its failure (status, body start, Retry-After).
pub fn post_json_stream(
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<Response, LlmError> {
    let mut all: Vec<(&str, &str)> = vec![
        ("content-type", "application/json"),
        ("accept", "text/event-stream"),
    ];
    all.extend_from_slice(headers);
    let resp = post(url, &all, body.as_bytes())?;
    if (200..300).contains(&resp.status) {
        Ok(resp)
    } else {
        Err(resp.failure())
    }
}
