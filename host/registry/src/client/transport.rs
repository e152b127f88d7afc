//! One HTTP/1.1 exchange on a fresh connection: TCP, TLS for https (Mozilla roots plus
//! the operator's CA file), the request, and the body read up to a limit. A
//! current-thread tokio runtime drives it, so callers stay synchronous.

use crate::RegistryError;
use crate::reference::is_loopback_host;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use std::path::Path;
use std::sync::Arc;
use tokio::net::TcpStream;

pub struct Transport {
    rt: tokio::runtime::Runtime,
    tls: Arc<rustls::ClientConfig>,
    insecure: bool,
}

#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub location: Option<String>,
    pub www_authenticate: Option<String>,
    pub content_type: Option<String>,
    /// The `Link: <…>; rel="next"` target of a paginated list.
    pub next_link: Option<String>,
    pub body: Bytes,
}

/// `scheme://authority` of an absolute URL, plus the authority alone.
pub fn authority(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    Some(rest.split(['/', '?']).next().unwrap_or(rest))
}

/// An absolute URL for `location`, which may be relative to `base` (`scheme://host`).
pub fn resolve(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        location.to_string()
    } else if location.starts_with('/') {
        format!("{base}{location}")
    } else {
        format!("{base}/{location}")
    }
}

impl Transport {
    pub fn new(ca_file: Option<&Path>, insecure: bool) -> Result<Transport, RegistryError> {
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.into(),
        };
        if let Some(path) = ca_file {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| {
                    RegistryError::other(format!(
                        "{}: not a PEM file of CA certificates ({e})",
                        path.display()
                    ))
                })?;
            if certs.is_empty() {
                return Err(RegistryError::other(format!(
                    "{}: holds no PEM certificate",
                    path.display()
                )));
            }
            for c in certs {
                roots.add(c).map_err(|e| {
                    RegistryError::other(format!(
                        "{}: a certificate is unusable: {e}",
                        path.display()
                    ))
                })?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| RegistryError::other(format!("TLS setup failed: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| RegistryError::other(format!("could not start the I/O runtime: {e}")))?;
        Ok(Transport {
            rt,
            tls: Arc::new(tls),
            insecure,
        })
    }

    /// Send one request to `url`. `registry` names the registry in messages.
    pub fn send(
        &self,
        registry: &str,
        method: Method,
        url: &str,
        headers: &[(&str, String)],
        body: Bytes,
        limit: u64,
    ) -> Result<Response, RegistryError> {
        self.rt.block_on(async {
            match tokio::time::timeout(
                super::REQUEST_TIMEOUT,
                self.exchange(registry, method, url, headers, body, limit),
            )
            .await
            {
                Ok(r) => r,
                Err(_) => Err(RegistryError::Unreachable {
                    reference: None,
                    registry: registry.to_string(),
                    message: format!(
                        "no complete answer within {} s",
                        super::REQUEST_TIMEOUT.as_secs()
                    ),
                }),
            }
        })
    }

    async fn exchange(
        &self,
        registry: &str,
        method: Method,
        url: &str,
        headers: &[(&str, String)],
        body: Bytes,
        limit: u64,
    ) -> Result<Response, RegistryError> {
        let unreachable = |message: String| RegistryError::Unreachable {
            reference: None,
            registry: registry.to_string(),
            message,
        };
        let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(RegistryError::other(format!(
                "`{url}` is not an http(s) URL"
            )));
        };
        let (auth, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = split_authority(auth, if https { 443 } else { 80 });
        if !https && !self.insecure && !is_loopback_host(&host) {
            return Err(RegistryError::other(format!(
                "refusing plain http to {auth} (only loopback registries, or ones marked insecure, are reached without TLS)"
            )));
        }
        let bare = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let tcp = TcpStream::connect((bare.as_str(), port))
            .await
            .map_err(|e| unreachable(format!("connecting to {auth}: {e}")))?;
        let request = {
            let mut b = Request::builder()
                .method(method)
                .uri(path)
                .header("host", auth)
                .header(
                    "user-agent",
                    concat!("oxydra-host/", env!("CARGO_PKG_VERSION")),
                );
            for (k, v) in headers {
                b = b.header(*k, v);
            }
            b.header("content-length", body.len())
                .body(Full::new(body))
                .map_err(|e| RegistryError::other(format!("bad request for {auth}: {e}")))?
        };
        let resp = if https {
            let name = match bare.parse::<std::net::IpAddr>() {
                Ok(ip) => ServerName::IpAddress(ip.into()),
                Err(_) => ServerName::try_from(bare.clone())
                    .map_err(|e| unreachable(format!("`{bare}` is not a TLS server name: {e}")))?,
            };
            let tls = tokio_rustls::TlsConnector::from(self.tls.clone())
                .connect(name, tcp)
                .await
                .map_err(|e| unreachable(format!("TLS with {auth} failed: {e}")))?;
            roundtrip(TokioIo::new(tls), request, auth).await?
        } else {
            roundtrip(TokioIo::new(tcp), request, auth).await?
        };
        let (parts, mut incoming) = resp.into_parts();
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let mut body = Vec::new();
        while let Some(frame) = incoming.frame().await {
            let frame = frame.map_err(|e| unreachable(format!("reading from {auth}: {e}")))?;
            if let Ok(data) = frame.into_data() {
                if body.len() as u64 + data.len() as u64 > limit.max(64 << 10) {
                    return Err(RegistryError::TooLarge {
                        reference: url.to_string(),
                        what: "the response".into(),
                        size: body.len() as u64 + data.len() as u64,
                        limit: limit.max(64 << 10),
                    });
                }
                body.extend_from_slice(&data);
            }
        }
        let next_link = header("link").and_then(|l| {
            let (target, rel) = l.split_once(';')?;
            rel.contains("rel=\"next\"").then(|| {
                target
                    .trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_string()
            })
        });
        Ok(Response {
            status: parts.status,
            location: header("location"),
            www_authenticate: header("www-authenticate"),
            content_type: header("content-type"),
            next_link,
            body: Bytes::from(body),
        })
    }
}

async fn roundtrip<T>(
    io: TokioIo<T>,
    request: Request<Full<Bytes>>,
    auth: &str,
) -> Result<http::Response<hyper::body::Incoming>, RegistryError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let failed = |e: hyper::Error| RegistryError::Unreachable {
        reference: None,
        registry: auth.to_string(),
        message: format!("HTTP exchange with {auth} failed: {e}"),
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(failed)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender.send_request(request).await.map_err(failed)
}

/// `host[:port]` (IPv6 in brackets) → host and port.
fn split_authority(auth: &str, default_port: u16) -> (String, u16) {
    if auth.starts_with('[') {
        if let Some((h, p)) = auth.rsplit_once("]:") {
            return (format!("{h}]"), p.parse().unwrap_or(default_port));
        }
        return (auth.to_string(), default_port);
    }
    match auth.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.parse().unwrap_or(default_port)),
        None => (auth.to_string(), default_port),
    }
}
