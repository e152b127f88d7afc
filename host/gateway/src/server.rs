//! The WebSocket server: one task per connection reading frames, one writing them, one
//! following the connection's current session (and one per turn it started in another
//! session). Every session operation goes through the [`SessionService`], on the blocking
//! pool; nothing here runs a turn itself, and nothing a client does can make a turn wait:
//! turn events reach a follower through the service's subscription, which never blocks,
//! and a follower waits only on its own client's bounded queue.

use crate::convert::{Converter, active_turn, last_turn, turn_ended_code};
use crate::protocol::{self, ClientFrame, ErrorFrame, PROTOCOL_VERSION, ServerFrame};
use crate::token::Token;
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use oxydra_session::{
    ServiceError, SessionService, SetupError, Subscription, TryRecv, TurnEvent, TurnSnapshot,
};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{Notify, RwLock, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};

/// How long a new connection has to upgrade, and then to authenticate with `hello`
/// (the default of [`GatewayOptions::hello_timeout`]).
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a closing connection may take to flush its last frames (an error, the close)
/// and to hear the client close its side.
const LINGER: Duration = Duration::from_secs(1);

/// How long shutdown waits for running commands, then for the connections to close.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

/// The gateway's limits (`[gateway]` in agent.toml).
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    pub max_frame_bytes: usize,
    pub max_prompt_bytes: usize,
    /// Frames queued for one client (beyond what its socket holds). A client whose
    /// buffer stays full for `stall_timeout` has stopped reading and is dropped.
    pub client_buffer: usize,
    pub stall_timeout: Duration,
    /// How long a new connection has to upgrade, and then to send its `hello`.
    pub hello_timeout: Duration,
    /// How often idle sessions are looked at for archiving.
    pub reap_every: Duration,
    /// Connections open at once; past it an upgrade is refused with 503, so
    /// unauthenticated connections cannot pile up buffers without bound.
    pub max_connections: usize,
}

/// Default of [`GatewayOptions::max_connections`].
pub const MAX_CONNECTIONS: usize = 4096;

impl GatewayOptions {
    pub fn from_config(cfg: &oxydra_session::config::AgentConfig) -> GatewayOptions {
        let g = &cfg.gateway;
        let idle = Duration::from_secs(u64::from(g.session_idle_ttl_hours) * 3600);
        GatewayOptions {
            max_frame_bytes: usize::try_from(g.max_frame_bytes).unwrap_or(usize::MAX),
            max_prompt_bytes: usize::try_from(g.max_prompt_bytes).unwrap_or(usize::MAX),
            client_buffer: 4096,
            stall_timeout: Duration::from_secs(10),
            hello_timeout: HELLO_TIMEOUT,
            reap_every: idle.clamp(Duration::from_secs(1), Duration::from_secs(300)),
            max_connections: MAX_CONNECTIONS,
        }
    }

    /// Frames above this are not even read: the connection closes.
    pub fn hard_frame_cap(&self) -> usize {
        self.max_frame_bytes
            .saturating_mul(2)
            .saturating_add(64 * 1024)
    }
}

impl Default for GatewayOptions {
    fn default() -> Self {
        GatewayOptions::from_config(&oxydra_session::config::AgentConfig::default())
    }
}

/// The `send_turn` request id of a session's latest turn: (turn id, request id). A
/// session's `send_turn` holds it while it submits, so the turn's `turn_started`, which
/// may be converted before `submit` returns, waits for the id to be known.
type RequestSlot = Arc<Mutex<Option<(String, String)>>>;

pub(crate) struct Shared {
    service: ServiceHandle,
    token: Token,
    opts: GatewayOptions,
    connections: AtomicUsize,
    /// Told each time a connection ends.
    ended: Notify,
    requests: Mutex<HashMap<String, RequestSlot>>,
    /// Commands hold it shared; shutdown takes it exclusively and sets it, so no command
    /// runs (and no turn starts) once the service is shutting down.
    gate: RwLock<bool>,
    stopping: watch::Receiver<bool>,
    /// Set before the service shuts down: subscriptions that end now end for that.
    shutting_down: AtomicBool,
}

/// The service, dropped off the async threads: its last drop joins threads and drops
/// the store's runtimes, which must not happen on a runtime thread.
struct ServiceHandle(Arc<SessionService>);

impl std::ops::Deref for ServiceHandle {
    type Target = Arc<SessionService>;
    fn deref(&self) -> &Arc<SessionService> {
        &self.0
    }
}

impl Drop for ServiceHandle {
    fn drop(&mut self) {
        if Arc::strong_count(&self.0) == 1 && tokio::runtime::Handle::try_current().is_ok() {
            let last = self.0.clone();
            let _ = std::thread::Builder::new()
                .name("gateway-drop".into())
                .spawn(move || drop(last));
        }
    }
}

impl Shared {
    fn request_slot(&self, session: &str) -> RequestSlot {
        lock(&self.requests)
            .entry(session.to_string())
            .or_default()
            .clone()
    }

    /// The request id of the `send_turn` that started `turn_id`, if it had one.
    pub(crate) fn request_of(&self, session: &str, turn_id: &str) -> Option<String> {
        let slot = lock(&self.requests).get(session).cloned()?;
        let known = lock(&slot);
        known
            .as_ref()
            .filter(|(t, _)| t == turn_id)
            .map(|(_, r)| r.clone())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A connection's byte stream: TCP, or a unix socket (a runtime inside a tier listens
/// on one; the runner forwards its 127.0.0.1 listener to it).
trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}
type Conn = Box<dyn Io>;

/// Where a gateway listens.
enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, std::path::PathBuf),
}

impl Listener {
    /// The next connection and a name for its peer (for logs).
    async fn accept(&self) -> std::io::Result<(Conn, String)> {
        match self {
            Listener::Tcp(l) => {
                let (s, peer) = l.accept().await?;
                // Without it every small frame waits for the peer's delayed ACK (~40 ms a turn).
                let _ = s.set_nodelay(true);
                Ok((Box::new(s), peer.to_string()))
            }
            Listener::Unix(l, path) => {
                let (s, _) = l.accept().await?;
                Ok((Box::new(s), path.display().to_string()))
            }
        }
    }
}

