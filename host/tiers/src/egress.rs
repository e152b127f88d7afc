//! The runner's egress proxy: the one way out of a tier. A confined runtime cannot open
//! a TCP socket; it asks here, over a unix socket, with HTTP `CONNECT host:port`
//! (`oxydra_runtime::capabilities::egress`). The proxy checks the target against the
//! grants again — outside the tier, so a compromised runtime cannot skip it — connects,
//! answers `200`, and copies bytes both ways. TLS stays end to end.
//!
//! `RESOLVE name` answers a name's addresses, for web tools only: a confined runtime has
//! no DNS of its own, and web tools check every address before they tunnel to it.
//!
//! Granted: the origins the operator configured (provider base URLs, channel API
//! origins), by exact host and port; and, when web tools are enabled, an IP address the
//! web policy allows (the runtime resolves names, checks each address, and tunnels to
//! the address; the proxy checks that address once more).

use oxydra_runtime::capabilities::web::policy::Policy;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UnixListener, UnixStream};

/// What the runtime behind this proxy may reach.
#[derive(Debug, Clone, Default)]
pub struct Grants {
    /// `(host, port)` of each configured origin; the host compared without case.
    pub origins: Vec<(String, u16)>,
    /// The web tools' policy, when they are enabled: IP targets it allows.
    pub web: Option<Policy>,
    /// When set, every request must carry `Proxy-Authorization: Bearer <secret>`: only
    /// the runtime this proxy serves knows it (another process that can reach the
    /// socket cannot borrow its grants).
    pub secret: Option<String>,
}

impl Grants {
    /// Whether `host:port` may be reached; `Err` says why not.
    pub fn check(&self, host: &str, port: u16) -> Result<(), String> {
        if self
            .origins
            .iter()
            .any(|(h, p)| *p == port && h.eq_ignore_ascii_case(host))
        {
            return Ok(());
        }
        let Some(policy) = &self.web else {
            return Err(format!(
                "{host}:{port} is not a configured origin (providers' base_url, channels' api_base_url)"
            ));
        };
        let Ok(ip) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        else {
            return Err(format!(
                "{host}:{port} is not a configured origin, and web tools tunnel to checked addresses only, never to names"
            ));
        };
        let authority = match ip {
            IpAddr::V6(v6) => format!("[{v6}]:{port}"),
            IpAddr::V4(v4) => format!("{v4}:{port}"),
        };
        let uri: http::Uri = format!("http://{authority}/")
            .parse()
            .map_err(|e| format!("{authority}: {e}"))?;
        policy
            .check_url(&uri)
            .map(|_| ())
            .map_err(|d| d.to_string())
    }
}

/// What the proxy did.
#[derive(Debug, Default)]
pub struct Counters {
    pub tunnels: AtomicU64,
    pub refused: AtomicU64,
}

