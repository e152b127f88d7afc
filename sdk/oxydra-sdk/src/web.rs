//! Reading the web (feature `web`): HTTP GET over `wasi:http/outgoing-handler`, through
//! the host's egress policy. Calling [`get`] makes the component import
//! `wasi:http/outgoing-handler`, so it needs the `web` profile.
//!
//! The host, not the component, decides where a request may go: it resolves the name,
//! refuses non-public addresses (unless the operator allowed them), connects only to
//! the address it checked, and follows redirects itself (at most 5), checking every hop.
//! The response a component sees is the final one; its URL is in [`Page::final_url`].
//! Where a service needs a key (Brave Search), the host adds it: a component never sees
//! one.
//!
//! Errors: a policy refusal is [`ToolError::Denied`] with the host's message (it names
//! the URL, the address and the rule); a response over the host's size limit is
//! [`ToolError::TooLarge`]; timeouts, too many redirects, DNS and connection failures are
//! [`ToolError::Failed`] with a readable message. A URL that is not `http(s)://` is
//! [`ToolError::InvalidArguments`]. An HTTP error status is not an error here: look at
//! [`Page::status`].

use crate::ToolError;
use crate::http_target::{Failure, Target, code_message, exchange, target};
use wasip2::http::types::{ErrorCode, Method};

/// The response header in which the host gives the absolute URL of the final response
/// (after the redirects it followed).
pub const FINAL_URL_HEADER: &str = "oxydra-final-url";
/// How the host's policy refusals start.
pub const DENIED_PREFIX: &str = "egress denied:";
/// How the host's message starts when a body is over `tools.web.max_response_bytes`.
const TOO_LARGE_PREFIX: &str = "response body over";

/// A response, its body read (up to a limit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub status: u16,
    /// As received (names lowercased by the host), including [`FINAL_URL_HEADER`].
    pub headers: Vec<(String, Vec<u8>)>,
    /// The URL of this response: the host's [`FINAL_URL_HEADER`], or the requested URL
    /// when the host gave none.
    pub final_url: String,
    /// At most the `max_bytes` given to [`get`].
    pub body: Vec<u8>,
    /// The body went on past `max_bytes`; the rest was not read.
    pub truncated: bool,
}

impl Page {
    /// The first header called `name` (any case), as text (lossy UTF-8).
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).trim().to_string())
    }

    /// The media type of `content-type`, lowercased, without parameters
    /// (`text/html` of `text/html; charset=UTF-8`).
    pub fn content_type(&self) -> Option<String> {
        let v = self.header("content-type")?;
        let media = v
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        (!media.is_empty()).then_some(media)
    }

    /// The `charset` parameter of `content-type`, lowercased, without quotes.
    pub fn charset(&self) -> Option<String> {
        let v = self.header("content-type")?;
        v.split(';').skip(1).find_map(|param| {
            let (k, val) = param.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("charset")
                .then(|| val.trim().trim_matches(['"', '\'']).to_ascii_lowercase())
                .filter(|c| !c.is_empty())
        })
    }

    /// A 2xx status.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// GET `url` with `headers` and read at most `max_bytes` of the body (past that, reading
/// stops and [`Page::truncated`] is set). Redirects are followed by the host.
pub fn get(url: &str, headers: &[(&str, &str)], max_bytes: usize) -> Result<Page, ToolError> {
    let t = target(url).map_err(ToolError::InvalidArguments)?;
    let entries: Vec<(String, Vec<u8>)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect();
    let answer = exchange(&Method::Get, &t, &entries, None, max_bytes).map_err(|f| match f {
        Failure::Request(e) => ToolError::InvalidArguments(format!("cannot request {url}: {e}")),
        Failure::Code(code) => error_from_code(code, url, &t),
        Failure::NoResponse => ToolError::Failed(format!("no response from {url}")),
        Failure::NoBody => ToolError::Failed(format!("the response from {url} has no body")),
        Failure::Write(e) => ToolError::Failed(format!("sending the request to {url} failed: {e}")),
        Failure::Read(e) => {
            ToolError::Failed(format!("reading the response from {url} failed: {e}"))
        }
    })?;
    let final_url = answer
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(FINAL_URL_HEADER))
        .map(|(_, v)| String::from_utf8_lossy(v).trim().to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| url.to_string());
    Ok(Page {
        status: answer.status,
        headers: answer.headers,
        final_url,
        body: answer.body,
        truncated: answer.truncated,
    })
}