/// A bound gateway, ready to [`Gateway::run`].
pub struct Gateway {
    listener: Listener,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
}

impl Gateway {
    /// Listen on `addr` for the user of `service`, whose token is `token`.
    pub async fn bind(
        addr: SocketAddr,
        service: Arc<SessionService>,
        token: Token,
        opts: GatewayOptions,
    ) -> std::io::Result<Gateway> {
        let listener = TcpListener::bind(addr).await?;
        Ok(Gateway::on(Listener::Tcp(listener), service, token, opts))
    }

    /// A gateway on a unix socket bound earlier (a runtime in a tier binds it before it
    /// confines itself; the runner forwards its TCP listener to it). Call inside a tokio
    /// runtime.
    pub fn from_std_unix(
        listener: std::os::unix::net::UnixListener,
        path: std::path::PathBuf,
        service: Arc<SessionService>,
        token: Token,
        opts: GatewayOptions,
    ) -> std::io::Result<Gateway> {
        listener.set_nonblocking(true)?;
        Ok(Gateway::on(
            Listener::Unix(UnixListener::from_std(listener)?, path),
            service,
            token,
            opts,
        ))
    }

    /// A gateway on a listener bound earlier (by a runtime that confines itself after
    /// binding and can open no socket afterwards). Call inside a tokio runtime.
    pub fn from_std(
        listener: std::net::TcpListener,
        service: Arc<SessionService>,
        token: Token,
        opts: GatewayOptions,
    ) -> std::io::Result<Gateway> {
        listener.set_nonblocking(true)?;
        Ok(Gateway::on(
            Listener::Tcp(TcpListener::from_std(listener)?),
            service,
            token,
            opts,
        ))
    }

    fn on(
        listener: Listener,
        service: Arc<SessionService>,
        token: Token,
        opts: GatewayOptions,
    ) -> Gateway {
        let (stop, stopping) = watch::channel(false);
        Gateway {
            listener,
            shared: Arc::new(Shared {
                service: ServiceHandle(service),
                token,
                opts,
                connections: AtomicUsize::new(0),
                ended: Notify::new(),
                requests: Mutex::new(HashMap::new()),
                gate: RwLock::new(false),
                stopping,
                shutting_down: AtomicBool::new(false),
            }),
            stop,
        }
    }

    /// The TCP address it listens on (`Err` for a unix socket).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match &self.listener {
            Listener::Tcp(l) => l.local_addr(),
            Listener::Unix(..) => Err(std::io::Error::other(
                "the gateway listens on a unix socket",
            )),
        }
    }

    /// Serve until `shutdown` resolves; then cancel every turn (its partial output is
    /// persisted), let the clients see it end, close their connections, and return.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Gateway {
            listener,
            shared,
            stop,
        } = self;
        let reaper = tokio::spawn(reap(shared.clone()));
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        tokio::spawn(connection(stream, peer, shared.clone()));
                    }
                    Err(e) => {
                        // Out of file descriptors, most likely: back off, keep serving.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
        drop(listener);
        reaper.abort();
        tracing::info!("shutting down: cancelling running turns");
        // Commands already running finish; none starts after this.
        let closed = async { *shared.gate.write().await = true };
        if tokio::time::timeout(SHUTDOWN_WAIT, closed).await.is_err() {
            tracing::warn!("a command did not finish in time; shutting down anyway");
        }
        // Turns end as cancelled (their partial output persisted); every subscription
        // gets that terminal event and then ends, so followers forward it and finish.
        shared.shutting_down.store(true, Ordering::SeqCst);
        let service = Arc::clone(&shared.service);
        let _ = tokio::task::spawn_blocking(move || service.shutdown()).await;
        let _ = stop.send(true);
        let deadline = tokio::time::Instant::now() + SHUTDOWN_WAIT;
        loop {
            let ended = shared.ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if shared.connections.load(Ordering::SeqCst) == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, ended).await.is_err() {
                tracing::warn!(
                    "{} connections still open at shutdown",
                    shared.connections.load(Ordering::SeqCst)
                );
                break;
            }
        }
    }
}

/// Archive idle sessions no one follows, now and then.
async fn reap(shared: Arc<Shared>) {
    let mut every = tokio::time::interval(shared.opts.reap_every);
    every.tick().await;
    loop {
        every.tick().await;
        let service = Arc::clone(&shared.service);
        if let Ok(ids) = tokio::task::spawn_blocking(move || service.archive_idle()).await
            && !ids.is_empty()
        {
            tracing::info!("archived {} idle sessions", ids.len());
        }
        // Sessions idle for `[memory] stale_session_hours` are summarised into memory.
        let hours = shared.service.system().config.memory.stale_session_hours;
        if hours > 0 {
            let service = Arc::clone(&shared.service);
            let idle = Duration::from_secs(u64::from(hours) * 3600);
            match tokio::task::spawn_blocking(move || service.summarize_stale(idle)).await {
                Ok(Ok(ids)) if !ids.is_empty() => {
                    tracing::info!("summarised {} stale sessions into memory", ids.len());
                }
                Ok(Err(e)) => tracing::warn!("summarising stale sessions: {e}"),
                _ => {}
            }
        }
    }
}

/// The handshake's verdict on the HTTP upgrade.
#[derive(Default)]
struct Upgrade {
    bearer: Option<String>,
}

/// A browser page from another origin must not drive the user's agent: an `Origin`
/// header is accepted only when it names the gateway's own host.
fn check_origin(req: &Request) -> Result<(), String> {
    let Some(origin) = req.headers().get("origin") else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("");
    let host = req
        .headers()
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .unwrap_or("");
    // Same origin, and the host an address, not a name: a DNS name rebound to 127.0.0.1
    // (`evil.example:PORT`) sends a matching Host and Origin, so names are refused.
    if !host.is_empty() && origin_host.eq_ignore_ascii_case(host) && is_address(host) {
        return Ok(());
    }
    Err(format!(
        "cross-origin WebSocket upgrade refused (Origin: {origin}); the gateway accepts only clients that are not browsers, or pages from its own origin"
    ))
}