/// A running proxy; stops accepting when dropped.
pub struct Proxy {
    pub socket: PathBuf,
    pub counters: Arc<Counters>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Longest request head accepted.
const MAX_HEAD: usize = 8 * 1024;
/// How long the target may take to accept the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Listen on `socket` (replacing a stale one) on `rt`, granting `grants`.
pub fn start(socket: &Path, grants: Grants, rt: &tokio::runtime::Handle) -> std::io::Result<Proxy> {
    if socket.exists() {
        std::fs::remove_file(socket)?;
    }
    let _guard = rt.enter();
    let listener = UnixListener::bind(socket)?;
    let counters = Arc::new(Counters::default());
    let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
    let grants = Arc::new(grants);
    let c = counters.clone();
    rt.spawn(async move {
        loop {
            tokio::select! {
                _ = &mut rx => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let (g, c) = (grants.clone(), c.clone());
                        tokio::spawn(async move { serve(stream, &g, &c).await });
                    }
                    Err(e) => {
                        tracing::warn!("egress proxy: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
    });
    Ok(Proxy {
        socket: socket.to_path_buf(),
        counters,
        stop: Some(tx),
    })
}

/// Equal, in time that does not depend on where they differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

async fn answer(stream: &mut UnixStream, status: &str, why: &str) {
    let _ = stream
        .write_all(
            format!(
                "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{why}",
                why.len()
            )
            .as_bytes(),
        )
        .await;
}

/// What the runtime asks for.
#[derive(Debug, PartialEq, Eq)]
enum Ask {
    /// `CONNECT host:port HTTP/1.1`: a tunnel.
    Connect(String, u16),
    /// `RESOLVE name HTTP/1.1`: the name's addresses (web tools only: a confined runtime
    /// has no DNS of its own, and checks each address before it tunnels to it).
    Resolve(String),
}

/// The request line's verb and target.
fn target(line: &str) -> Result<Ask, String> {
    let mut parts = line.split_whitespace();
    let (Some(verb), Some(authority), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(format!(
            "expected `CONNECT host:port HTTP/1.1` or `RESOLVE name HTTP/1.1`, got {line:?}"
        ));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(format!("unsupported version {version}"));
    }
    match verb {
        "CONNECT" => {}
        "RESOLVE" => {
            let name = authority.trim_end_matches('.');
            let ok = !name.is_empty()
                && name.len() <= 253
                && name.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                });
            if !ok {
                return Err(format!("{authority}: not a DNS name"));
            }
            return Ok(Ask::Resolve(name.to_ascii_lowercase()));
        }
        other => {
            return Err(format!(
                "{other}: the egress proxy speaks CONNECT and RESOLVE only"
            ));
        }
    }
    let (host, port) = authority
        .rsplit_once(':')
        .ok_or_else(|| format!("{authority}: no port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{authority}: the port is not a number"))?;
    if host.is_empty() || port == 0 {
        return Err(format!("{authority}: no host or port"));
    }
    Ok(Ask::Connect(host.to_string(), port))
}

/// Answer `RESOLVE name`: its addresses, one per line, when web tools are granted.
async fn resolve(stream: &mut UnixStream, name: &str, grants: &Grants, counters: &Counters) {
    if grants.web.is_none() {
        counters.refused.fetch_add(1, Ordering::Relaxed);
        answer(
            stream,
            "403 Forbidden",
            "names are resolved for web tools only, and no web tool is loaded",
        )
        .await;
        return;
    }
    if let Some(policy) = &grants.web {
        let uri: Result<http::Uri, _> = format!("http://{name}/").parse();
        let verdict = match uri {
            Ok(u) => policy.check_url(&u).map(|_| ()).map_err(|d| d.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(why) = verdict {
            counters.refused.fetch_add(1, Ordering::Relaxed);
            answer(stream, "403 Forbidden", &why).await;
            return;
        }
    }
    let lookup = tokio::net::lookup_host((name, 0));
    match tokio::time::timeout(CONNECT_TIMEOUT, lookup).await {
        Ok(Ok(addrs)) => {
            let mut seen = Vec::new();
            for a in addrs {
                if !seen.contains(&a.ip()) {
                    seen.push(a.ip());
                }
            }
            let body: String = seen.iter().map(|ip| format!("{ip}\n")).collect();
            let _ = stream
                .write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                )
                .await;
        }
        Ok(Err(e)) => answer(stream, "502 Bad Gateway", &format!("{name}: {e}")).await,
        Err(_) => {
            answer(
                stream,
                "504 Gateway Timeout",
                &format!("{name}: no answer within 10 s"),
            )
            .await;
        }
    }
}

async fn serve(mut stream: UnixStream, grants: &Grants, counters: &Counters) {
    let mut reader = BufReader::new(&mut stream);
    let mut first = String::new();
    let mut line = String::new();
    let mut read = 0usize;
    let mut bearer: Option<String> = None;
    let head = async {
        loop {
            line.clear();
            let n = reader
                .read_line(&mut line)
                .await
                .map_err(|e| e.to_string())?;
            read += n;
            if n == 0 || read > MAX_HEAD {
                return Err("the request head ended early or is too long".to_string());
            }
            if first.is_empty() {
                first = line.trim().to_string();
            } else if line == "\r\n" || line == "\n" {
                return Ok(());
            } else if let Some((k, v)) = line.split_once(':')
                && k.trim().eq_ignore_ascii_case("proxy-authorization")
            {
                bearer = v.trim().strip_prefix("Bearer ").map(str::to_string);
            }
        }
    };
    let head = tokio::time::timeout(Duration::from_secs(10), head).await;
    let extra = !reader.buffer().is_empty();
    drop(reader);
    let parsed = match head {
        Ok(Ok(())) if extra => {
            Err("bytes after the request head before the tunnel was open".into())
        }
        Ok(Ok(())) => target(&first),
        Ok(Err(e)) => Err(e),
        Err(_) => Err("no request head within 10 s".into()),
    };
    let parsed = match (&grants.secret, &bearer) {
        (Some(want), Some(got)) if same(want, got) => parsed,
        (Some(_), _) => {
            counters.refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("egress refused: a request without this runtime's proxy secret");
            answer(
                &mut stream,
                "407 Proxy Authentication Required",
                "this proxy serves one runtime, which sends its secret",
            )
            .await;
            return;
        }
        (None, _) => parsed,
    };
    let (host, port) = match parsed {
        Ok(Ask::Connect(h, p)) => (h, p),
        Ok(Ask::Resolve(name)) => {
            resolve(&mut stream, &name, grants, counters).await;
            return;
        }
        Err(e) => {
            counters.refused.fetch_add(1, Ordering::Relaxed);
            answer(&mut stream, "400 Bad Request", &e).await;
            return;
        }
    };
    if let Err(why) = grants.check(&host, port) {
        counters.refused.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(target = %format!("{host}:{port}"), "egress refused: {why}");
        answer(&mut stream, "403 Forbidden", &why).await;
        return;
    }
    let authority = format!("{}:{port}", host);
    let out =
        match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(authority.as_str())).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                answer(&mut stream, "502 Bad Gateway", &format!("{authority}: {e}")).await;
                return;
            }
            Err(_) => {
                answer(
                    &mut stream,
                    "504 Gateway Timeout",
                    &format!("{authority}: no connection within 10 s"),
                )
                .await;
                return;
            }
        };
    // The runtime's requests are small writes; without it each waits for a delayed ACK.
    let _ = out.set_nodelay(true);
    counters.tunnels.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(target = %authority, "egress tunnel");
    if stream
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await
        .is_err()
    {
        return;
    }
    let mut out = out;
    let _ = tokio::io::copy_bidirectional(&mut stream, &mut out).await;
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn grants_are_the_configured_origins_and_web_policy_addresses() {
        let g = Grants {
            origins: vec![("api.openai.com".into(), 443), ("127.0.0.1".into(), 8080)],
            ..Grants::default()
        };
        assert!(g.check("API.openai.com", 443).is_ok());
        assert!(g.check("127.0.0.1", 8080).is_ok());
        assert!(g.check("127.0.0.1", 8081).is_err());
        assert!(
            g.check("93.184.215.14", 443)
                .unwrap_err()
                .contains("not a configured origin")
        );
        let web = Grants {
            web: Some(Policy::default()),
            ..g
        };
        assert!(web.check("93.184.215.14", 443).is_ok(), "a public address");
        assert!(
            web.check("169.254.169.254", 80)
                .unwrap_err()
                .contains("link-local")
        );
        assert!(web.check("10.0.0.1", 80).is_err());
        assert!(web.check("[::1]", 80).is_err());
        assert!(
            web.check("example.com", 443)
                .unwrap_err()
                .contains("never to names")
        );
    }

    #[test]
    fn only_a_well_formed_connect_line_names_a_target() {
        assert_eq!(
            target("CONNECT a.b:443 HTTP/1.1").unwrap(),
            Ask::Connect("a.b".into(), 443)
        );
        assert_eq!(
            target("CONNECT [::1]:80 HTTP/1.1").unwrap(),
            Ask::Connect("[::1]".into(), 80)
        );
        assert_eq!(
            target("RESOLVE Example.COM. HTTP/1.1").unwrap(),
            Ask::Resolve("example.com".into())
        );
        assert!(target("RESOLVE a..b HTTP/1.1").is_err());
        assert!(target("RESOLVE a/b HTTP/1.1").is_err());
        assert!(target("DELETE a.b:80 HTTP/1.1").is_err());
        assert!(target("GET / HTTP/1.1").is_err());
        assert!(target("CONNECT a.b HTTP/1.1").is_err());
        assert!(target("CONNECT a.b:0 HTTP/1.1").is_err());
        assert!(target("CONNECT a.b:443 SPDY/3").is_err());
    }
}
