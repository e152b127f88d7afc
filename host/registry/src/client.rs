//! A small client of the OCI distribution API: manifests, blobs, uploads, tags, over
//! hyper (HTTP/1.1) with rustls, one connection per request (registry traffic is a
//! handful of requests per install).
//!
//! Auth follows the registry token flow: a `401` with `WWW-Authenticate: Bearer
//! realm=…,service=…,scope=…` is answered by asking the realm for a token (anonymously,
//! or with the configured basic credentials), then retrying; `Basic` challenges get the
//! basic credentials. A static token is sent as `Bearer` from the first request.
//! Credentials appear in no message and no log line.
//!
//! Plain http is used only for a loopback registry or when the operator said
//! `insecure`; everything else is https, checked against the Mozilla roots plus the
//! operator's `ca_file`.

mod auth;
mod transport;

use crate::artifact::{self, Descriptor, sha256_digest};
use crate::{Reference, RegistryError};
use bytes::Bytes;
use http::{Method, StatusCode};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;
use transport::{Response, Transport};

/// Basic credentials or a bearer token, read from the environment by the caller.
#[derive(Clone, Default)]
pub struct Credentials {
    pub username: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the values.
        f.debug_struct("Credentials")
            .field("username", &self.username.as_ref().map(|_| "<set>"))
            .field("password", &self.password.as_ref().map(|_| "<set>"))
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .finish()
    }
}

#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Plain http to a registry that is not on loopback.
    pub insecure: bool,
    /// Extra CA certificates (PEM) trusted for this registry: a private or self-signed CA.
    pub ca_file: Option<PathBuf>,
    pub credentials: Credentials,
}

/// One request's deadline, connection and body included: a manifest is small, a
/// component a few MiB; two minutes covers a slow link without hanging forever.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Redirects followed for one request (blob stores redirect once, to a CDN).
const MAX_REDIRECTS: usize = 5;

/// A client for one registry.
pub struct Client {
    registry: String,
    https: bool,
    transport: Transport,
    credentials: Credentials,
    /// Bearer tokens by scope.
    tokens: Mutex<HashMap<String, String>>,
}

/// A manifest as served, with the digest of its bytes.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub bytes: Vec<u8>,
    pub digest: String,
    pub media_type: Option<String>,
}

const ACCEPT_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json;q=0.5, application/vnd.docker.distribution.manifest.list.v2+json;q=0.5";

impl Client {
    /// A client for `registry` (`HOST[:PORT]`).
    pub fn new(reference: &Reference, options: ClientOptions) -> Result<Client, RegistryError> {
        let https = !(options.insecure || reference.is_loopback() && options.ca_file.is_none());
        let transport = Transport::new(options.ca_file.as_deref(), options.insecure)?;
        Ok(Client {
            registry: reference.registry.clone(),
            https,
            transport,
            credentials: options.credentials,
            tokens: Mutex::new(HashMap::new()),
        })
    }

    fn base(&self) -> String {
        format!(
            "{}://{}",
            if self.https { "https" } else { "http" },
            self.registry
        )
    }

    /// The manifest `r` names (its digest when pinned, else its tag), checked against
    /// the pinned digest.
    pub fn manifest(&self, r: &Reference) -> Result<Fetched, RegistryError> {
        let url = format!(
            "{}/v2/{}/manifests/{}",
            self.base(),
            r.repository,
            r.manifest_ref()
        );
        let resp = self.request(
            r,
            Method::GET,
            &url,
            &[("accept", ACCEPT_MANIFEST.to_string())],
            Bytes::new(),
            artifact::MAX_MANIFEST_BYTES,
            false,
        )?;
        match resp.status {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => {
                return Err(RegistryError::NotFound {
                    reference: r.to_string(),
                    what: not_found_what(&resp.body, r),
                });
            }
            s => return Err(http_error(r, s, &resp.body)),
        }
        let digest = sha256_digest(&resp.body);
        if let Some(pinned) = &r.digest
            && *pinned != digest
        {
            return Err(RegistryError::Digest {
                reference: r.to_string(),
                what: "manifest".into(),
                expected: pinned.clone(),
                actual: digest,
            });
        }
        Ok(Fetched {
            media_type: resp.content_type,
            bytes: resp.body.to_vec(),
            digest,
        })
    }