/// `127.0.0.1:PORT`, `[::1]:PORT`, `localhost:PORT` (a name no DNS answer can rebind).
fn is_address(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok()
}

fn refuse(status: u16, body: String) -> ErrorResponse {
    let mut r = ErrorResponse::new(Some(body));
    *r.status_mut() = tungstenite::http::StatusCode::from_u16(status)
        .unwrap_or(tungstenite::http::StatusCode::FORBIDDEN);
    r
}

/// Frames out to one client: bounded, never waited on by a turn.
#[derive(Clone)]
struct Outbox {
    tx: mpsc::Sender<Queued>,
    /// Set when the client stopped reading and was dropped.
    dropped: Arc<AtomicBool>,
    kill: Arc<Notify>,
    stall: Duration,
    /// Bytes queued and not yet written: the queue is bounded in bytes too, since one
    /// frame (a `lagged` with the answer so far) can be large.
    bytes: Arc<AtomicUsize>,
}

/// The most bytes queued for one client.
pub const CLIENT_BUFFER_BYTES: usize = 16 * 1024 * 1024;

/// A frame with its size counted in its connection's queue.
type Queued = (Message, usize);

impl Outbox {
    /// Queue a frame. While the client's buffer is full, wait for it to drain, at most
    /// the stall timeout: then the client counts as stalled and is dropped (false). Only
    /// the connection's own tasks wait here, never a turn: a follower that waits leaves
    /// its events in the session's subscription, which never blocks the turn and marks a
    /// subscriber that falls too far behind as lagged.
    async fn send(&self, f: &ServerFrame) -> bool {
        if self.dropped.load(Ordering::SeqCst) {
            return false;
        }
        let json = f.to_json();
        let len = json.len();
        let deadline = tokio::time::Instant::now() + self.stall;
        // Over the byte budget: wait for the writer to drain (the first frame always
        // goes, however large).
        while self.bytes.load(Ordering::SeqCst) > 0
            && self.bytes.load(Ordering::SeqCst) + len > CLIENT_BUFFER_BYTES
        {
            if tokio::time::Instant::now() >= deadline {
                return self.stalled();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.bytes.fetch_add(len, Ordering::SeqCst);
        let item = match self.tx.try_send((Message::text(json), len)) {
            Ok(()) => return true,
            Err(mpsc::error::TrySendError::Closed(_)) => return false,
            Err(mpsc::error::TrySendError::Full(item)) => item,
        };
        match tokio::time::timeout_at(deadline, self.tx.send(item)).await {
            Ok(Ok(())) => true,
            Ok(Err(_)) => false,
            Err(_) => self.stalled(),
        }
    }

    fn stalled(&self) -> bool {
        if !self.dropped.swap(true, Ordering::SeqCst) {
            tracing::warn!(
                "a client read nothing for {:?} with its buffer full: dropping it",
                self.stall
            );
        }
        self.kill.notify_one();
        false
    }

    async fn error(&self, code: &str, message: impl Into<String>, request_id: Option<String>) {
        self.send(&ServerFrame::Error(ErrorFrame {
            request_id,
            session_id: None,
            turn_id: None,
            code: code.into(),
            message: message.into(),
        }))
        .await;
    }

    /// The last frame: the writer sends it and stops.
    fn close(&self, code: CloseCode, reason: &str) {
        let _ = self.tx.try_send((
            Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            })),
            0,
        ));
    }
}

struct Guard(Arc<Shared>);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::SeqCst);
        self.0.ended.notify_waiters();
    }
}

type Sink = SplitSink<WebSocketStream<Conn>, Message>;

/// Write queued frames, flushing once per batch; stop after a close frame. Returns the
/// sink, to close the TCP connection gracefully.
async fn write_loop(
    mut sink: Sink,
    mut rx: mpsc::Receiver<Queued>,
    bytes: Arc<AtomicUsize>,
) -> Option<Sink> {
    while let Some((m, len)) = rx.recv().await {
        let mut close = matches!(m, Message::Close(_));
        sink.feed(m).await.ok()?;
        let mut written = len;
        while !close {
            let Ok((m, len)) = rx.try_recv() else { break };
            close = matches!(m, Message::Close(_));
            sink.feed(m).await.ok()?;
            written += len;
        }
        sink.flush().await.ok()?;
        bytes.fetch_sub(written, Ordering::SeqCst);
        if close {
            break;
        }
    }
    let _ = sink.close().await;
    Some(sink)
}

