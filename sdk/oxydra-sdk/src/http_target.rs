//! Splitting a URL for `wasi:http` and building the outgoing request: shared by
//! [`llm::http`](crate::llm::http) (feature `llm`) and [`web`](crate::web) (feature `web`).

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
