//! The socket side: one tokio task that connects to the gateway, says hello, passes
//! frames both ways, and when the connection goes reconnects with backoff (250 ms
//! doubling to 5 s), reading the endpoint file again each time (a restarted `serve`
//! listens on a new port) and attaching the session it was on.

use futures_util::{SinkExt, StreamExt};
use oxydra_gateway::protocol::{ClientFrame, Hello, PROTOCOL_VERSION, Request, ServerFrame};
use oxydra_gateway::token;
use std::path::PathBuf;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{WebSocketStream, client_async};

pub const FIRST_BACKOFF: Duration = Duration::from_millis(250);
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// A connection that says nothing this long (keepalives unanswered) is taken as gone.
const SILENCE: Duration = Duration::from_secs(25);
const KEEPALIVE_EVERY: Duration = Duration::from_secs(10);
const KEEPALIVE_ID: &str = "oxydra-tui-keepalive";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the gateway is.
#[derive(Debug, Clone)]
pub enum Target {
    /// Given with `--url`.
    Url(String),
    /// `serve` writes it here; read again on every attempt.
    EndpointFile(PathBuf),
}

/// Where the token comes from.
#[derive(Debug, Clone)]
pub enum TokenSource {
    Given(String),
    /// The user's workspace: its `ipc/gateway-token`, read on every attempt.
    Workspace(PathBuf),
}

/// The session to start on.
#[derive(Debug, Clone, PartialEq)]
pub enum Attach {
    Latest,
    Session(String),
    New,
}

#[derive(Debug, Clone)]
pub struct NetConfig {
    pub target: Target,
    pub token: TokenSource,
    pub attach: Attach,
}

/// From the socket task to the UI.
#[derive(Debug)]
pub enum NetEvent {
    /// Connected and hello sent.
    Connected {
        url: String,
    },
    Frame(Box<ServerFrame>),
    /// A text frame that is not a server frame of this protocol.
    Unreadable(String),
    /// The connection ended or could not be made; the next attempt is in `retry_in`.
    Lost {
        reason: String,
        retry_in: Duration,
    },
    /// A frame the UI sent while there was no connection.
    NotSent(String),
}

/// From the UI to the socket task.
#[derive(Debug)]
pub enum Outgoing {
    Frame(ClientFrame),
    Quit,
}

enum End {
    Quit,
    Lost(String),
}

