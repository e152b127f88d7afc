//! HTTP for channels over `wasi:http/outgoing-handler`: [`get`], [`post_json`] and
//! [`post_multipart`] (file uploads), each returning the status, the headers and the
//! body bytes (read up to a limit).
//!
//! The host lets a channel reach only its configured API origin, and it holds the
//! credential: a URL names it with [`TOKEN_PLACEHOLDER`]
//! (`https://api.telegram.org/bot{token}/getUpdates`). `{` and `}` are not allowed in a
//! request path, so the request carries [`TOKEN_IN_PATH`] (`%7Btoken%7D`) there, and the
//! host substitutes the token for that.
//!
//! Errors: whatever keeps a response from arriving (a refusal by the host, DNS,
//! connection, TLS, a broken body) is [`ChannelError::Failed`] with a readable message
//! that names the URL (with the placeholder, never the token). An HTTP error status is
//! not an error here: look at [`Response::status`].

use super::types::ChannelError;
use crate::http_target::{Failure, Target, code_message, exchange, target};
use wasip2::http::types::{ErrorCode, Method};

/// What a URL says where the host is to put the channel's credential.
pub const TOKEN_PLACEHOLDER: &str = "{token}";
/// The placeholder as it goes in the request's path (and query): percent-encoded, the
/// exact bytes the host replaces with the token.
pub const TOKEN_IN_PATH: &str = "%7Btoken%7D";

/// A response, its body read (up to a limit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// As received (names lowercased by the host).
    pub headers: Vec<(String, Vec<u8>)>,
    /// At most the `max_bytes` the call was given.
    pub body: Vec<u8>,
    /// The body went on past `max_bytes`; the rest was not read.
    pub truncated: bool,
}

impl Response {
    /// The first header called `name` (any case), as text (lossy UTF-8).
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).trim().to_string())
    }

    /// A 2xx status.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// One part of a `multipart/form-data` body: a form field, or a file when it has a
/// file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part<'a> {
    pub name: &'a str,
    pub file_name: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub data: &'a [u8],
}

impl<'a> Part<'a> {
    /// A plain form field.
    pub fn text(name: &'a str, value: &'a str) -> Part<'a> {
        Part {
            name,
            file_name: None,
            content_type: None,
            data: value.as_bytes(),
        }
    }

    /// A file upload (`content_type` defaults to `application/octet-stream`).
    pub fn file(
        name: &'a str,
        file_name: &'a str,
        content_type: Option<&'a str>,
        data: &'a [u8],
    ) -> Part<'a> {
        Part {
            name,
            file_name: Some(file_name),
            content_type,
            data,
        }
    }
}

/// GET `url` (which may contain [`TOKEN_PLACEHOLDER`]) with `headers`, reading at most
/// `max_bytes` of the body.
pub fn get(
    url: &str,
    headers: &[(&str, &str)],
    max_bytes: usize,
) -> Result<Response, ChannelError> {
    send(&Method::Get, url, headers, None, max_bytes)
}

/// POST `body` as `content-type` to `url`, reading at most `max_bytes` of the answer.
pub fn post(
    url: &str,
    headers: &[(&str, &str)],
    content_type: &str,
    body: &[u8],
    max_bytes: usize,
) -> Result<Response, ChannelError> {
    let mut all: Vec<(&str, &str)> = vec![("content-type", content_type)];
    all.extend(
        headers
            .iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case("content-type")),
    );
    send(&Method::Post, url, &all, Some(body), max_bytes)
}

/// POST `body` as JSON to `url`, reading at most `max_bytes` of the answer.
pub fn post_json(
    url: &str,
    body: &serde_json::Value,
    max_bytes: usize,
) -> Result<Response, ChannelError> {
    post(
        url,
        &[],
        "application/json",
        body.to_string().as_bytes(),
        max_bytes,
    )
}

