//! Sending one `web` tool request: check the URL, resolve the name once (system resolver,
//! or the test resolver), check every address, connect only to an address that was
//! checked (no second resolution, so rebinding between check and connect cannot
//! happen), and follow redirects here, checking every hop again.

use super::dns;
use super::policy::{Denial, Host, Policy, Target};
use crate::capabilities::http::Origin;
use bytes::Bytes;
use http::header::{HOST, HeaderName, HeaderValue, LOCATION};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::{Error as HttpError, WasiBody};

/// Where names are resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolver {
    /// The system's resolver (getaddrinfo).
    System,
    /// A DNS server on loopback, for tests (`[tools.web] resolver`).
    Dns(SocketAddr),
}

/// The response header that carries the URL of the response the component receives
/// (after the redirects the host followed).
pub const FINAL_URL_HEADER: &str = "oxydra-final-url";

/// What one `web` tool may reach and how long it may take: built from `[tools.web]`
/// (and the tool's own table) by the session layer.
#[derive(Debug, Clone)]
pub struct WebAccess {
    pub policy: Policy,
    pub resolver: Resolver,
    /// The whole request: connecting, every redirect hop and the body. `tools.web.timeout_secs`.
    pub timeout: Duration,
    /// One TCP (and TLS) connection. `tools.web.connect_timeout_secs`.
    pub connect_timeout: Duration,
    /// Most body bytes of one response. `tools.web.max_response_bytes`.
    pub max_response_bytes: u64,
    /// Redirects followed per request (0..=5). `tools.web.max_redirects`.
    pub max_redirects: u8,
    /// Headers the host adds to requests for one origin (a search API's key); the
    /// component never sees them, and a header of the same name it sets is replaced.
    pub secrets: Vec<(Origin, HeaderName, HeaderValue)>,
}

impl Default for WebAccess {
    fn default() -> Self {
        WebAccess {
            policy: Policy::default(),
            resolver: Resolver::System,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_response_bytes: 5 * 1024 * 1024,
            max_redirects: 5,
            secrets: Vec::new(),
        }
    }
}

fn failed(msg: String) -> HttpError {
    HttpError::InternalError(Some(msg))
}

fn denied(d: Denial) -> HttpError {
    tracing::warn!(denial = %d, "web request denied");
    failed(d.to_string())
}

fn timeout_text(url: &Uri, access: &WebAccess) -> String {
    format!(
        "web request to {url} timed out after {} s (tools.web.timeout_secs)",
        access.timeout.as_secs()
    )
}

fn timed_out(url: &Uri, access: &WebAccess) -> HttpError {
    failed(timeout_text(url, access))
}

/// Resolve `target`'s host (once) and check every address: a name with any denied
/// address is denied as a whole.
async fn resolve_checked(
    access: &WebAccess,
    url: &Uri,
    target: &Target,
    deadline: Instant,
) -> Result<Vec<(IpAddr, bool)>, HttpError> {
    let name = match &target.host {
        Host::Ip(ip) => {
            let by_rule = access
                .policy
                .check_ip(&url.to_string(), target, *ip)
                .map_err(denied)?;
            return Ok(vec![(*ip, by_rule)]);
        }
        Host::Name(n) => n,
    };
    let lookup = async {
        match &access.resolver {
            Resolver::System => match super::super::egress::proxy() {
                // Inside a tier the runtime has no DNS: the runner's proxy resolves.
                Some(socket) => super::super::egress::resolve(socket, name)
                    .await
                    .map_err(std::io::Error::other),
                None => tokio::net::lookup_host((name.as_str(), target.port))
                    .await
                    .map(|it| it.map(|sa| sa.ip()).collect::<Vec<_>>()),
            },
            Resolver::Dns(server) => {
                dns::resolve(
                    *server,
                    name,
                    access.connect_timeout.min(Duration::from_secs(5)),
                )
                .await
            }
        }
    };
    let mut addrs = tokio::time::timeout_at(deadline, lookup)
        .await
        .map_err(|_| timed_out(url, access))?
        .map_err(|e| failed(format!("could not resolve `{name}`: {e}")))?;
    let mut seen = std::collections::HashSet::new();
    addrs.retain(|a| seen.insert(*a));
    if addrs.is_empty() {
        return Err(failed(format!(
            "`{name}` has no address (DNS returned none)"
        )));
    }
    let mut checked = Vec::with_capacity(addrs.len());
    for ip in addrs {
        let by_rule = access
            .policy
            .check_ip(&url.to_string(), target, ip)
            .map_err(denied)?;
        checked.push((ip, by_rule));
    }
    Ok(checked)
}