/// Run until the UI says quit (or goes away).
pub async fn run(cfg: NetConfig, tx: Sender<NetEvent>, mut rx: UnboundedReceiver<Outgoing>) {
    let mut session = match &cfg.attach {
        Attach::Session(s) => Some(s.clone()),
        _ => None,
    };
    let mut create = cfg.attach == Attach::New;
    let mut backoff = FIRST_BACKOFF;
    loop {
        let reason = match connect(&cfg).await {
            Ok((ws, url)) => {
                if tx.send(NetEvent::Connected { url }).is_err() {
                    return;
                }
                let hello = ClientFrame::Hello(Hello {
                    protocol_version: PROTOCOL_VERSION,
                    token: Some(ws.1.clone()),
                    session_id: session.clone(),
                    create_new_session: create && session.is_none(),
                    ..Hello::default()
                });
                match converse(ws.0, hello, &tx, &mut rx, &mut session, &mut backoff).await {
                    End::Quit => return,
                    End::Lost(r) => r,
                }
            }
            Err(e) => e,
        };
        if session.is_some() {
            create = false;
        }
        if tx
            .send(NetEvent::Lost {
                reason,
                retry_in: backoff,
            })
            .is_err()
        {
            return;
        }
        // Wait out the backoff; frames sent meanwhile are reported as not sent.
        let wake = tokio::time::sleep(backoff);
        tokio::pin!(wake);
        loop {
            tokio::select! {
                () = &mut wake => break,
                m = rx.recv() => match m {
                    None | Some(Outgoing::Quit) => return,
                    Some(Outgoing::Frame(f)) => {
                        let _ = tx.send(NetEvent::NotSent(describe(&f)));
                    }
                },
            }
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

fn describe(f: &ClientFrame) -> String {
    match f {
        ClientFrame::SendTurn(_) => "the prompt".into(),
        ClientFrame::CancelActiveTurn(_) => "the cancel".into(),
        ClientFrame::CancelAllActiveTurns(_) => "the cancel of all turns".into(),
        ClientFrame::CreateSession(_) => "the new session".into(),
        ClientFrame::SwitchSession(_) => "the switch".into(),
        ClientFrame::ListSessions(_) => "the session list".into(),
        ClientFrame::HealthCheck(_) => "the status request".into(),
        ClientFrame::Hello(_) => "hello".into(),
    }
}

/// The URL to dial now.
fn url(target: &Target) -> Result<String, String> {
    match target {
        Target::Url(u) => Ok(u.clone()),
        Target::EndpointFile(p) => match std::fs::read_to_string(p) {
            Ok(t) if !t.trim().is_empty() => Ok(t.trim().to_string()),
            Ok(_) => Err(format!("{} is empty", p.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
                "no gateway endpoint at {} (serve is not running)",
                p.display()
            )),
            Err(e) => Err(format!("{}: {e}", p.display())),
        },
    }
}

/// `ws://host:port/path` → `host:port`.
pub fn authority(url: &str) -> Result<&str, String> {
    if url.starts_with("wss://") {
        return Err(format!(
            "{url}: wss:// is not supported; the gateway speaks ws:// (put TLS in front of both ends)"
        ));
    }
    let rest = url
        .strip_prefix("ws://")
        .ok_or_else(|| format!("{url}: not a ws:// URL"))?;
    let host = rest.split(['/', '?']).next().unwrap_or("");
    if host.is_empty() {
        return Err(format!("{url}: no host"));
    }
    Ok(host)
}

type Ws = WebSocketStream<TcpStream>;

async fn connect(cfg: &NetConfig) -> Result<((Ws, String), String), String> {
    let url = url(&cfg.target)?;
    let token = match &cfg.token {
        TokenSource::Given(t) => t.clone(),
        TokenSource::Workspace(ws) => {
            token::read(ws)
                .map_err(|e| format!("gateway token: {e}"))?
                .value
        }
    };
    let host = authority(&url)?.to_string();
    let dial = async {
        let stream = TcpStream::connect(&host)
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        // Without it every small frame waits for the peer's delayed ACK.
        let _ = stream.set_nodelay(true);
        let (ws, _) = client_async(url.as_str(), stream)
            .await
            .map_err(|e| format!("{url}: WebSocket handshake failed: {e}"))?;
        Ok::<_, String>(ws)
    };
    let ws = tokio::time::timeout(CONNECT_TIMEOUT, dial)
        .await
        .map_err(|_| format!("{url}: no answer within {} s", CONNECT_TIMEOUT.as_secs()))??;
    Ok(((ws, token), url))
}

/// Error codes after which the gateway closes: said in the reason, not as frames (so
/// a refused hello is not repeated in the pane on every attempt).
fn refusal(code: &str) -> bool {
    matches!(code, "unauthorized" | "protocol_version" | "hello_required")
}

async fn converse(
    ws: Ws,
    hello: ClientFrame,
    tx: &Sender<NetEvent>,
    rx: &mut UnboundedReceiver<Outgoing>,
    session: &mut Option<String>,
    backoff: &mut Duration,
) -> End {
    let (mut sink, mut source) = ws.split();
    if let Err(e) = sink.send(text(&hello)).await {
        return End::Lost(format!("could not send hello: {e}"));
    }
    let mut acked = false;
    let mut refused: Option<String> = None;
    let mut last_heard = Instant::now();
    let mut keepalive = tokio::time::interval(KEEPALIVE_EVERY);
    keepalive.tick().await;
    loop {
        tokio::select! {
            m = source.next() => {
                let m = match m {
                    None => return End::Lost(refused.unwrap_or_else(|| "the gateway closed the connection".into())),
                    Some(Err(e)) => return End::Lost(refused.unwrap_or_else(|| format!("the connection broke: {e}"))),
                    Some(Ok(m)) => m,
                };
                last_heard = Instant::now();
                let t = match m {
                    Message::Text(t) => t,
                    Message::Close(f) => {
                        let why = match f {
                            Some(f) if !f.reason.is_empty() => {
                                format!("the gateway closed the connection: {}", f.reason.as_str())
                            }
                            _ => "the gateway closed the connection".into(),
                        };
                        return End::Lost(refused.unwrap_or(why));
                    }
                    _ => continue,
                };
                let frame = match serde_json::from_str::<ServerFrame>(t.as_str()) {
                    Ok(f) => f,
                    Err(e) => {
                        let shown: String = t.as_str().chars().take(200).collect();
                        if tx.send(NetEvent::Unreadable(format!("{e}: {shown}"))).is_err() {
                            return End::Quit;
                        }
                        continue;
                    }
                };
                match &frame {
                    ServerFrame::HelloAck(a) => {
                        acked = true;
                        *backoff = FIRST_BACKOFF;
                        *session = Some(a.session.session_id.clone());
                    }
                    ServerFrame::SessionCreated(s) | ServerFrame::SessionSwitched(s) => {
                        *session = Some(s.session.session_id.clone());
                    }
                    ServerFrame::HealthStatus(h) if h.request_id.as_deref() == Some(KEEPALIVE_ID) => continue,
                    ServerFrame::Error(e) if !acked && refusal(&e.code) => {
                        refused = Some(format!("the gateway refused the hello: {}", e.message));
                        continue;
                    }
                    _ => {}
                }
                if tx.send(NetEvent::Frame(Box::new(frame))).is_err() {
                    return End::Quit;
                }
            }
            out = rx.recv() => {
                let f = match out {
                    None | Some(Outgoing::Quit) => {
                        let _ = sink.send(Message::Close(None)).await;
                        return End::Quit;
                    }
                    Some(Outgoing::Frame(f)) => f,
                };
                if let Err(e) = sink.send(text(&f)).await {
                    let _ = tx.send(NetEvent::NotSent(describe(&f)));
                    return End::Lost(format!("the connection broke: {e}"));
                }
            }
            _ = keepalive.tick() => {
                if last_heard.elapsed() > SILENCE {
                    return End::Lost(format!("no answer from the gateway for {} s", SILENCE.as_secs()));
                }
                let ping = ClientFrame::HealthCheck(Request { request_id: Some(KEEPALIVE_ID.into()) });
                if let Err(e) = sink.send(text(&ping)).await {
                    return End::Lost(format!("the connection broke: {e}"));
                }
            }
        }
    }
}

fn text(f: &ClientFrame) -> Message {
    // Plain data: serialising cannot fail.
    Message::text(serde_json::to_string(f).unwrap_or_default())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn authorities() {
        assert_eq!(authority("ws://127.0.0.1:4000/ws"), Ok("127.0.0.1:4000"));
        assert_eq!(authority("ws://localhost:1"), Ok("localhost:1"));
        assert!(
            authority("wss://h/ws")
                .unwrap_err()
                .contains("not supported")
        );
        assert!(authority("http://h/ws").is_err());
        assert!(authority("ws:///ws").is_err());
    }

    #[test]
    fn client_frames_are_what_the_gateway_reads() {
        let f = ClientFrame::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            token: Some("t".into()),
            session_id: Some("abc".into()),
            ..Hello::default()
        });
        let j = serde_json::to_string(&f).unwrap_or_default();
        assert!(matches!(
            oxydra_gateway::protocol::parse_client(&j),
            Ok(ClientFrame::Hello(h)) if h.session_id.as_deref() == Some("abc")
        ));
    }
}