/// Why a connection's read loop ended.
enum End {
    /// The client closed, or broke the protocol (its error frame is queued).
    Closed(CloseCode, &'static str),
    /// The client stopped reading: its buffer stayed full for the stall timeout.
    Dropped,
    /// The gateway is shutting down.
    Stopping,
}

async fn connection(stream: Conn, peer: String, shared: Arc<Shared>) {
    let open = shared.connections.fetch_add(1, Ordering::SeqCst) + 1;
    let _guard = Guard(shared.clone());
    let over = (open > shared.opts.max_connections).then_some(shared.opts.max_connections);
    let upgrade = Arc::new(Mutex::new(Upgrade::default()));
    let seen = upgrade.clone();
    // The handshake's callback type is tungstenite's: its error is an HTTP response.
    #[allow(clippy::result_large_err)]
    let callback = move |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        if let Some(max) = over {
            return Err(refuse(
                503,
                format!("the gateway has {max} connections open, its limit; try again later"),
            ));
        }
        if req.uri().path() != "/ws" {
            return Err(refuse(404, "the gateway's WebSocket is at /ws".into()));
        }
        check_origin(req).map_err(|m| refuse(403, m))?;
        if let Some(v) = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
        {
            lock(&seen).bearer = Some(
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
                    .unwrap_or(v)
                    .trim()
                    .to_string(),
            );
        }
        Ok(resp)
    };
    // Above max_frame_bytes a frame is read and answered with an error; above the hard
    // cap it is not read at all and the connection closes.
    let hard = shared.opts.hard_frame_cap();
    let config = WebSocketConfig::default()
        .max_message_size(Some(hard))
        .max_frame_size(Some(hard));
    let mut stopping = shared.stopping.clone();
    let handshake = tokio::time::timeout(
        shared.opts.hello_timeout,
        tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config)),
    );
    let ws = tokio::select! {
        r = handshake => match r {
            Ok(Ok(ws)) => ws,
            Ok(Err(e)) => {
                tracing::info!("{peer}: upgrade failed: {e}");
                return;
            }
            Err(_) => {
                tracing::info!("{peer}: no WebSocket upgrade within {:?}", shared.opts.hello_timeout);
                return;
            }
        },
        _ = stopping.changed() => return,
    };
    let bearer = lock(&upgrade).bearer.take();
    let (sink, mut source) = ws.split();
    let (tx, rx) = mpsc::channel::<Queued>(shared.opts.client_buffer.max(16));
    let bytes = Arc::new(AtomicUsize::new(0));
    let out = Outbox {
        tx,
        dropped: Arc::new(AtomicBool::new(false)),
        kill: Arc::new(Notify::new()),
        stall: shared.opts.stall_timeout,
        bytes: bytes.clone(),
    };
    let mut writer = tokio::spawn(write_loop(sink, rx, bytes));
    let mut client = Client {
        shared: shared.clone(),
        out: out.clone(),
        bearer,
        authed: false,
        session: None,
        follower: None,
        forwarders: Vec::new(),
        close: (CloseCode::Normal, ""),
        switching: Arc::new(AtomicBool::new(false)),
    };
    let hello_deadline = tokio::time::sleep(shared.opts.hello_timeout);
    tokio::pin!(hello_deadline);
    let end = loop {
        tokio::select! {
            biased;
            () = out.kill.notified() => break End::Dropped,
            _ = stopping.changed() => break End::Stopping,
            () = &mut hello_deadline, if !client.authed => {
                out.error("hello_required", format!("no hello within {:?}; closing", shared.opts.hello_timeout), None).await;
                break End::Closed(CloseCode::Policy, "no hello");
            }
            msg = source.next() => {
                let keep = match msg {
                    None | Some(Ok(Message::Close(_))) => false,
                    Some(Ok(Message::Text(t))) => client.on_text(t.as_str()).await,
                    Some(Ok(Message::Binary(_))) => {
                        out.error("bad_frame", "binary frames are not part of the protocol; send JSON text frames", None).await;
                        true
                    }
                    Some(Ok(_)) => true,
                    Some(Err(tungstenite::Error::Capacity(e))) => {
                        out.error("frame_too_large", format!("{e}; the limit is gateway.max_frame_bytes = {} bytes; closing", shared.opts.max_frame_bytes), None).await;
                        client.close = (CloseCode::Size, "frame too large");
                        false
                    }
                    Some(Err(tungstenite::Error::Utf8(_))) => {
                        out.error("bad_frame", "the text frame is not UTF-8", None).await;
                        true
                    }
                    Some(Err(tungstenite::Error::Protocol(e))) => {
                        out.error("bad_frame", format!("WebSocket protocol error: {e}; closing"), None).await;
                        client.close = (CloseCode::Protocol, "protocol error");
                        false
                    }
                    Some(Err(e)) => {
                        tracing::debug!("{peer}: {e}");
                        false
                    }
                };
                if !keep {
                    break End::Closed(client.close.0, client.close.1);
                }
            }
        }
    };
    match end {
        End::Dropped => {
            // Its socket is full: nothing more can reach it.
            client.stop_following();
            writer.abort();
            return;
        }
        End::Stopping => {
            // The service has shut down: each subscription delivers its turn's
            // `turn_cancelled` and ends. Let the followers forward that, then close.
            client.finish_following(SHUTDOWN_WAIT / 2).await;
            // Said without waiting: a stalled client must not hold up the shutdown.
            let _ = out.tx.try_send((
                Message::text(
                    ServerFrame::Error(ErrorFrame {
                        request_id: None,
                        session_id: None,
                        turn_id: None,
                        code: "shutting_down".into(),
                        message: "the gateway is shutting down; reconnect when it is back".into(),
                    })
                    .to_json(),
                ),
                0,
            ));
            out.close(CloseCode::Away, "the gateway is shutting down");
        }
        End::Closed(code, reason) => {
            client.stop_following();
            out.close(code, reason);
        }
    }
    drop(client);
    drop(out);
    // Let the last frames (an error, the close) go out, then close the TCP connection
    // gracefully: half-close, and read what the client still sends (its close reply, the
    // rest of a frame that was too large) until it closes too, briefly. Closing with
    // unread input would reset the connection and could lose those last frames.
    let sink = match tokio::time::timeout(LINGER, &mut writer).await {
        Ok(Ok(sink)) => sink,
        _ => {
            writer.abort();
            None
        }
    };
    if let Some(sink) = sink
        && let Ok(mut ws) = source.reunite(sink)
    {
        let tcp = ws.get_mut();
        let _ = tcp.shutdown().await;
        let mut buf = vec![0u8; 16 * 1024];
        let linger = async {
            let mut left: usize = 16 << 20;
            while left > 0 {
                match tcp.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => left = left.saturating_sub(n),
                }
            }
        };
        let _ = tokio::time::timeout(LINGER, linger).await;
    }
}

/// One connection's state: who it is and which session it follows.
struct Client {
    shared: Arc<Shared>,
    out: Outbox,
    bearer: Option<String>,
    authed: bool,
    /// The session this connection follows: its id and agent.
    session: Option<(String, String)>,
    follower: Option<JoinHandle<()>>,
    /// Turns this connection started in sessions it does not follow: (session, task).
    forwarders: Vec<(String, JoinHandle<()>)>,
    /// How the connection closes when a frame ends it.
    close: (CloseCode, &'static str),
    /// Set while it opens another session: its old one archived to make room for the
    /// new is not news to it.
    switching: Arc<AtomicBool>,
}

/// A blocking call into the session service, off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ServiceError> + Send + 'static,
) -> Result<T, ServiceError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or(Err(ServiceError::Stopped))
}

/// How a connection comes to a session.
enum Open {
    Attach(String, Option<String>),
    Create(Option<String>, Option<String>),
    /// The most recently active session, or a new one when there is none.
    Latest(Option<String>, Option<String>),
}

