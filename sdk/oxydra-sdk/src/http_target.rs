//! Splitting a URL for `wasi:http`, building the outgoing request, and one whole
//! exchange with a capped body read: shared by [`llm::http`](crate::llm::http) (feature
//! `llm`), [`web`](crate::web) (feature `web`) and [`channel::http`](crate::channel::http)
//! (feature `channel`).

#[cfg(any(feature = "web", feature = "channel"))]
pub(crate) use exchange::{Failure, code_message, exchange};
use wasip2::http::types::{Fields, Method, OutgoingRequest, Scheme};

/// `scheme://authority/path?query` split for `wasi:http` (a `#fragment` is never sent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub https: bool,
    pub authority: String,
    /// Path and query, starting with `/`.
    pub path: String,
}

/// Split an absolute `http://` or `https://` URL (the scheme in any case). The message
/// of an error names the URL and what is wrong with it.
pub(crate) fn target(url: &str) -> Result<Target, String> {
    let (https, rest) = match url.split_once("://") {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("https") => (true, rest),
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => (false, rest),
        _ => return Err(format!("`{url}` is not an http(s) URL")),
    };
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("`{url}` contains whitespace or control characters"));
    }
    let rest = rest.split_once('#').map_or(rest, |(before, _)| before);
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.is_empty() {
        return Err(format!("`{url}` has no host"));
    }
    let path = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/{path}")
    };
    Ok(Target {
        https,
        authority: authority.to_string(),
        path,
    })
}

/// A request for `t` with `method` and `headers`. The error names what could not be set.
pub(crate) fn request(
    method: &Method,
    t: &Target,
    headers: &[(String, Vec<u8>)],
) -> Result<OutgoingRequest, String> {
    let fields = Fields::from_list(headers).map_err(|e| format!("bad header: {e:?}"))?;
    let request = OutgoingRequest::new(fields);
    let bad = |what: &str| format!("could not set the request {what}");
    request.set_method(method).map_err(|_| bad("method"))?;
    request
        .set_scheme(Some(if t.https {
            &Scheme::Https
        } else {
            &Scheme::Http
        }))
        .map_err(|_| bad("scheme"))?;
    request
        .set_authority(Some(&t.authority))
        .map_err(|_| bad("authority"))?;
    request
        .set_path_with_query(Some(&t.path))
        .map_err(|_| bad("path"))?;
    Ok(request)
}

/// One whole exchange (request, then the response body read up to a limit), for the
/// helpers that do not stream.
#[cfg(any(feature = "web", feature = "channel"))]
mod exchange {
    use super::{Target, request};
    use wasip2::http::outgoing_handler;
    use wasip2::http::types::{ErrorCode, Method, OutgoingBody, http_error_code};
    use wasip2::io::streams::StreamError;

    /// Largest read asked of a body stream at once.
    const READ_CHUNK: usize = 64 * 1024;
    /// `blocking-write-and-flush` accepts at most 4096 bytes per call.
    const WRITE_CHUNK: usize = 4096;

    /// A readable message for a `wasi:http` error code that means the same to every
    /// caller (DNS, connection, TLS, a broken response). `host` is the URL's authority.
    pub(crate) fn code_message(code: ErrorCode, url: &str, host: &str) -> String {
        match code {
            ErrorCode::DnsTimeout => format!("could not resolve host {host}: timed out"),
            ErrorCode::DnsError(p) => {
                let why = match (p.rcode, p.info_code) {
                    (Some(r), _) => r,
                    (None, Some(code)) => format!("DNS error {code}"),
                    (None, None) => "no such host".to_string(),
                };
                format!("could not resolve host {host}: {why}")
            }
            ErrorCode::DestinationNotFound => {
                format!("could not resolve host {host}: no such host")
            }
            ErrorCode::DestinationUnavailable => {
                format!("could not connect to host {host}: it is unavailable")
            }
            ErrorCode::DestinationIpUnroutable => {
                format!("could not connect to host {host}: its address is unroutable")
            }
            ErrorCode::ConnectionRefused => {
                format!("could not connect to host {host}: connection refused")
            }
            ErrorCode::ConnectionTimeout => {
                format!("could not connect to host {host}: timed out")
            }
            ErrorCode::ConnectionTerminated => {
                format!("the connection to {host} closed before the response was complete")
            }
            ErrorCode::ConnectionReadTimeout | ErrorCode::HttpResponseTimeout => {
                format!("{url} did not answer in time")
            }
            ErrorCode::ConnectionWriteTimeout => {
                format!("sending the request to {host} timed out")
            }
            ErrorCode::ConnectionLimitReached => {
                format!("could not connect to host {host}: too many open connections")
            }
            ErrorCode::TlsProtocolError => format!("the TLS handshake with {host} failed"),
            ErrorCode::TlsCertificateError => {
                format!("the TLS certificate of {host} is not valid for it")
            }
            ErrorCode::TlsAlertReceived(p) => format!(
                "{host} ended the TLS handshake: {}",
                p.alert_message
                    .or(p.alert_id.map(|id| format!("alert {id}")))
                    .unwrap_or_else(|| "no reason given".to_string())
            ),
            ErrorCode::HttpResponseIncomplete => {
                format!("the response from {url} was incomplete")
            }
            ErrorCode::HttpResponseContentCoding(c) => format!(
                "the response from {url} uses a content coding that cannot be read{}",
                c.map(|c| format!(" ({c})")).unwrap_or_default()
            ),
            ErrorCode::HttpProtocolError => {
                format!("{host} sent something that is not valid HTTP")
            }
            other => format!("the request to {url} failed: {other:?}"),
        }
    }