trait Stream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Stream for T {}

pub(crate) fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.into(),
            };
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|b| b.with_root_certificates(roots).with_no_client_auth())
                .unwrap_or_else(|_| {
                    rustls::ClientConfig::builder()
                        .with_root_certificates(rustls::RootCertStore::empty())
                        .with_no_client_auth()
                });
            Arc::new(config)
        })
        .clone()
}

/// Connect to the first of `addrs` (all checked) that answers: TCP, then TLS for https
/// with the URL's host as the server name.
async fn connect(
    access: &WebAccess,
    url: &Uri,
    target: &Target,
    addrs: &[(IpAddr, bool)],
    deadline: Instant,
) -> Result<Box<dyn Stream>, HttpError> {
    let mut last = String::new();
    for (ip, by_rule) in addrs {
        let addr = SocketAddr::new(*ip, target.port);
        let until = deadline.min(Instant::now() + access.connect_timeout);
        // Inside a tier: to the checked address through the runner's egress proxy,
        // which checks it again.
        if let Some(socket) = crate::capabilities::egress::proxy() {
            let authority = addr.to_string();
            let via = crate::capabilities::egress::tunnel(socket, &authority);
            let stream: Box<dyn Stream> = match tokio::time::timeout_at(until, via).await {
                Ok(Ok(s)) => Box::new(s),
                Ok(Err(e)) => {
                    last = e;
                    continue;
                }
                Err(_) => {
                    last = format!(
                        "{addr}: no tunnel within {} s (tools.web.connect_timeout_secs)",
                        access.connect_timeout.as_secs()
                    );
                    continue;
                }
            };
            return tls_over(stream, target, addr, until).await;
        }
        let tcp = match tokio::time::timeout_at(until, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                last = format!("{addr}: {e}");
                continue;
            }
            Err(_) => {
                last = format!(
                    "{addr}: no connection within {} s (tools.web.connect_timeout_secs)",
                    access.connect_timeout.as_secs()
                );
                continue;
            }
        };
        // A public address of this machine is reached over loopback, past the
        // firewall: refused unless an operator rule allowed it.
        if !by_rule
            && let (Ok(local), Ok(peer)) = (tcp.local_addr(), tcp.peer_addr())
            && local.ip() == peer.ip()
        {
            return Err(denied(Denial {
                url: url.to_string(),
                address: Some(*ip),
                rule: "it is an address of this machine (reached over loopback); web tools reach other hosts only, unless a [tools.web] allow rule names it".into(),
            }));
        }
        match tls_over(Box::new(tcp), target, addr, until).await {
            Err(e) if e.to_string().contains("did not finish in time") => last = e.to_string(),
            other => return other,
        }
    }
    Err(failed(format!(
        "could not connect to {}: {last}",
        target.authority()
    )))
}

/// TLS over `stream` for https (the URL's host as the server name); the stream as it is
/// for http.
async fn tls_over(
    stream: Box<dyn Stream>,
    target: &Target,
    addr: SocketAddr,
    until: Instant,
) -> Result<Box<dyn Stream>, HttpError> {
    if !target.https {
        return Ok(stream);
    }
    let server_name = match &target.host {
        Host::Ip(ip) => rustls::pki_types::ServerName::IpAddress((*ip).into()),
        Host::Name(n) => rustls::pki_types::ServerName::try_from(n.clone())
            .map_err(|e| failed(format!("`{n}` is not a TLS server name: {e}")))?,
    };
    let tls = tokio_rustls::TlsConnector::from(tls_config());
    match tokio::time::timeout_at(until, tls.connect(server_name, stream)).await {
        Ok(Ok(s)) => Ok(Box::new(s)),
        Ok(Err(e)) => Err(failed(format!(
            "TLS with {} ({addr}) failed: {e}",
            target.host
        ))),
        Err(_) => Err(failed(format!(
            "{addr}: TLS handshake did not finish in time"
        ))),
    }
}