/// A session opened and subscribed to (blocking: the service may read the store).
fn open_session(
    service: &SessionService,
    how: &Open,
) -> Result<(protocol::SessionRef, Subscription), ServiceError> {
    // Idle sessions no one follows may be archived between attach and subscribe (with
    // `gateway.session_idle_ttl_hours = 0`); attach again then.
    let mut tries = 0;
    loop {
        let a = match how {
            Open::Attach(id, agent) => service.attach(id, agent.as_deref())?,
            Open::Create(agent, name) => service.create(agent.as_deref(), name.as_deref())?,
            Open::Latest(agent, name) => match service.list()?.into_iter().next() {
                Some(latest) => match service.attach(&latest.id, agent.as_deref()) {
                    // Another process (a `run`) drives it: start a new one instead.
                    Err(ServiceError::SessionBusyElsewhere { .. }) => {
                        service.create(agent.as_deref(), name.as_deref())?
                    }
                    r => r?,
                },
                None => service.create(agent.as_deref(), name.as_deref())?,
            },
        };
        match service.subscribe(&a.id) {
            Ok(sub) => {
                let session = protocol::SessionRef {
                    user_id: service.user().to_string(),
                    model: service.model(&a.agent).unwrap_or_default(),
                    session_id: a.id,
                    agent_name: a.agent,
                };
                return Ok((session, sub));
            }
            Err(ServiceError::NoSession(_)) if tries < 3 => {
                tries += 1;
                // A created session is in the store now: attach it.
                if let Open::Create(agent, _) | Open::Latest(agent, _) = how {
                    return open_session(service, &Open::Attach(a.id, agent.clone()));
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Forward a subscription's events as frames until it ends (or, with `one_turn`, until
/// its turn's terminal frame), or the client is dropped. A follower that is behind sends
/// only the latest of consecutive `queued` reports: the place in the queue now.
fn forward(
    sub: Subscription,
    mut conv: Converter,
    out: Outbox,
    shared: Arc<Shared>,
    one_turn: bool,
    switching: Arc<AtomicBool>,
) -> JoinHandle<()> {
    let notify = Arc::new(Notify::new());
    let n = notify.clone();
    // Called on the turn's thread for each event: it only stores a permit.
    sub.set_waker(Arc::new(move || n.notify_one()));
    let session_id = conv.session().to_string();
    tokio::spawn(async move {
        // Frames for `e`; false once the forwarding is over.
        let mut emit = async |e: TurnEvent| {
            let end = one_turn && e.is_terminal();
            for f in conv.frames(e, |s, t| shared.request_of(s, t)) {
                if !out.send(&f).await {
                    return false;
                }
            }
            !end
        };
        let mut queued: Option<TurnEvent> = None;
        loop {
            let next = match sub.try_recv() {
                TryRecv::Event(e @ TurnEvent::Queued { .. }) => {
                    queued = Some(e);
                    continue;
                }
                TryRecv::Event(e) => Some(e),
                TryRecv::Empty => None,
                TryRecv::Closed => {
                    if let Some(q) = queued.take() {
                        emit(q).await;
                    }
                    // Archived to make room (or idle): say so, rather than go quiet.
                    if !one_turn
                        && !shared.shutting_down.load(Ordering::SeqCst)
                        && !switching.load(Ordering::SeqCst)
                    {
                        out.send(&ServerFrame::Error(ErrorFrame {
                            request_id: None,
                            session_id: Some(session_id.clone()),
                            turn_id: None,
                            code: "session_archived".into(),
                            message: format!(
                                "session {session_id} was archived (gateway.max_sessions_per_user or session_idle_ttl_hours); this connection no longer follows it: switch_session {session_id} resumes it"
                            ),
                        }))
                        .await;
                    }
                    return;
                }
            };
            if let Some(q) = queued.take()
                && !emit(q).await
            {
                return;
            }
            match next {
                Some(e) => {
                    if !emit(e).await {
                        return;
                    }
                }
                None => notify.notified().await,
            }
        }
    })
}

impl Client {
    /// Handle one text frame; false to close the connection.
    async fn on_text(&mut self, text: &str) -> bool {
        if text.len() > self.shared.opts.max_frame_bytes {
            self.out
                .error(
                    "frame_too_large",
                    format!(
                        "the frame has {} bytes; the limit is gateway.max_frame_bytes = {}",
                        text.len(),
                        self.shared.opts.max_frame_bytes
                    ),
                    None,
                )
                .await;
            return true;
        }
        let frame = match protocol::parse_client(text) {
            Ok(f) => f,
            Err(bad) => {
                self.out.error(bad.code, bad.message, bad.request_id).await;
                return true;
            }
        };
        let shared = self.shared.clone();
        let stopped = shared.gate.read().await;
        if *stopped {
            self.out
                .error(
                    "shutting_down",
                    "the gateway is shutting down; reconnect when it is back",
                    request_id(&frame),
                )
                .await;
            return true;
        }
        if !self.authed {
            return match frame {
                ClientFrame::Hello(h) => self.hello(h).await,
                other => {
                    self.out.error(
                        "hello_required",
                        format!(
                            "send hello first: {{\"type\": \"hello\", \"payload\": {{\"protocol_version\": {PROTOCOL_VERSION}, \"token\": \"…\"}}}}"
                        ),
                        request_id(&other),
                    ).await;
                    true
                }
            };
        }
        match frame {
            ClientFrame::Hello(h) => {
                self.out.error(
                    "bad_request",
                    "already authenticated: use switch_session or create_session to change sessions",
                    h.request_id,
                ).await;
            }
            ClientFrame::SendTurn(t) => self.send_turn(t).await,
            ClientFrame::CancelActiveTurn(c) => self.cancel(c).await,
            ClientFrame::CancelAllActiveTurns(r) => {
                let service = Arc::clone(&self.shared.service);
                let n = blocking(move || Ok(service.cancel_all()))
                    .await
                    .unwrap_or(0);
                tracing::info!("cancel_all_active_turns: {n} turns");
                self.health(
                    r.request_id,
                    Some(format!(
                        "cancelled {n} turn{}",
                        if n == 1 { "" } else { "s" }
                    )),
                )
                .await;
            }
            ClientFrame::HealthCheck(r) => self.health(r.request_id, None).await,
            ClientFrame::CreateSession(c) => {
                self.switch_to(
                    Open::Create(c.agent_name, c.display_name),
                    c.request_id,
                    None,
                    true,
                )
                .await;
            }
            ClientFrame::ListSessions(l) => {
                let service = Arc::clone(&self.shared.service);
                let sub = l.include_subagent_sessions;
                match blocking(move || service.list_with(sub)).await {
                    Ok(list) => {
                        self.out
                            .send(&ServerFrame::SessionList(protocol::SessionList {
                                request_id: l.request_id,
                                sessions: list
                                    .into_iter()
                                    .map(|s| protocol::SessionEntry {
                                        session_id: s.id,
                                        agent_name: s.agent,
                                        turns: s.turns,
                                        live: s.live,
                                        active: s.active,
                                    })
                                    .collect(),
                            }))
                            .await;
                    }
                    Err(e) => self.service_error(e, l.request_id, None).await,
                }
            }
            ClientFrame::SwitchSession(s) => {
                let named = s.session_id.clone();
                self.switch_to(
                    Open::Attach(s.session_id, None),
                    s.request_id,
                    Some(named),
                    false,
                )
                .await;
            }
        }
        true
    }

    async fn refuse_hello(&mut self, code: &str, why: String, request_id: Option<String>) -> bool {
        self.out.error(code, why, request_id).await;
        self.close = (CloseCode::Policy, "unauthorized");
        false
    }

    async fn hello(&mut self, h: protocol::Hello) -> bool {
        if h.protocol_version != PROTOCOL_VERSION {
            self.close = (CloseCode::Protocol, "unsupported protocol_version");
            self.out.error(
                "protocol_version",
                format!(
                    "this gateway speaks protocol_version {PROTOCOL_VERSION}; the hello asked for {}",
                    h.protocol_version
                ),
                h.request_id,
            ).await;
            return false;
        }
        let given = h.token.clone().or_else(|| self.bearer.clone());
        let user = self.shared.service.user().to_string();
        let source = &self.shared.token.source;
        let why = match given {
            None => Some(format!(
                "no token: send it as payload.token in hello or as `Authorization: Bearer …` on the upgrade; user {user}'s token is in {source}"
            )),
            Some(t) if !crate::token::matches(&self.shared.token.value, &t) => {
                Some(format!("wrong token; user {user}'s token is in {source}"))
            }
            Some(_) => None,
        };
        if let Some(why) = why {
            return self.refuse_hello("unauthorized", why, h.request_id).await;
        }
        if let Some(u) = &h.user_id
            && *u != user
        {
            return self
                .refuse_hello(
                    "unauthorized",
                    format!(
                        "this token is user {user}'s, not {u}'s: the user comes from the token"
                    ),
                    h.request_id,
                )
                .await;
        }
        self.authed = true;
        let how = match h.session_id.clone() {
            Some(id) => Open::Attach(id, h.agent_name),
            None if h.create_new_session => Open::Create(h.agent_name, h.display_name),
            None => Open::Latest(h.agent_name, h.display_name),
        };
        let service = Arc::clone(&self.shared.service);
        match blocking(move || open_session(&service, &how)).await {
            Ok((session, sub)) => {
                let limits = self.limits();
                let request_id = h.request_id;
                self.follow(&session, sub, |snap| {
                    Some(ServerFrame::HelloAck(protocol::HelloAck {
                        request_id,
                        protocol_version: PROTOCOL_VERSION,
                        session: session.clone(),
                        active_turn: active_turn(snap),
                        last_turn: last_turn(snap),
                        limits,
                    }))
                })
                .await;
            }
            // Authenticated, but the session could not be had: say why and stay
            // connected so the client can create or switch.
            Err(e) => self.service_error(e, h.request_id, h.session_id).await,
        }
        true
    }

    fn limits(&self) -> protocol::Limits {
        let g = &self.shared.service.system().config.gateway;
        protocol::Limits {
            max_frame_bytes: self.shared.opts.max_frame_bytes,
            max_prompt_bytes: self.shared.opts.max_prompt_bytes,
            max_sessions_per_user: g.max_sessions_per_user,
            max_concurrent_turns_per_user: g.max_concurrent_turns_per_user,
        }
    }

    async fn switch_to(
        &mut self,
        how: Open,
        request_id: Option<String>,
        named: Option<String>,
        created: bool,
    ) {
        let service = Arc::clone(&self.shared.service);
        self.switching.store(true, Ordering::SeqCst);
        let opened = blocking(move || open_session(&service, &how)).await;
        let (session, sub) = match opened {
            Ok(x) => x,
            Err(e) => {
                self.switching.store(false, Ordering::SeqCst);
                return self.service_error(e, request_id, named).await;
            }
        };
        self.follow(&session, sub, |snap| {
            let body = protocol::SessionSwitched {
                request_id,
                session: session.clone(),
                active_turn: active_turn(snap),
                last_turn: last_turn(snap),
            };
            Some(if created {
                ServerFrame::SessionCreated(body)
            } else {
                ServerFrame::SessionSwitched(body)
            })
        })
        .await;
    }

    fn stop_following(&mut self) {
        if let Some(f) = self.follower.take() {
            f.abort();
        }
        for (_, f) in self.forwarders.drain(..) {
            f.abort();
        }
    }

    /// Wait (at most `within`) for the followers to forward what their subscriptions
    /// still hold: they end when the service closes the subscriptions.
    async fn finish_following(&mut self, within: Duration) {
        let mut tasks: Vec<JoinHandle<()>> = self.follower.take().into_iter().collect();
        tasks.extend(self.forwarders.drain(..).map(|(_, f)| f));
        let deadline = tokio::time::Instant::now() + within;
        for mut t in tasks {
            if tokio::time::timeout_at(deadline, &mut t).await.is_err() {
                t.abort();
            }
        }
    }

    fn following(&self) -> bool {
        self.follower.as_ref().is_some_and(|f| !f.is_finished())
    }

    /// Follow `session` through `sub`, made by [`open_session`]: its snapshot now, its
    /// events from now on. `ack` (built from the snapshot) is queued before any of them.
    async fn follow(
        &mut self,
        session: &protocol::SessionRef,
        sub: Subscription,
        ack: impl FnOnce(&TurnSnapshot) -> Option<ServerFrame>,
    ) {
        self.switching.store(true, Ordering::SeqCst);
        if let Some(f) = self.follower.take() {
            f.abort();
        }
        let id = session.session_id.clone();
        // Turns this connection started there now come through the follower.
        self.forwarders.retain(|(s, f)| {
            if *s == id {
                f.abort();
            }
            *s != id && !f.is_finished()
        });
        let snap = match sub.try_recv() {
            TryRecv::Event(TurnEvent::Snapshot(s)) => s,
            _ => TurnSnapshot::default(),
        };
        let conv = Converter::new(id.clone(), snap.turn_id.clone().filter(|_| snap.active));
        if let Some(f) = ack(&snap) {
            self.out.send(&f).await;
        }
        // The old follower keeps its flag (set: it says nothing more); the new one
        // gets its own.
        self.switching = Arc::new(AtomicBool::new(false));
        self.follower = Some(forward(
            sub,
            conv,
            self.out.clone(),
            self.shared.clone(),
            false,
            self.switching.clone(),
        ));
        self.session = Some((id, session.agent_name.clone()));
    }

    /// The session a frame names, or the connection's own.
    async fn target(
        &mut self,
        named: Option<String>,
        request_id: &Option<String>,
    ) -> Option<String> {
        match named {
            Some(n) => {
                let service = Arc::clone(&self.shared.service);
                let n2 = n.clone();
                match blocking(move || service.resolve(&n2)).await {
                    Ok(id) => Some(id),
                    Err(e) => {
                        self.service_error(e, request_id.clone(), Some(n)).await;
                        None
                    }
                }
            }
            None => {
                match &self.session {
                    Some((id, _)) => Some(id.clone()),
                    None => {
                        self.out.error(
                        "no_session",
                        "this connection has no session: send create_session or switch_session",
                        request_id.clone(),
                    ).await;
                        None
                    }
                }
            }
        }
    }

    async fn send_turn(&mut self, t: protocol::SendTurn) {
        if t.attachments.is_some() {
            self.out.error(
                "bad_request",
                "attachments are not supported yet: no provider adapter carries them; send the prompt as text",
                t.request_id,
            ).await;
            return;
        }
        if t.prompt.len() > self.shared.opts.max_prompt_bytes {
            self.out
                .error(
                    "prompt_too_large",
                    format!(
                        "the prompt has {} bytes; the limit is gateway.max_prompt_bytes = {}",
                        t.prompt.len(),
                        self.shared.opts.max_prompt_bytes
                    ),
                    t.request_id,
                )
                .await;
            return;
        }
        if t.prompt.trim().is_empty() {
            self.out
                .error("bad_request", "the prompt is empty", t.request_id)
                .await;
            return;
        }
        let Some(id) = self.target(t.session_id.clone(), &t.request_id).await else {
            return;
        };
        let own = self.session.as_ref().is_some_and(|(s, _)| *s == id);
        // Archived while this client was away: follow it again before the turn starts.
        if own && !self.following() {
            let service = Arc::clone(&self.shared.service);
            let how = Open::Attach(id.clone(), None);
            match blocking(move || open_session(&service, &how)).await {
                Ok((session, sub)) => {
                    self.follow(&session, sub, |_| None).await;
                }
                Err(e) => return self.service_error(e, t.request_id, Some(id)).await,
            }
        }
        let service = Arc::clone(&self.shared.service);
        let shared = self.shared.clone();
        let (id2, prompt, request_id) = (id.clone(), t.prompt, t.request_id.clone());
        let r = blocking(move || match request_id {
            // Held while submitting: the turn's `turn_started` waits for its request id.
            Some(r) => {
                let slot = shared.request_slot(&id2);
                let mut known = lock(&slot);
                let sub = service.submit_from(&id2, &prompt, gateway_origin(&id2))?;
                *known = Some((sub.turn_id().unwrap_or_default().to_string(), r));
                Ok(sub)
            }
            None => service.submit_from(&id2, &prompt, gateway_origin(&id2)),
        })
        .await;
        match r {
            // This connection follows the session: the turn's events come through that.
            Ok(_) if own => {}
            Ok(sub) => {
                // A turn in another session: forward this turn only.
                let turn = sub.turn_id().map(str::to_string);
                let conv = Converter::new(id.clone(), turn);
                let task = forward(
                    sub,
                    conv,
                    self.out.clone(),
                    self.shared.clone(),
                    true,
                    self.switching.clone(),
                );
                self.forwarders.retain(|(_, f)| !f.is_finished());
                self.forwarders.push((id, task));
            }
            Err(e) => self.service_error(e, t.request_id, Some(id)).await,
        }
    }

    async fn cancel(&mut self, c: protocol::CancelActiveTurn) {
        let Some(id) = self.target(c.session_id.clone(), &c.request_id).await else {
            return;
        };
        let service = Arc::clone(&self.shared.service);
        let id2 = id.clone();
        let cancelled = blocking(move || Ok(service.cancel(&id2)))
            .await
            .unwrap_or(false);
        if !cancelled {
            self.out
                .send(&ServerFrame::Error(ErrorFrame {
                    request_id: c.request_id,
                    session_id: Some(id),
                    turn_id: c.turn_id,
                    code: "no_active_turn".into(),
                    message: "the session has no active turn to cancel".into(),
                }))
                .await;
        }
        // Otherwise the turn's own `turn_cancelled` answers.
    }

    async fn health(&mut self, request_id: Option<String>, message: Option<String>) {
        let service = Arc::clone(&self.shared.service);
        let id = self.session.as_ref().map(|(id, _)| id.clone());
        let (snap, live) = blocking(move || {
            Ok((
                id.and_then(|id| service.snapshot(&id)),
                service.live_sessions(),
            ))
        })
        .await
        .unwrap_or((None, 0));
        self.out
            .send(&ServerFrame::HealthStatus(protocol::HealthStatus {
                request_id,
                healthy: true,
                user_id: self.shared.service.user().to_string(),
                session_id: self.session.as_ref().map(|(id, _)| id.clone()),
                active_turn: snap.as_ref().and_then(active_turn),
                live_sessions: live,
                connections: self.shared.connections.load(Ordering::SeqCst),
                version: env!("CARGO_PKG_VERSION").to_string(),
                message,
            }))
            .await;
    }

    async fn service_error(
        &self,
        e: ServiceError,
        request_id: Option<String>,
        session: Option<String>,
    ) {
        let (code, message) = describe(&e);
        self.out
            .send(&ServerFrame::Error(ErrorFrame {
                request_id,
                session_id: session,
                turn_id: None,
                code: code.into(),
                message,
            }))
            .await;
    }
}

/// The `request_id` of a client frame, to answer it.
fn request_id(f: &ClientFrame) -> Option<String> {
    match f {
        ClientFrame::Hello(h) => h.request_id.clone(),
        ClientFrame::SendTurn(t) => t.request_id.clone(),
        ClientFrame::CancelActiveTurn(c) => c.request_id.clone(),
        ClientFrame::CancelAllActiveTurns(r) | ClientFrame::HealthCheck(r) => r.request_id.clone(),
        ClientFrame::CreateSession(c) => c.request_id.clone(),
        ClientFrame::ListSessions(l) => l.request_id.clone(),
        ClientFrame::SwitchSession(s) => s.request_id.clone(),
    }
}

/// A service error as an `error` frame's code and message (advice for gateway clients).
fn describe(e: &ServiceError) -> (&'static str, String) {
    match e {
        ServiceError::NoSession(id) => (
            "no_session",
            format!("no session `{id}`; list_sessions shows them, create_session starts one"),
        ),
        ServiceError::AmbiguousSession { .. } => {
            ("ambiguous_session", format!("{e}; give more of the id"))
        }
        ServiceError::SessionBusy { .. } => (
            "session_busy",
            format!("{e}; wait for its turn_completed, or cancel_active_turn"),
        ),
        ServiceError::SessionBusyElsewhere { .. } => (
            "session_busy_elsewhere",
            format!("{e}; wait for that turn to end, or create_session"),
        ),
        ServiceError::TooManySessions { .. } => ("too_many_sessions", e.to_string()),
        ServiceError::BadName(_) => ("bad_request", e.to_string()),
        ServiceError::Setup(SetupError::UnknownAgent { .. }) => ("unknown_agent", e.to_string()),
        ServiceError::Turn(t) => (turn_ended_code(t), e.to_string()),
        _ => ("internal", e.to_string()),
    }
}

/// The origin of a turn sent through the gateway: its session, whose clients are told a
/// job's results later.
fn gateway_origin(session: &str) -> oxydra_session::Origin {
    oxydra_session::Origin::Gateway {
        session: session.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn upgrade(headers: &[(&str, &str)]) -> Request {
        let mut b = tungstenite::http::Request::builder().uri("/ws");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn only_the_gateways_own_origin_or_none_may_upgrade() {
        let host = ("host", "127.0.0.1:8080");
        assert!(check_origin(&upgrade(&[host])).is_ok(), "not a browser");
        for own in ["http://127.0.0.1:8080", "https://127.0.0.1:8080"] {
            let r = check_origin(&upgrade(&[host, ("origin", own)]));
            assert!(r.is_ok(), "{own}: {r:?}");
        }
        let r = check_origin(&upgrade(&[
            ("host", "localhost:80"),
            ("origin", "http://LocalHost:80"),
        ]));
        assert!(r.is_ok(), "host names are case-insensitive: {r:?}");
        for foreign in [
            "http://evil.example",
            "http://127.0.0.1:8081",
            "http://127.0.0.1:8080.evil.example",
            "null",
            "",
            "127.0.0.1:8080",
        ] {
            let e = check_origin(&upgrade(&[host, ("origin", foreign)])).unwrap_err();
            assert!(e.contains("cross-origin"), "{e}");
        }
        // Without a Host there is no own origin to match.
        assert!(check_origin(&upgrade(&[("origin", "http://127.0.0.1:8080")])).is_err());
        // IPv6 loopback is an address too.
        let r = check_origin(&upgrade(&[
            ("host", "[::1]:9"),
            ("origin", "http://[::1]:9"),
        ]));
        assert!(r.is_ok(), "{r:?}");
        // DNS rebinding: a page of evil.example, its name now resolving to 127.0.0.1,
        // sends a Host and Origin that match each other: refused, it is a name.
        let e = check_origin(&upgrade(&[
            ("host", "evil.example:8080"),
            ("origin", "http://evil.example:8080"),
        ]))
        .unwrap_err();
        assert!(e.contains("cross-origin"), "{e}");
    }

    #[test]
    fn service_errors_have_stable_codes_and_advice() {
        let (code, m) = describe(&ServiceError::NoSession("abc".into()));
        assert_eq!(code, "no_session");
        assert!(m.contains("abc") && m.contains("list_sessions"), "{m}");
        let (code, m) = describe(&ServiceError::SessionBusy {
            session: "s".into(),
        });
        assert_eq!(code, "session_busy");
        assert!(m.contains("cancel_active_turn"), "{m}");
        let (code, _) = describe(&ServiceError::AmbiguousSession {
            prefix: "a".into(),
            matches: vec!["ab".into(), "ac".into()],
        });
        assert_eq!(code, "ambiguous_session");
        let (code, m) = describe(&ServiceError::TooManySessions {
            user: "alice".into(),
            limit: 2,
        });
        assert_eq!(code, "too_many_sessions");
        assert!(m.contains("max_sessions_per_user"), "{m}");
        assert_eq!(describe(&ServiceError::Stopped).0, "internal");
    }

    #[test]
    fn the_hard_cap_is_above_the_frame_limit() {
        let o = GatewayOptions::default();
        assert_eq!(o.max_frame_bytes, 1 << 20);
        assert!(o.hard_frame_cap() > o.max_frame_bytes);
        let o = GatewayOptions {
            max_frame_bytes: usize::MAX,
            ..o
        };
        assert_eq!(o.hard_frame_cap(), usize::MAX);
    }
}