/// POST `parts` as `multipart/form-data` to `url`, reading at most `max_bytes` of the
/// answer.
pub fn post_multipart(
    url: &str,
    parts: &[Part<'_>],
    max_bytes: usize,
) -> Result<Response, ChannelError> {
    let (content_type, body) = multipart(parts);
    post(url, &[], &content_type, &body, max_bytes)
}

/// The `content-type` (with its boundary) and the body of a `multipart/form-data`
/// request of `parts`. The boundary occurs in no part.
pub fn multipart(parts: &[Part<'_>]) -> (String, Vec<u8>) {
    let boundary = boundary_for(parts);
    let mut body = Vec::new();
    for p in parts {
        body.extend_from_slice(b"--");
        body.extend_from_slice(boundary.as_bytes());
        body.extend_from_slice(b"\r\ncontent-disposition: form-data; name=\"");
        body.extend_from_slice(quoted(p.name).as_bytes());
        body.push(b'"');
        if let Some(f) = p.file_name {
            body.extend_from_slice(b"; filename=\"");
            body.extend_from_slice(quoted(f).as_bytes());
            body.push(b'"');
            body.extend_from_slice(b"\r\ncontent-type: ");
            body.extend_from_slice(
                clean_header(p.content_type.unwrap_or("application/octet-stream")).as_bytes(),
            );
        } else if let Some(ct) = p.content_type {
            body.extend_from_slice(b"\r\ncontent-type: ");
            body.extend_from_slice(clean_header(ct).as_bytes());
        }
        body.extend_from_slice(b"\r\n\r\n");
        body.extend_from_slice(p.data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"--");
    body.extend_from_slice(boundary.as_bytes());
    body.extend_from_slice(b"--\r\n");
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// A boundary that none of the parts contains: derived from their bytes (so the same
/// parts give the same body), changed until it is absent.
fn boundary_for(parts: &[Part<'_>]) -> String {
    // FNV-1a over the parts, as a seed.
    let mut seed: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for &b in p.name.as_bytes().iter().chain(p.data.iter().take(4096)) {
            seed = (seed ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    let mut n: u64 = 0;
    loop {
        let candidate = format!("oxydra-{:016x}", seed.wrapping_add(n));
        let needle = candidate.as_bytes();
        let clash = parts.iter().any(|p| {
            p.data.windows(needle.len()).any(|w| w == needle)
                || p.name.contains(&candidate)
                || p.file_name.is_some_and(|f| f.contains(&candidate))
        });
        if !clash {
            return candidate;
        }
        n += 1;
    }
}

/// A name or file name inside a quoted `content-disposition` parameter (as browsers
/// write them: `"`, CR and LF percent-encoded).
fn quoted(s: &str) -> String {
    s.replace('"', "%22")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// A header value without line breaks.
fn clean_header(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).collect()
}

/// `url` split for `wasi:http`, the placeholder encoded in its path and query.
fn wire_target(url: &str) -> Result<Target, ChannelError> {
    let mut t = target(url).map_err(ChannelError::Failed)?;
    t.path = t.path.replace(TOKEN_PLACEHOLDER, TOKEN_IN_PATH);
    Ok(t)
}

fn send(
    method: &Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    max_bytes: usize,
) -> Result<Response, ChannelError> {
    let t = wire_target(url)?;
    let entries: Vec<(String, Vec<u8>)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect();
    let answer = exchange(method, &t, &entries, body, max_bytes)
        .map_err(|f| ChannelError::Failed(failure_message(f, url, &t.authority)))?;
    Ok(Response {
        status: answer.status,
        headers: answer.headers,
        body: answer.body,
        truncated: answer.truncated,
    })
}

fn failure_message(f: Failure, url: &str, host: &str) -> String {
    match f {
        Failure::Request(e) => format!("cannot request {url}: {e}"),
        Failure::Code(ErrorCode::HttpRequestDenied) => format!(
            "the host refused the request to {url}: a channel reaches only its configured API \
             origin"
        ),
        // The host's own messages pass through verbatim.
        Failure::Code(ErrorCode::InternalError(Some(m))) => m,
        Failure::Code(ErrorCode::InternalError(None)) => {
            format!("the host could not reach {url}")
        }
        Failure::Code(code) => code_message(code, url, host),
        Failure::NoResponse => format!("no response from {url}"),
        Failure::NoBody => format!("the response from {url} has no body"),
        Failure::Write(e) => format!("sending the request to {url} failed: {e}"),
        Failure::Read(e) => format!("reading the response from {url} failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_placeholder_is_encoded_in_the_path_only() {
        let t = match wire_target("https://api.telegram.org/bot{token}/getUpdates?offset=3") {
            Ok(t) => t,
            Err(e) => unreachable!("{e:?}"),
        };
        assert_eq!(t.authority, "api.telegram.org");
        assert_eq!(t.path, "/bot%7Btoken%7D/getUpdates?offset=3");
        let f = match wire_target("http://127.0.0.1:9/file/bot{token}/photos/a.jpg") {
            Ok(t) => t,
            Err(e) => unreachable!("{e:?}"),
        };
        assert_eq!(f.path, "/file/bot%7Btoken%7D/photos/a.jpg");
        assert!(matches!(
            wire_target("ftp://x/{token}"),
            Err(ChannelError::Failed(_))
        ));
    }

    #[test]
    fn multipart_bodies() {
        let parts = [
            Part::text("chat_id", "42"),
            Part::file("photo", "a \"b\".jpg", Some("image/jpeg"), b"\xff\xd8bytes"),
        ];
        let (ct, body) = multipart(&parts);
        let boundary = ct
            .strip_prefix("multipart/form-data; boundary=")
            .unwrap_or_else(|| unreachable!("{ct}"));
        let mut want = Vec::new();
        want.extend_from_slice(
            format!(
                "--{boundary}\r\ncontent-disposition: form-data; name=\"chat_id\"\r\n\r\n42\r\n\
                 --{boundary}\r\ncontent-disposition: form-data; name=\"photo\"; \
                 filename=\"a %22b%22.jpg\"\r\ncontent-type: image/jpeg\r\n\r\n"
            )
            .as_bytes(),
        );
        want.extend_from_slice(b"\xff\xd8bytes\r\n");
        want.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        assert_eq!(body, want);
        // Deterministic.
        assert_eq!(multipart(&parts).1, body);
    }

    #[test]
    fn the_boundary_is_in_no_part() {
        let first = boundary_for(&[Part::text("a", "x")]);
        let data = format!("before {first} after");
        let parts = [Part::text("a", "x"), Part::text("b", &data)];
        let b = boundary_for(&parts);
        assert!(!data.contains(&b));
        let (ct, _) = multipart(&parts);
        assert!(ct.ends_with(&b));
    }

    #[test]
    fn failures_read_well() {
        let url = "https://api.telegram.org/bot{token}/getMe";
        let host = "api.telegram.org";
        assert_eq!(
            failure_message(Failure::Code(ErrorCode::ConnectionRefused), url, host),
            "could not connect to host api.telegram.org: connection refused"
        );
        assert_eq!(
            failure_message(
                Failure::Code(ErrorCode::InternalError(Some(
                    "no response within 40 s".into()
                ))),
                url,
                host
            ),
            "no response within 40 s"
        );
        assert!(
            failure_message(Failure::Code(ErrorCode::HttpRequestDenied), url, host)
                .contains("refused")
        );
    }
}