/// A response's connection: drive it (spawn it) while reading the body.
pub type Conn = Pin<Box<dyn Future<Output = Result<(), hyper::Error>> + Send>>;

/// One exchange on a fresh connection: the response head and the connection's driver.
async fn exchange(
    stream: Box<dyn Stream>,
    request: Request<WasiBody>,
    url: &Uri,
    access: &WebAccess,
    deadline: Instant,
) -> Result<(Response<hyper::body::Incoming>, Conn), HttpError> {
    let (mut sender, conn) = tokio::time::timeout_at(
        deadline,
        hyper::client::conn::http1::Builder::new().handshake(TokioIo::new(stream)),
    )
    .await
    .map_err(|_| timed_out(url, access))??;
    let mut conn: Option<Conn> = Some(Box::pin(conn));
    let mut send = std::pin::pin!(sender.send_request(request));
    // Drive the connection while waiting for the response head.
    let head = std::future::poll_fn(|cx| {
        if let Poll::Ready(r) = send.as_mut().poll(cx) {
            return Poll::Ready(r.map_err(HttpError::from));
        }
        if let Some(c) = conn.as_mut()
            && let Poll::Ready(r) = c.as_mut().poll(cx)
        {
            conn = None;
            if let Err(e) = r {
                return Poll::Ready(Err(HttpError::from(e)));
            }
            return send.as_mut().poll(cx).map_err(HttpError::from);
        }
        Poll::Pending
    });
    let response = tokio::time::timeout_at(deadline, head)
        .await
        .map_err(|_| timed_out(url, access))??;
    let conn = conn.unwrap_or_else(|| Box::pin(async { Ok(()) }));
    Ok((response, conn))
}

/// `location` relative to `base`, without its fragment.
pub fn join(base: &Uri, location: &str) -> Result<Uri, String> {
    let location = location.split('#').next().unwrap_or_default().trim();
    let scheme = base.scheme_str().unwrap_or("https");
    let authority = base.authority().map(|a| a.as_str()).unwrap_or_default();
    // Absolute when a scheme comes before any '/' or '?'.
    let head = location.split(['/', '?']).next().unwrap_or_default();
    let absolute = head.split_once(':').is_some_and(|(s, _)| {
        s.starts_with(|c: char| c.is_ascii_alphabetic())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    });
    let joined = if absolute {
        location.to_string()
    } else if location.starts_with('?') {
        format!("{scheme}://{authority}{}{location}", base.path())
    } else if let Some(rest) = location.strip_prefix("//") {
        format!("{scheme}://{rest}")
    } else if location.starts_with('/') {
        format!("{scheme}://{authority}{location}")
    } else {
        let path = base.path();
        let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
        let dir = if dir.is_empty() { "/" } else { dir };
        format!("{scheme}://{authority}{dir}{location}")
    };
    joined
        .parse::<Uri>()
        .map_err(|e| format!("the redirect to `{location}` is not a URL: {e}"))
}

fn is_redirect(s: StatusCode) -> bool {
    matches!(s.as_u16(), 301 | 302 | 303 | 307 | 308)
}