    /// Why [`exchange`] failed. The caller words the message (it knows the URL).
    #[derive(Debug)]
    pub(crate) enum Failure {
        /// The request could not be built (a bad header, say): what could not be set.
        Request(String),
        /// The host or the transport answered with an error code (also mid-body).
        Code(ErrorCode),
        /// The response never came.
        NoResponse,
        /// The response has no body, or its stream cannot be opened.
        NoBody,
        /// Writing the request body failed without an error code: the stream's message.
        Write(String),
        /// Reading the response body failed without an error code: the stream's message.
        Read(String),
    }

    /// A response with its body read (up to a limit).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(crate) struct Answer {
        pub status: u16,
        pub headers: Vec<(String, Vec<u8>)>,
        /// At most the `max_bytes` given to [`exchange`].
        pub body: Vec<u8>,
        /// The body went on past `max_bytes`; the rest was not read.
        pub truncated: bool,
    }

    /// Send `method` to `t` with `headers` and, when given, `body` (with a `Content-Length`,
    /// replacing any in `headers`: without one it would go chunked, and some servers read
    /// only `Content-Length`), then read at most `max_bytes` of the response body.
    pub(crate) fn exchange(
        method: &Method,
        t: &Target,
        headers: &[(String, Vec<u8>)],
        body: Option<&[u8]>,
        max_bytes: usize,
    ) -> Result<Answer, Failure> {
        let mut entries: Vec<(String, Vec<u8>)> = headers
            .iter()
            .filter(|(k, _)| body.is_none() || !k.eq_ignore_ascii_case("content-length"))
            .cloned()
            .collect();
        if let Some(b) = body {
            entries.push(("content-length".into(), b.len().to_string().into_bytes()));
        }
        let req = request(method, t, &entries).map_err(Failure::Request)?;
        let outgoing = match body {
            Some(_) => Some(
                req.body()
                    .map_err(|_| Failure::Request("could not set the request body".into()))?,
            ),
            None => None,
        };
        // Send first, then write the body: the host reads it while we write. Without a body
        // taken, the request goes with an empty one.
        let future = outgoing_handler::handle(req, None).map_err(Failure::Code)?;
        if let (Some(outgoing), Some(bytes)) = (outgoing, body) {
            {
                let out = outgoing
                    .write()
                    .map_err(|_| Failure::Request("could not open the request body".into()))?;
                for chunk in bytes.chunks(WRITE_CHUNK) {
                    out.blocking_write_and_flush(chunk).map_err(|e| match e {
                        StreamError::LastOperationFailed(e) => match http_error_code(&e) {
                            Some(code) => Failure::Code(code),
                            None => Failure::Write(e.to_debug_string()),
                        },
                        StreamError::Closed => Failure::Write("the request body was closed".into()),
                    })?;
                }
            }
            OutgoingBody::finish(outgoing, None).map_err(Failure::Code)?;
        }
        future.subscribe().block();
        let response = match future.get() {
            Some(Ok(Ok(r))) => r,
            Some(Ok(Err(e))) => return Err(Failure::Code(e)),
            Some(Err(())) | None => return Err(Failure::NoResponse),
        };
        let status = response.status();
        let headers = response.headers().entries();
        let incoming = response.consume().map_err(|_| Failure::NoBody)?;
        let stream = incoming.stream().map_err(|_| Failure::NoBody)?;
        let mut body = Vec::new();
        let mut truncated = false;
        loop {
            let want = max_bytes
                .saturating_add(1)
                .saturating_sub(body.len())
                .min(READ_CHUNK);
            match stream.blocking_read(want as u64) {
                Ok(bytes) => {
                    body.extend_from_slice(&bytes);
                    if body.len() > max_bytes {
                        body.truncate(max_bytes);
                        truncated = true;
                        break;
                    }
                }
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(e)) => {
                    return Err(match http_error_code(&e) {
                        Some(code) => Failure::Code(code),
                        None => Failure::Read(e.to_debug_string()),
                    });
                }
            }
        }
        // A child resource goes before its parent.
        drop(stream);
        drop(incoming);
        drop(response);
        Ok(Answer {
            status,
            headers,
            body,
            truncated,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(url: &str) -> Target {
        match target(url) {
            Ok(t) => t,
            Err(e) => unreachable!("{url}: {e}"),
        }
    }

    #[test]
    fn splits_urls() {
        let a = t("https://example.com/a/b?c=d#frag");
        assert!(a.https);
        assert_eq!(a.authority, "example.com");
        assert_eq!(a.path, "/a/b?c=d");
        let b = t("HTTP://example.com:8080");
        assert!(!b.https);
        assert_eq!(b.authority, "example.com:8080");
        assert_eq!(b.path, "/");
        assert_eq!(t("http://h?q=1").path, "/?q=1");
        assert_eq!(t("http://[::1]:80/x").authority, "[::1]:80");
    }

    #[test]
    fn refuses_what_is_not_http() {
        for url in [
            "ftp://example.com/",
            "example.com",
            "file:///etc/passwd",
            "https:///path",
            "http://exa mple.com/",
        ] {
            assert!(target(url).is_err(), "{url}");
        }
    }
}
