//! Where the runtime's outgoing connections go. Outside a tier: straight out over TCP.
//! Inside one (`serve --confine`, set up by the runner): through the runner's egress
//! proxy on a unix socket, with HTTP `CONNECT host:port`; the proxy checks the grant
//! again, outside the tier, and connects. A confined runtime cannot open a TCP socket
//! itself, so this is the only way out.
//!
//! TLS stays end to end: the runtime speaks TLS through the tunnel, the proxy sees only
//! the target and ciphertext.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use wasmtime_wasi_http::Error as HttpError;

/// The process's route, set once at start-up (before any request): the proxy's socket
/// and the secret that proves to it this is the runtime it serves.
static PROXY: OnceLock<(PathBuf, Option<String>)> = OnceLock::new();

/// The environment variable the runner sets to the proxy's socket.
pub const EGRESS_SOCKET_ENV: &str = "OXYDRA_EGRESS_SOCKET";
/// The environment variable the runner sets to the proxy's secret (sent as
/// `Proxy-Authorization: Bearer …` with every request).
pub const EGRESS_SECRET_ENV: &str = "OXYDRA_EGRESS_SECRET";

/// Send every outgoing connection of this process through the proxy at `socket`.
/// Idempotent for the same path; a second, different path is refused.
pub fn use_proxy(socket: &Path, secret: Option<String>) -> Result<(), String> {
    let set = PROXY.get_or_init(|| (socket.to_path_buf(), secret));
    if set.0 != socket {
        return Err(format!(
            "the egress proxy is already {} (not {})",
            set.0.display(),
            socket.display()
        ));
    }
    Ok(())
}

/// The proxy's socket, when this process uses one.
pub fn proxy() -> Option<&'static Path> {
    PROXY.get().map(|(p, _)| p.as_path())
}

/// The `Proxy-Authorization` header line, when the proxy has a secret.
fn credential() -> String {
    match PROXY.get().and_then(|(_, s)| s.as_deref()) {
        Some(s) => format!("Proxy-Authorization: Bearer {s}\r\n"),
        None => String::new(),
    }
}

pub(crate) trait Stream: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static> Stream for T {}

/// Longest answer head the proxy may send.
const MAX_HEAD: usize = 8 * 1024;

/// A byte stream to `authority` (`host:port`): direct TCP, or a tunnel through the
/// proxy. `Err` says why, naming the target (and what the proxy said).
pub(crate) async fn connect(authority: &str) -> Result<Box<dyn Stream>, String> {
    let Some(socket) = proxy() else {
        return tokio::net::TcpStream::connect(authority)
            .await
            .map(|s| Box::new(s) as Box<dyn Stream>)
            .map_err(|e| format!("{authority}: {e}"));
    };
    tunnel(socket, authority)
        .await
        .map(|s| Box::new(s) as Box<dyn Stream>)
}

/// The addresses of `name`, asked of the proxy at `socket` (`RESOLVE name`): a confined
/// runtime has no DNS of its own. The caller checks each address before it uses one.
pub async fn resolve(socket: &Path, name: &str) -> Result<Vec<std::net::IpAddr>, String> {
    use tokio::io::AsyncReadExt;
    let mut s = tokio::net::UnixStream::connect(socket).await.map_err(|e| {
        format!(
            "the egress proxy at {} is not reachable: {e}",
            socket.display()
        )
    })?;
    s.write_all(format!("RESOLVE {name} HTTP/1.1\r\n{}\r\n", credential()).as_bytes())
        .await
        .map_err(|e| format!("egress proxy: {e}"))?;
    let mut text = String::new();
    (&mut s)
        .take(64 * 1024)
        .read_to_string(&mut text)
        .await
        .map_err(|e| format!("egress proxy: {e}"))?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or("the egress proxy sent a malformed answer")?;
    let status = head.lines().next().unwrap_or_default();
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(format!(
            "the egress proxy did not resolve it ({status}): {}",
            body.trim()
        ));
    }
    body.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.trim()
                .parse()
                .map_err(|_| format!("the egress proxy sent {l:?} as an address"))
        })
        .collect()
}