fn empty_body() -> WasiBody {
    http_body_util::Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Send `request` under `access`: every hop checked, connected to checked addresses
/// only; GET and HEAD follow up to `max_redirects` redirects. The response carries
/// [`FINAL_URL_HEADER`]; its body is bounded in size and by the request's deadline.
pub async fn send(
    access: Arc<WebAccess>,
    request: Request<WasiBody>,
) -> Result<(Response<WasiBody>, Conn), HttpError> {
    let deadline = Instant::now() + access.timeout;
    let (parts, body) = request.into_parts();
    if parts.method != Method::GET && parts.method != Method::HEAD {
        return Err(denied(Denial {
            url: parts.uri.to_string(),
            address: None,
            rule: format!(
                "the method {} is not allowed: web tools read (GET and HEAD only)",
                parts.method
            ),
        }));
    }
    hops(access, parts, body, deadline, true).await
}

/// Send `request` under `access` as [`send`] does, with any method and no redirect
/// followed (a redirect comes back as it is): for a client that speaks a protocol over
/// HTTP to one configured origin (an MCP server), held to the same policy, address
/// checks and egress as the web tools, with the same secrets added.
pub async fn forward(
    access: Arc<WebAccess>,
    request: Request<WasiBody>,
) -> Result<(Response<WasiBody>, Conn), HttpError> {
    let deadline = Instant::now() + access.timeout;
    let (parts, body) = request.into_parts();
    hops(access, parts, body, deadline, false).await
}

async fn hops(
    access: Arc<WebAccess>,
    parts: http::request::Parts,
    body: WasiBody,
    deadline: Instant,
    follow: bool,
) -> Result<(Response<WasiBody>, Conn), HttpError> {
    let mut headers = parts.headers;
    headers.remove(HOST);
    let mut uri = parts.uri;
    let mut body = Some(body);
    let mut hop: u8 = 0;
    loop {
        let target = access.policy.check_url(&uri).map_err(denied)?;
        let addrs = resolve_checked(&access, &uri, &target, deadline).await?;
        let stream = connect(&access, &uri, &target, &addrs, deadline).await?;
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let mut req = Request::builder()
            .method(parts.method.clone())
            .uri(path)
            .body(body.take().unwrap_or_else(empty_body))
            .map_err(|e| failed(format!("bad request: {e}")))?;
        *req.headers_mut() = headers.clone();
        let default_port = if target.https { 443 } else { 80 };
        let host_header = match (&target.host, target.port == default_port) {
            (Host::Ip(IpAddr::V6(ip)), true) => format!("[{ip}]"),
            (h, true) => h.to_string(),
            (_, false) => target.authority(),
        };
        if let Ok(v) = HeaderValue::from_str(&host_header) {
            req.headers_mut().insert(HOST, v);
        }
        let origin = Origin::of(&uri);
        for (_, name, _) in &access.secrets {
            req.headers_mut().remove(name);
        }
        for (o, name, value) in &access.secrets {
            if origin.as_ref() == Some(o) {
                req.headers_mut().insert(name.clone(), value.clone());
            }
        }
        let (response, conn) = exchange(stream, req, &uri, &access, deadline).await?;
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(str::to_string);
        if follow
            && is_redirect(response.status())
            && let Some(location) = location
        {
            if hop >= access.max_redirects {
                return Err(failed(format!(
                    "too many redirects: {uri} redirects again after {} (tools.web.max_redirects)",
                    access.max_redirects
                )));
            }
            hop += 1;
            let next = join(&uri, &location).map_err(failed)?;
            tracing::debug!(from = %uri, to = %next, "following a redirect");
            // The next hop has no body; credentials stay with their origin.
            for h in [
                "content-length",
                "content-type",
                "content-encoding",
                "transfer-encoding",
            ] {
                headers.remove(h);
            }
            if Origin::of(&next) != origin {
                for h in ["authorization", "cookie", "proxy-authorization"] {
                    headers.remove(h);
                }
            }
            uri = next;
            continue;
        }
        let (mut head, incoming) = response.into_parts();
        if let Ok(v) = HeaderValue::from_str(&uri.to_string()) {
            head.headers
                .insert(HeaderName::from_static(FINAL_URL_HEADER), v);
        }
        let body = Bounded {
            inner: incoming,
            read: 0,
            max: access.max_response_bytes,
            sleep: Box::pin(tokio::time::sleep_until(deadline)),
            timeout_message: timeout_text(&uri, &access),
        }
        .boxed_unsync();
        return Ok((Response::from_parts(head, body), conn));
    }
}

/// A response body bounded in bytes and ended at the request's deadline.
struct Bounded {
    inner: hyper::body::Incoming,
    read: u64,
    max: u64,
    sleep: Pin<Box<Sleep>>,
    timeout_message: String,
}

impl Body for Bounded {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.read += data.len() as u64;
                    if self.read > self.max {
                        return Poll::Ready(Some(Err(failed(format!(
                            "response body over {} bytes (tools.web.max_response_bytes)",
                            self.max
                        )))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(HttpError::from(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match self.sleep.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(failed(self.timeout_message.clone())))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
}