/// The tool error for a `wasi:http` error code. The host's own messages
/// (`internal-error`) pass through verbatim.
fn error_from_code(code: ErrorCode, url: &str, t: &Target) -> ToolError {
    let host = &t.authority;
    let failed = |m: String| ToolError::Failed(m);
    match code {
        ErrorCode::InternalError(Some(m)) if m.starts_with(DENIED_PREFIX) => ToolError::Denied(m),
        ErrorCode::InternalError(Some(m)) if m.starts_with(TOO_LARGE_PREFIX) => {
            ToolError::TooLarge(m)
        }
        ErrorCode::InternalError(Some(m)) => failed(m),
        ErrorCode::InternalError(None) => failed(format!("the host could not fetch {url}")),
        ErrorCode::HttpRequestDenied => ToolError::Denied(format!(
            "{DENIED_PREFIX} the host refused the request to {url}"
        )),
        ErrorCode::DestinationIpProhibited => ToolError::Denied(format!(
            "{DENIED_PREFIX} the host may not connect to the address of {host}"
        )),
        ErrorCode::HttpRequestUriInvalid
        | ErrorCode::HttpRequestUriTooLong
        | ErrorCode::HttpRequestMethodInvalid => {
            ToolError::InvalidArguments(format!("the host cannot send a request to `{url}`"))
        }
        ErrorCode::HttpResponseBodySize(n) => ToolError::TooLarge(match n {
            Some(n) => format!("the response from {url} is over {n} bytes"),
            None => format!("the response from {url} is too large"),
        }),
        other => failed(code_message(other, url, host)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t() -> Target {
        match target("https://example.com/x") {
            Ok(t) => t,
            Err(e) => unreachable!("{e}"),
        }
    }

    fn map(code: ErrorCode) -> ToolError {
        error_from_code(code, "https://example.com/x", &t())
    }

    #[test]
    fn host_messages_pass_through() {
        let denied = "egress denied: https://10.0.0.1/ resolves to 10.0.0.1, a private \
                      address (tools.web.allow_private)";
        assert_eq!(
            map(ErrorCode::InternalError(Some(denied.into()))),
            ToolError::Denied(denied.into())
        );
        let big = "response body over tools.web.max_response_bytes (5242880 bytes)";
        assert_eq!(
            map(ErrorCode::InternalError(Some(big.into()))),
            ToolError::TooLarge(big.into())
        );
        let slow = "no response within tools.web.timeout_secs (30 s)";
        assert_eq!(
            map(ErrorCode::InternalError(Some(slow.into()))),
            ToolError::Failed(slow.into())
        );
    }

    #[test]
    fn other_codes_read_well() {
        assert_eq!(
            map(ErrorCode::ConnectionRefused),
            ToolError::Failed("could not connect to host example.com: connection refused".into())
        );
        match map(ErrorCode::DnsError(wasip2::http::types::DnsErrorPayload {
            rcode: Some("NXDOMAIN".into()),
            info_code: None,
        })) {
            ToolError::Failed(m) => assert!(m.contains("example.com") && m.contains("NXDOMAIN")),
            other => unreachable!("{other:?}"),
        }
        assert!(matches!(
            map(ErrorCode::HttpRequestDenied),
            ToolError::Denied(_)
        ));
        assert!(matches!(
            map(ErrorCode::HttpResponseBodySize(Some(10))),
            ToolError::TooLarge(_)
        ));
    }

    #[test]
    fn page_headers() {
        let page = Page {
            status: 200,
            headers: vec![(
                "content-type".into(),
                b"Text/HTML; Charset=\"ISO-8859-1\"".to_vec(),
            )],
            final_url: "https://example.com/".into(),
            body: Vec::new(),
            truncated: false,
        };
        assert_eq!(page.content_type().as_deref(), Some("text/html"));
        assert_eq!(page.charset().as_deref(), Some("iso-8859-1"));
        assert!(page.header("CONTENT-TYPE").is_some());
        assert!(page.is_success());
    }
}