/// `CONNECT authority` through the proxy at `socket`.
pub async fn tunnel(socket: &Path, authority: &str) -> Result<tokio::net::UnixStream, String> {
    let mut s = tokio::net::UnixStream::connect(socket).await.map_err(|e| {
        format!(
            "{authority}: the egress proxy at {} is not reachable: {e}",
            socket.display()
        )
    })?;
    s.write_all(
        format!(
            "CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n{}\r\n",
            credential()
        )
        .as_bytes(),
    )
    .await
    .map_err(|e| format!("{authority}: egress proxy: {e}"))?;
    let mut r = BufReader::new(&mut s);
    let mut status = String::new();
    let mut head = 0usize;
    let mut line = String::new();
    loop {
        line.clear();
        let n = r
            .read_line(&mut line)
            .await
            .map_err(|e| format!("{authority}: egress proxy: {e}"))?;
        head += n;
        if n == 0 || head > MAX_HEAD {
            return Err(format!(
                "{authority}: the egress proxy closed the tunnel or sent a malformed answer"
            ));
        }
        if status.is_empty() {
            status = line.trim().to_string();
        } else if line == "\r\n" || line == "\n" {
            break;
        }
    }
    let code = status.split_whitespace().nth(1).unwrap_or_default();
    if code != "200" {
        // The proxy says why in a short body; read what is there.
        let mut why = String::new();
        let _ = tokio::time::timeout(
            std::time::Duration::from_millis(200),
            tokio::io::AsyncReadExt::read_to_string(
                &mut tokio::io::AsyncReadExt::take(&mut r, 1024),
                &mut why,
            ),
        )
        .await;
        let why = why.trim();
        return Err(format!(
            "{authority}: refused by the egress proxy ({status}){}",
            if why.is_empty() {
                String::new()
            } else {
                format!(": {why}")
            }
        ));
    }
    // Nothing can follow the head before we speak: the tunnel is clean.
    if !r.buffer().is_empty() {
        return Err(format!(
            "{authority}: the egress proxy sent bytes before the tunnel was used"
        ));
    }
    Ok(s)
}

/// `wasmtime_wasi_http::default_send_request` with the connection made by [`connect`]
/// (so through the proxy inside a tier): TLS for https with the URL's host as the
/// server name, HTTP/1.1, the request in origin form. Timeouts as there: connect
/// (tunnel and TLS), first byte, between bytes.
pub(crate) async fn send_request(
    mut req: http::Request<wasmtime_wasi_http::WasiBody>,
    options: Option<wasmtime_wasi_http::RequestOptions>,
) -> Result<
    (
        http::Response<wasmtime_wasi_http::WasiBody>,
        impl std::future::Future<Output = Result<(), HttpError>> + Send,
    ),
    HttpError,
> {
    use http_body_util::BodyExt;
    use std::time::Duration;
    let uri = req.uri();
    let authority = uri.authority().ok_or(HttpError::HttpRequestUriInvalid)?;
    let use_tls = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let authority = match authority.port_u16() {
        Some(_) => authority.to_string(),
        None => format!("{authority}:{}", if use_tls { 443 } else { 80 }),
    };
    let long = Duration::from_secs(600);
    let connect_timeout = options.and_then(|o| o.connect_timeout).unwrap_or(long);
    let first_byte = options.and_then(|o| o.first_byte_timeout).unwrap_or(long);
    let stream = match tokio::time::timeout(connect_timeout, connect(&authority)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(HttpError::Connect(std::io::Error::other(e))),
        Err(_) => return Err(HttpError::ConnectionTimeout),
    };
    let stream: Box<dyn Stream> = if use_tls {
        let name = rustls::pki_types::ServerName::try_from(host)
            .map_err(|_| HttpError::HttpRequestUriInvalid)?;
        let tls = tokio_rustls::TlsConnector::from(super::web::tls_config());
        match tokio::time::timeout(connect_timeout, tls.connect(name, stream)).await {
            Ok(Ok(s)) => Box::new(s),
            Ok(Err(e)) => return Err(HttpError::Tls(e)),
            Err(_) => return Err(HttpError::ConnectionTimeout),
        }
    } else {
        stream
    };
    let (mut sender, conn) = tokio::time::timeout(
        connect_timeout,
        hyper::client::conn::http1::Builder::new()
            .handshake(wasmtime_wasi_http::io::TokioIo::new(stream)),
    )
    .await
    .map_err(|_| HttpError::ConnectionTimeout)??;
    *req.uri_mut() = http::Uri::builder()
        .path_and_query(req.uri().path_and_query().map_or("/", |p| p.as_str()))
        .build()
        .map_err(|_| HttpError::HttpRequestUriInvalid)?;
    let mut conn = Some(Box::pin(conn));
    let mut send = std::pin::pin!(tokio::time::timeout(first_byte, sender.send_request(req)));
    let res = std::future::poll_fn(|cx| {
        use std::task::Poll;
        if let Poll::Ready(r) = send.as_mut().poll(cx) {
            return Poll::Ready(match r {
                Ok(r) => r.map_err(HttpError::from),
                Err(_) => Err(HttpError::ConnectionReadTimeout),
            });
        }
        if let Some(c) = conn.as_mut()
            && let Poll::Ready(r) = c.as_mut().poll(cx)
        {
            conn = None;
            if let Err(e) = r {
                return Poll::Ready(Err(HttpError::from(e)));
            }
            return match send.as_mut().poll(cx) {
                Poll::Ready(Ok(r)) => Poll::Ready(r.map_err(HttpError::from)),
                Poll::Ready(Err(_)) => Poll::Ready(Err(HttpError::ConnectionReadTimeout)),
                Poll::Pending => Poll::Pending,
            };
        }
        Poll::Pending
    })
    .await?;
    let res = res.map(|b| b.map_err(HttpError::from).boxed_unsync());
    Ok((res, async move {
        match conn {
            Some(c) => c.await.map_err(HttpError::from),
            None => Ok(()),
        }
    }))
}
