//! The registry token flow (`WWW-Authenticate: Bearer realm=…`) and basic credentials.

use super::Credentials;
use super::transport::Transport;
use crate::RegistryError;
use crate::reference::is_loopback_host;
use base64::Engine;
use bytes::Bytes;
use http::{Method, StatusCode};

#[derive(Debug, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parse `Bearer realm="…",service="…",scope="…"` or `Basic realm="…"`.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let (scheme, params) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut realm = None;
    let mut service = None;
    let mut scope = None;
    let mut rest = params.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (&q[..end], &q[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        match key.as_str() {
            "realm" => realm = Some(value.to_string()),
            "service" => service = Some(value.to_string()),
            "scope" => scope = Some(value.to_string()),
            _ => {}
        }
        rest = next.trim_start_matches([',', ' ']);
    }
    Some(Challenge::Bearer {
        realm: realm?,
        service,
        scope,
    })
}

pub fn basic(c: &Credentials) -> Option<String> {
    let (Some(u), Some(p)) = (&c.username, &c.password) else {
        return None;
    };
    Some(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
    ))
}

/// Percent-encode a query value (RFC 3986 unreserved characters pass through).
pub fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Ask the realm for a token for `scope`, with basic credentials when configured.
pub fn fetch_token(
    transport: &Transport,
    registry: &str,
    realm: &str,
    service: Option<&str>,
    scope: &str,
    credentials: &Credentials,
    registry_https: bool,
) -> Result<String, RegistryError> {
    // Credentials go to the realm only over TLS, or to loopback.
    let realm_host = super::transport::authority(realm).unwrap_or("");
    let realm_host = realm_host.rsplit_once(':').map_or(realm_host, |(h, _)| h);
    // (A registry the operator reaches over plain http anyway may use a plain realm.)
    let realm_ok = realm.starts_with("https://") || is_loopback_host(realm_host) || !registry_https;
    if !realm_ok {
        return Err(RegistryError::other(format!(
            "{registry}: the registry's token service `{realm}` is not https; refusing to send credentials there"
        )));
    }
    let mut url = realm.to_string();
    url.push(if url.contains('?') { '&' } else { '?' });
    if let Some(s) = service {
        url.push_str(&format!("service={}&", encode(s)));
    }
    url.push_str(&format!("scope={}", encode(scope)));
    let mut headers = Vec::new();
    if let Some(b) = basic(credentials) {
        headers.push(("authorization", b));
    }
    let resp = transport.send(registry, Method::GET, &url, &headers, Bytes::new(), 1 << 20)?;
    if matches!(
        resp.status,
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
    ) {
        return Err(RegistryError::Denied {
            reference: registry.to_string(),
            status: resp.status.as_u16(),
            advice: String::new(),
        });
    }
    if resp.status != StatusCode::OK {
        return Err(RegistryError::Http {
            reference: registry.to_string(),
            status: resp.status.as_u16(),
            message: "the token service did not issue a token".into(),
        });
    }
    #[derive(serde::Deserialize)]
    struct Token {
        token: Option<String>,
        access_token: Option<String>,
    }
    let t: Token = serde_json::from_slice(&resp.body).map_err(|_| RegistryError::Http {
        reference: registry.to_string(),
        status: 200,
        message: "the token service's answer is not a token".into(),
    })?;
    t.token
        .or(t.access_token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| RegistryError::Http {
            reference: registry.to_string(),
            status: 200,
            message: "the token service's answer holds no token".into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_challenges_registries_send() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:a/b:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://ghcr.io/token".into(),
                service: Some("ghcr.io".into()),
                scope: Some("repository:a/b:pull".into()),
            })
        );
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token", service="registry.docker.io""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: None,
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate"), None);
        assert_eq!(
            encode("repository:a/b:pull,push"),
            "repository%3Aa%2Fb%3Apull%2Cpush"
        );
    }

    #[test]
    fn credentials_never_print() {
        let c = Credentials {
            username: Some("u".into()),
            password: Some("hunter2".into()),
            token: Some("tok".into()),
        };
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("tok\""),
            "{shown}"
        );
    }
}