    /// The manifest at `tag`, or `None` when the registry has no such tag.
    pub fn manifest_if_any(&self, r: &Reference) -> Result<Option<Fetched>, RegistryError> {
        match self.manifest(r) {
            Ok(f) => Ok(Some(f)),
            Err(RegistryError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A blob, checked against its descriptor's digest and size (at most `limit` bytes
    /// are read, whatever the server sends).
    pub fn blob(
        &self,
        r: &Reference,
        d: &Descriptor,
        what: &str,
        limit: u64,
    ) -> Result<Vec<u8>, RegistryError> {
        if d.size > limit {
            return Err(RegistryError::TooLarge {
                reference: r.to_string(),
                what: what.into(),
                size: d.size,
                limit,
            });
        }
        let url = format!("{}/v2/{}/blobs/{}", self.base(), r.repository, d.digest);
        let resp = self.request(
            r,
            Method::GET,
            &url,
            &[],
            Bytes::new(),
            d.size.max(1),
            false,
        )?;
        match resp.status {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => {
                return Err(RegistryError::NotFound {
                    reference: r.to_string(),
                    what: format!("{what} blob {}", d.digest),
                });
            }
            s => return Err(http_error(r, s, &resp.body)),
        }
        let actual = sha256_digest(&resp.body);
        if actual != d.digest || resp.body.len() as u64 != d.size {
            return Err(RegistryError::Digest {
                reference: r.to_string(),
                what: what.into(),
                expected: format!("{} ({} bytes)", d.digest, d.size),
                actual: format!("{actual} ({} bytes)", resp.body.len()),
            });
        }
        Ok(resp.body.to_vec())
    }

    /// Upload a blob unless the repository has it already; returns its digest.
    pub fn push_blob(&self, r: &Reference, bytes: &[u8]) -> Result<String, RegistryError> {
        let digest = sha256_digest(bytes);
        let head = format!("{}/v2/{}/blobs/{digest}", self.base(), r.repository);
        let resp = self.request(r, Method::HEAD, &head, &[], Bytes::new(), 0, true)?;
        if resp.status == StatusCode::OK {
            return Ok(digest);
        }
        let start = format!("{}/v2/{}/blobs/uploads/", self.base(), r.repository);
        let resp = self.request(r, Method::POST, &start, &[], Bytes::new(), 1 << 16, true)?;
        if resp.status != StatusCode::ACCEPTED {
            return Err(http_error(r, resp.status, &resp.body));
        }
        let Some(location) = resp.location else {
            return Err(RegistryError::Http {
                reference: r.to_string(),
                status: resp.status.as_u16(),
                message: "an upload was started but the registry gave no Location".into(),
            });
        };
        let mut url = transport::resolve(&self.base(), &location);
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str("digest=");
        url.push_str(&auth::encode(&digest));
        let resp = self.request(
            r,
            Method::PUT,
            &url,
            &[("content-type", "application/octet-stream".into())],
            Bytes::copy_from_slice(bytes),
            1 << 16,
            true,
        )?;
        if resp.status != StatusCode::CREATED {
            return Err(http_error(r, resp.status, &resp.body));
        }
        Ok(digest)
    }

    /// Put a manifest at `tag`; returns its digest.
    pub fn push_manifest(
        &self,
        r: &Reference,
        tag: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<String, RegistryError> {
        let url = format!("{}/v2/{}/manifests/{tag}", self.base(), r.repository);
        let resp = self.request(
            r,
            Method::PUT,
            &url,
            &[("content-type", media_type.to_string())],
            Bytes::copy_from_slice(bytes),
            1 << 16,
            true,
        )?;
        if resp.status != StatusCode::CREATED && resp.status != StatusCode::OK {
            return Err(http_error(r, resp.status, &resp.body));
        }
        Ok(sha256_digest(bytes))
    }

    /// Every tag of the repository (following `Link: <…>; rel="next"` pages).
    pub fn tags(&self, r: &Reference) -> Result<Vec<String>, RegistryError> {
        #[derive(serde::Deserialize)]
        struct List {
            #[serde(default)]
            tags: Option<Vec<String>>,
        }
        let mut url = format!("{}/v2/{}/tags/list?n=1000", self.base(), r.repository);
        let mut out = Vec::new();
        for _ in 0..100 {
            let resp = self.request(r, Method::GET, &url, &[], Bytes::new(), 4 << 20, false)?;
            match resp.status {
                StatusCode::OK => {}
                StatusCode::NOT_FOUND => {
                    return Err(RegistryError::NotFound {
                        reference: r.to_string(),
                        what: format!("repository `{}`", r.repository),
                    });
                }
                s => return Err(http_error(r, s, &resp.body)),
            }
            let list: List =
                serde_json::from_slice(&resp.body).map_err(|e| RegistryError::Http {
                    reference: r.to_string(),
                    status: 200,
                    message: format!("the tag list is not JSON ({e})"),
                })?;
            out.extend(list.tags.unwrap_or_default());
            match resp.next_link {
                Some(next) => url = transport::resolve(&self.base(), &next),
                None => break,
            }
        }
        Ok(out)
    }

    /// One request with auth and redirects. `push` asks for a push scope.
    #[allow(clippy::too_many_arguments)]
    fn request(
        &self,
        r: &Reference,
        method: Method,
        url: &str,
        headers: &[(&str, String)],
        body: Bytes,
        limit: u64,
        push: bool,
    ) -> Result<Response, RegistryError> {
        let scope = format!(
            "repository:{}:{}",
            r.repository,
            if push { "pull,push" } else { "pull" }
        );
        let mut retried_auth = false;
        let mut url = url.to_string();
        let mut redirects = 0;
        loop {
            let same_host = transport::authority(&url).is_some_and(|a| a == self.registry);
            let mut hs: Vec<(&str, String)> = headers.to_vec();
            if same_host && let Some(a) = self.authorization(&scope) {
                hs.push(("authorization", a));
            }
            let resp = self
                .transport
                .send(
                    &self.registry,
                    method.clone(),
                    &url,
                    &hs,
                    body.clone(),
                    limit,
                )
                .map_err(|e| match e {
                    RegistryError::Unreachable {
                        registry, message, ..
                    } => RegistryError::Unreachable {
                        reference: Some(r.to_string()),
                        registry,
                        message,
                    },
                    e => e,
                })?;
            if resp.status == StatusCode::UNAUTHORIZED && same_host && !retried_auth {
                retried_auth = true;
                let challenge = resp.www_authenticate.clone().unwrap_or_default();
                self.authenticate(r, &challenge, &scope)?;
                continue;
            }
            if matches!(resp.status.as_u16(), 401 | 403) {
                return Err(self.denied(r, resp.status));
            }
            if resp.status.is_redirection()
                && let Some(loc) = &resp.location
                && (method == Method::GET || method == Method::HEAD)
            {
                redirects += 1;
                if redirects > MAX_REDIRECTS {
                    return Err(RegistryError::Http {
                        reference: r.to_string(),
                        status: resp.status.as_u16(),
                        message: format!("more than {MAX_REDIRECTS} redirects"),
                    });
                }
                url = transport::resolve(&self.base(), loc);
                continue;
            }
            return Ok(resp);
        }
    }

    fn authorization(&self, scope: &str) -> Option<String> {
        if let Some(t) = &self.credentials.token {
            return Some(format!("Bearer {t}"));
        }
        let tokens = self.tokens.lock().ok()?;
        if let Some(t) = tokens.get(scope) {
            return Some(format!("Bearer {t}"));
        }
        tokens.get("basic").cloned()
    }

    fn authenticate(
        &self,
        r: &Reference,
        challenge: &str,
        scope: &str,
    ) -> Result<(), RegistryError> {
        let c = auth::parse_challenge(challenge);
        match c {
            Some(auth::Challenge::Basic) => {
                let Some(basic) = auth::basic(&self.credentials) else {
                    return Err(self.denied(r, StatusCode::UNAUTHORIZED));
                };
                if let Ok(mut t) = self.tokens.lock() {
                    t.insert("basic".into(), basic);
                }
                Ok(())
            }
            Some(auth::Challenge::Bearer {
                realm,
                service,
                scope: s,
            }) => {
                let scope_asked = s.unwrap_or_else(|| scope.to_string());
                let token = auth::fetch_token(
                    &self.transport,
                    &self.registry,
                    &realm,
                    service.as_deref(),
                    &scope_asked,
                    &self.credentials,
                    self.https,
                )
                .map_err(|e| match e {
                    RegistryError::Denied { .. } => self.denied(r, StatusCode::UNAUTHORIZED),
                    e => e,
                })?;
                if let Ok(mut t) = self.tokens.lock() {
                    t.insert(scope.to_string(), token);
                }
                Ok(())
            }
            None => Err(self.denied(r, StatusCode::UNAUTHORIZED)),
        }
    }

    fn denied(&self, r: &Reference, status: StatusCode) -> RegistryError {
        let c = &self.credentials;
        let advice = if c.token.is_some() {
            "the configured token was refused (check token_env)".to_string()
        } else if c.username.is_some() {
            "the configured username and password were refused (check username_env and password_env)".to_string()
        } else {
            format!(
                "it needs credentials: set username_env and password_env (or token_env) under [components.registries.\"{}\"]",
                self.registry
            )
        };
        RegistryError::Denied {
            reference: r.to_string(),
            status: status.as_u16(),
            advice,
        }
    }
}

/// `MANIFEST_UNKNOWN` → the tag; `NAME_UNKNOWN` → the repository.
fn not_found_what(body: &[u8], r: &Reference) -> String {
    let text = String::from_utf8_lossy(body);
    if text.contains("NAME_UNKNOWN") {
        format!("repository `{}`", r.repository)
    } else if let Some(d) = &r.digest {
        format!("manifest {d}")
    } else {
        format!("tag `{}`", r.tag.as_deref().unwrap_or("latest"))
    }
}

fn http_error(r: &Reference, status: StatusCode, body: &[u8]) -> RegistryError {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<E>,
    }
    #[derive(serde::Deserialize)]
    struct E {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    let message = match serde_json::from_slice::<Errors>(body) {
        Ok(e) if !e.errors.is_empty() => e
            .errors
            .iter()
            .map(|e| format!("{} {}", e.code, e.message).trim().to_string())
            .collect::<Vec<_>>()
            .join("; "),
        _ => {
            let t = String::from_utf8_lossy(body);
            let t = t.trim();
            if t.is_empty() {
                status.canonical_reason().unwrap_or("").to_string()
            } else {
                t.chars().take(200).collect()
            }
        }
    };
    RegistryError::Http {
        reference: r.to_string(),
        status: status.as_u16(),
        message,
    }
}
