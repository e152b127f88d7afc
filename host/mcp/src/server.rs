//! One supervisor per configured server, on the manager's own tokio runtime: start
//! (a confined child for stdio, the forwarder for HTTP), initialize, list the tools,
//! follow `notifications/tools/list_changed`, and when the server stops, say why and
//! start it again with backoff (1 s doubling to 30 s). Tool calls come from the turn's
//! blocking thread and wait on a channel, never on the runtime.

use crate::config::{self, MAX_TOOL_NAME, SEPARATOR, ServerConfig, Transport};
use crate::launch::StdioCommand;
use crate::result;
use oxydra_runtime::host::{CallError, ExternalTool, ToolFailure};
use oxydra_runtime::{Limits, LoadedTool, Tier, ToolDescriptor, ToolSource, WebAccess};
use rmcp::model::{CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::{ClientHandler, Peer, RoleClient, ServiceExt};
use serde::Serialize;
use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::Notify;

/// How a stdio server is started: this program with these arguments, then `--`, the
/// server's command and its arguments. It confines itself and executes the server.
#[derive(Debug, Clone)]
pub struct Launcher {
    pub program: PathBuf,
    pub args: Vec<OsString>,
}

/// What the manager needs from the host.
#[derive(Debug, Clone)]
pub struct Options {
    /// The workspace (stdio servers' scratch directories are in its `.oxydra/mcp`).
    pub workspace: PathBuf,
    pub launcher: Launcher,
    /// `[tools.web]`'s policy and resolver: what an HTTP server may be.
    pub web: WebAccess,
    /// A private directory for the HTTP forwarders' sockets.
    pub socket_dir: PathBuf,
    /// In the container tier: where the runner's bridges to stdio servers (each in its
    /// own container) answer, one `<name>.sock` per server.
    pub bridge_dir: Option<PathBuf>,
}

/// A server's state as `mcp list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ServerStatus {
    pub name: String,
    pub transport: &'static str,
    /// `starting`, `ready` or `down`.
    pub state: &'static str,
    /// Why it is down (and when it is tried again).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub tools: usize,
    /// Of a stdio server: what it may read and write.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reads: Vec<PathBuf>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub writes: Vec<PathBuf>,
    pub restarts: u32,
    /// What its confinement could not apply on this kernel (e.g. no Landlock).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub degraded: Vec<String>,
}

/// One tool a server lists, and whether it is offered.
#[derive(Debug, Clone, Serialize)]
pub struct ToolInfo {
    /// The server's own name for it.
    pub name: String,
    /// `<server>__<name>`, the name the model sees.
    pub offered_as: Option<String>,
    pub description: String,
    /// Why it is not offered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    pub input_schema: serde_json::Value,
}

enum State {
    Starting,
    Ready(Peer<RoleClient>),
    Down { reason: String, retry_at: Instant },
}

pub(crate) struct Server {
    name: String,
    cfg: ServerConfig,
    access: Option<config::Access>,
    state: Mutex<State>,
    tools: Mutex<Vec<Arc<LoadedTool>>>,
    listed: Mutex<Vec<ToolInfo>>,
    restarts: Mutex<u32>,
    /// Set when the first attempt has an outcome (ready or down).
    settled: Notify,
    settled_flag: Mutex<bool>,
    handle: tokio::runtime::Handle,
    /// This server, for its tools to point back at.
    me: Weak<Server>,
    /// Whether this process's forwarder (an HTTP server's) is listening.
    forwarding: Mutex<bool>,
    /// Tool list changes announced, and listed (see [`Changes`]).
    pending: Arc<Changes>,
    /// What the server's confinement could not apply, as it reported it.
    degraded: Mutex<Vec<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Calls `notifications/tools/list_changed` back into the supervisor.
struct Handler {
    changed: Arc<Notify>,
    pending: Arc<Changes>,
}

/// `tools/list_changed` announcements counted (by the stdout filter, which sees one
/// before the response that follows it, and by the handler), and how many of them a
/// finished tool list covers: a call that returns while the list is behind waits for
/// it, so the model's next step is offered the new tools.
#[derive(Default)]
struct Changes {
    seen: std::sync::atomic::AtomicU64,
    listed: std::sync::atomic::AtomicU64,
}

impl Changes {
    fn announce(&self) {
        self.seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    /// The count a list started now covers.
    fn mark(&self) -> u64 {
        self.seen.load(std::sync::atomic::Ordering::SeqCst)
    }
    fn listed(&self, upto: u64) {
        self.listed
            .fetch_max(upto, std::sync::atomic::Ordering::SeqCst);
    }
    /// A new connection: nothing it announced is pending yet.
    fn reset(&self) {
        self.listed.store(
            self.seen.load(std::sync::atomic::Ordering::SeqCst),
            std::sync::atomic::Ordering::SeqCst,
        );
    }
    /// The connection is gone: no call waits for a list.
    fn release(&self) {
        self.listed
            .store(u64::MAX, std::sync::atomic::Ordering::SeqCst);
    }
    fn behind(&self) -> bool {
        self.listed.load(std::sync::atomic::Ordering::SeqCst)
            < self.seen.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl ClientHandler for Handler {
    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.pending.announce();
        self.changed.notify_one();
    }

    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("oxydra", env!("CARGO_PKG_VERSION")),
        )
    }
}

/// The last lines a child wrote to stderr, and the first lines it wrote to stdout that
/// were not JSON-RPC.
#[derive(Default)]
struct Said {
    stderr: Mutex<VecDeque<String>>,
    /// What its confinement could not apply (`mcp-exec: degraded: …` on stderr).
    degraded: Mutex<Vec<String>>,
    junk: Mutex<Vec<String>>,
    oversized: Mutex<u64>,
    /// The child's stderr reached its end (everything it wrote is in `stderr`).
    stderr_eof: std::sync::atomic::AtomicBool,
    stderr_done: tokio::sync::Notify,
}

const KEEP_LINES: usize = 8;
const KEEP_LINE_CHARS: usize = 240;

fn short(line: &[u8]) -> String {
    let s = String::from_utf8_lossy(line);
    let s = s.trim_end();
    match s.char_indices().nth(KEEP_LINE_CHARS) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

impl Said {
    /// Once a child has exited, its last words may still be in the pipe: wait (at most
    /// `within`) for the stderr reader to reach the end, so the reason names them.
    async fn stderr_drained(&self, within: Duration) {
        let done = self.stderr_done.notified();
        if self.stderr_eof.load(std::sync::atomic::Ordering::Acquire) {
            return;
        }
        let _ = tokio::time::timeout(within, done).await;
    }

    fn tail(&self) -> String {
        let mut out = String::new();
        let junk = lock(&self.junk);
        if !junk.is_empty() {
            out.push_str(&format!(
                "; it wrote to stdout what is not MCP (JSON-RPC): {:?}",
                junk.join(" | ")
            ));
        }
        let n = *lock(&self.oversized);
        if n > 0 {
            out.push_str(&format!(
                "; {n} message(s) over the size limit were dropped"
            ));
        }
        let err = lock(&self.stderr);
        if !err.is_empty() {
            out.push_str(&format!(
                "; its stderr ended with: {}",
                err.iter().cloned().collect::<Vec<_>>().join(" | ")
            ));
        }
        out
    }
}

/// Reads lines without ever holding more than `max` bytes of one.
struct Lines<R> {
    r: BufReader<R>,
    max: usize,
}

impl<R: tokio::io::AsyncRead + Unpin> Lines<R> {
    fn new(from: R, max: usize) -> Self {
        Lines {
            r: BufReader::with_capacity(64 * 1024, from),
            max,
        }
    }

    /// The next line (`Some(None)`: one longer than `max`, dropped); `None` at the end.
    async fn next(&mut self) -> Option<Option<Vec<u8>>> {
        let mut line: Vec<u8> = Vec::new();
        let mut skipping = false;
        loop {
            let buf = match self.r.fill_buf().await {
                Ok(b) if !b.is_empty() => b,
                _ => {
                    return (!line.is_empty() && !skipping).then_some(Some(line));
                }
            };
            let (n, end) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (buf.len(), false),
            };
            if !skipping {
                if line.len() + n > self.max {
                    skipping = true;
                    line = Vec::new();
                } else {
                    line.extend_from_slice(&buf[..n]);
                }
            }
            self.r.consume(n);
            if end {
                return Some((!skipping).then_some(line));
            }
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// A running connection and what ends with it.
struct Conn {
    service: RunningService<RoleClient, Handler>,
    child: Option<tokio::process::Child>,
    said: Arc<Said>,
    /// The child's process group, killed when the connection ends (a launcher's own
    /// children with it).
    _group: Option<crate::launch::Group>,
}

impl Server {
    pub(crate) fn new(
        name: String,
        cfg: ServerConfig,
        access: Option<config::Access>,
        handle: tokio::runtime::Handle,
    ) -> Arc<Server> {
        Arc::new_cyclic(|me| Server {
            me: me.clone(),
            forwarding: Mutex::new(false),
            pending: Arc::new(Changes::default()),
            degraded: Mutex::new(Vec::new()),
            name,
            cfg,
            access,
            state: Mutex::new(State::Starting),
            tools: Mutex::new(Vec::new()),
            listed: Mutex::new(Vec::new()),
            restarts: Mutex::new(0),
            settled: Notify::new(),
            settled_flag: Mutex::new(false),
            handle,
        })
    }

    fn key(&self, k: &str) -> String {
        format!("mcp.servers.{}.{k}", self.name)
    }

    fn settle(&self) {
        *lock(&self.settled_flag) = true;
        self.settled.notify_waiters();
    }

    /// Wait until the first attempt has an outcome, at most until `deadline`.
    pub(crate) async fn settled(&self, deadline: tokio::time::Instant) {
        let wait = async {
            loop {
                let notified = self.settled.notified();
                if *lock(&self.settled_flag) {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout_at(deadline, wait).await;
    }

    pub(crate) fn status(&self) -> ServerStatus {
        let (state, reason) = match &*lock(&self.state) {
            State::Starting => ("starting", None),
            State::Ready(_) => ("ready", None),
            State::Down { reason, retry_at } => (
                "down",
                Some(match retry_at.checked_duration_since(Instant::now()) {
                    Some(d) => format!("{reason} (started again in {} s)", d.as_secs() + 1),
                    None => format!("{reason} (being started again)"),
                }),
            ),
        };
        ServerStatus {
            name: self.name.clone(),
            transport: self.cfg.transport().name(),
            state,
            reason,
            tools: lock(&self.tools).len(),
            reads: self
                .access
                .as_ref()
                .map(|a| a.read_only.clone())
                .unwrap_or_default(),
            writes: self
                .access
                .as_ref()
                .map(|a| a.read_write.clone())
                .unwrap_or_default(),
            restarts: *lock(&self.restarts),
            degraded: lock(&self.degraded).clone(),
        }
    }

    pub(crate) fn listed(&self) -> Vec<ToolInfo> {
        lock(&self.listed).clone()
    }

    pub(crate) fn tools(&self) -> Vec<Arc<LoadedTool>> {
        lock(&self.tools).clone()
    }

    /// Supervise the server for as long as the manager lives.
    pub(crate) async fn supervise(self: Arc<Self>, opts: Arc<Options>) {
        let mut backoff = Duration::from_secs(1);
        loop {
            // A restart keeps the last failure on show (and its tools answering with it)
            // until the server is ready again.
            let started = Instant::now();
            let changed = Arc::new(Notify::new());
            let startup = Duration::from_secs(self.cfg.startup_timeout_secs);
            let said = Arc::new(Said::default());
            let reason = match tokio::time::timeout(
                startup,
                self.connect(&opts, changed.clone(), said.clone()),
            )
            .await
            {
                Err(_) => format!(
                    "MCP server `{}` did not finish starting (initialize) within {} s ({}){}",
                    self.name,
                    startup.as_secs(),
                    self.key("startup_timeout_secs"),
                    said.tail()
                ),
                Ok(Err(e)) => e,
                Ok(Ok(conn)) => {
                    // The first tool list within what is left of the startup time.
                    let left = startup
                        .saturating_sub(started.elapsed())
                        .max(Duration::from_secs(1));
                    self.run(conn, changed, left).await
                }
            };
            tracing::warn!(server = %self.name, "{reason}");
            if started.elapsed() > Duration::from_secs(60) {
                backoff = Duration::from_secs(1);
            }
            *lock(&self.state) = State::Down {
                reason,
                retry_at: Instant::now() + backoff,
            };
            self.settle();
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(30));
            *lock(&self.restarts) += 1;
        }
    }

    /// A connected server: list its tools, follow list changes, and return why it ended.
    async fn run(&self, conn: Conn, changed: Arc<Notify>, startup: Duration) -> String {
        let Conn {
            service,
            mut child,
            said,
            _group,
        } = conn;
        let peer = service.peer().clone();
        self.pending.reset();
        let covers = self.pending.mark();
        if let Err(e) = self.refresh(&peer, startup).await {
            let _ = service.cancel().await;
            self.pending.release();
            return format!("{e}{}", said.tail());
        }
        self.pending.listed(covers);
        *lock(&self.degraded) = lock(&said.degraded).clone();
        *lock(&self.state) = State::Ready(peer.clone());
        self.settle();
        tracing::info!(server = %self.name, tools = lock(&self.tools).len(), "MCP server ready");
        let mut waiting = std::pin::pin!(service.waiting());
        loop {
            tokio::select! {
                _ = &mut waiting => break,
                _ = changed.notified() => {
                    // A change announced while listing is listed again (the notify
                    // keeps its permit), and a waiting call waits for that too.
                    let covers = self.pending.mark();
                    if let Err(e) = self.refresh(&peer, startup).await {
                        tracing::warn!(server = %self.name, "{e}");
                    }
                    self.pending.listed(covers);
                }
            }
        }
        // Its tools stop offering a dead connection at once; the reason follows.
        *lock(&self.state) = State::Down {
            reason: format!("MCP server `{}` stopped", self.name),
            retry_at: Instant::now() + Duration::from_secs(1),
        };
        // Nothing more will be listed on this connection: no call waits for it.
        self.pending.release();
        let mut how = "closed the connection".to_string();
        if let Some(c) = child.as_mut() {
            match tokio::time::timeout(Duration::from_secs(2), c.wait()).await {
                Ok(Ok(status)) => {
                    how = format!("exited ({status})");
                    said.stderr_drained(Duration::from_secs(2)).await;
                }
                _ => {
                    let _ = c.start_kill();
                    how = "closed its stdout and was stopped".into();
                }
            }
        }
        format!("MCP server `{}` {how}{}", self.name, said.tail())
    }

    /// Ask for the tool list and make the tools the model is offered.
    async fn refresh(&self, peer: &Peer<RoleClient>, timeout: Duration) -> Result<(), String> {
        let tools = tokio::time::timeout(timeout, peer.list_all_tools())
            .await
            .map_err(|_| {
                format!(
                    "MCP server `{}` did not list its tools within {} s",
                    self.name,
                    timeout.as_secs()
                )
            })?
            .map_err(|e| format!("MCP server `{}`: tools/list failed: {e}", self.name))?;
        let mut offered = Vec::new();
        let mut listed = Vec::new();
        for t in tools {
            let name = t.name.to_string();
            let full = format!("{}{SEPARATOR}{name}", self.name);
            let schema = serde_json::Value::Object((*t.input_schema).clone());
            let description = t.description.as_deref().unwrap_or("").to_string();
            let skipped = if self
                .cfg
                .tools
                .as_ref()
                .is_some_and(|allow| !allow.contains(&name))
            {
                Some(format!("not in {}", self.key("tools")))
            } else if full.len() > MAX_TOOL_NAME
                || !full
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                Some(format!(
                    "its name `{full}` is not 1 to {MAX_TOOL_NAME} letters, digits, `_` and `-`, as models require"
                ))
            } else if let Err(e) = jsonschema::options().build(&schema) {
                Some(format!("its input schema is not a valid JSON Schema: {e}"))
            } else {
                None
            };
            if let Some(why) = &skipped {
                tracing::warn!(server = %self.name, tool = %name, "MCP tool not offered: {why}");
            } else {
                offered.push(Arc::new(LoadedTool::external(
                    ToolDescriptor {
                        name: full.clone(),
                        description: if description.is_empty() {
                            format!("`{name}` of MCP server `{}`", self.name)
                        } else {
                            description.clone()
                        },
                        parameters: schema.clone(),
                        // What a server's tool does is its own say (annotations are
                        // hints, not guarantees): never run in parallel as read-only.
                        tier: Tier::SideEffecting,
                        profiles: Vec::new(),
                        source: Some(format!("mcp:{}", self.name)),
                    },
                    Limits {
                        deadline_ms: (self.cfg.call_timeout_secs + 5) * 1000,
                        max_output_bytes: self.cfg.max_result_bytes + 256,
                        ..Limits::default()
                    },
                    Arc::new(McpTool {
                        server: self.me.clone(),
                        tool: name.clone(),
                    }),
                )));
            }
            listed.push(ToolInfo {
                name,
                offered_as: skipped.is_none().then_some(full),
                description,
                skipped,
                input_schema: schema,
            });
        }
        *lock(&self.tools) = offered;
        *lock(&self.listed) = listed;
        Ok(())
    }

    async fn connect(
        &self,
        opts: &Options,
        changed: Arc<Notify>,
        said: Arc<Said>,
    ) -> Result<Conn, String> {
        let handler = Handler {
            changed,
            pending: self.pending.clone(),
        };
        match self.cfg.transport() {
            Transport::Stdio => self.connect_stdio(opts, handler, said).await,
            Transport::Http => self.connect_http(opts, handler, said).await,
        }
    }

    async fn connect_stdio(
        &self,
        opts: &Options,
        handler: Handler,
        said: Arc<Said>,
    ) -> Result<Conn, String> {
        // In the container tier the runner runs the server in its own container and
        // bridges its stdio to a socket here: connect instead of starting it.
        if let Some(dir) = &opts.bridge_dir {
            let socket = crate::launch::bridge_socket(dir, &self.name);
            let stream = tokio::net::UnixStream::connect(&socket)
                .await
                .map_err(|e| {
                    format!(
                        "MCP server `{}`: its container's bridge {} does not answer: {e}",
                        self.name,
                        socket.display()
                    )
                })?;
            let (r, w) = stream.into_split();
            return self.handshake(handler, r, w, None, said, None).await;
        }
        let launch =
            StdioCommand::new(&self.name, &self.cfg, self.access.as_ref(), &opts.workspace)?;
        let mut cmd = launch.command(&opts.launcher.program, &opts.launcher.args);
        cmd.stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| {
            format!(
                "MCP server `{}`: could not start {}: {e}",
                self.name,
                opts.launcher.program.display()
            )
        })?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(format!("MCP server `{}`: no pipes to the child", self.name));
        };
        // stderr: always read (a flood never fills the pipe), the last lines kept.
        let s = said.clone();
        tokio::spawn(async move {
            let mut lines = Lines::new(stderr, 64 * 1024);
            while let Some(line) = lines.next().await {
                if let Some(l) = line {
                    if let Some(d) = String::from_utf8_lossy(&l)
                        .trim_end()
                        .strip_prefix("mcp-exec: degraded: ")
                    {
                        lock(&s.degraded).push(d.to_string());
                        continue;
                    }
                    let mut q = lock(&s.stderr);
                    q.push_back(short(&l));
                    while q.len() > KEEP_LINES {
                        q.pop_front();
                    }
                }
            }
            s.stderr_eof
                .store(true, std::sync::atomic::Ordering::Release);
            s.stderr_done.notify_waiters();
        });
        let group = child.id().map(crate::launch::Group);
        self.handshake(handler, stdout, stdin, Some(child), said, group)
            .await
    }

    /// MCP over a byte stream (a child's stdout/stdin, or a bridge's socket): the
    /// stdout filter, then `initialize`.
    async fn handshake<R, W>(
        &self,
        handler: Handler,
        stdout: R,
        stdin: W,
        child: Option<tokio::process::Child>,
        said: Arc<Said>,
        group: Option<crate::launch::Group>,
    ) -> Result<Conn, String>
    where
        R: tokio::io::AsyncRead + Unpin + Send + 'static,
        W: tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let cfg = &self.cfg;
        // stdout: JSON-RPC lines on to rmcp; anything else kept for the error, and
        // a message over the limit dropped rather than buffered.
        let max_message = cfg.max_result_bytes.saturating_mul(4).max(4 << 20);
        let (mut to_rmcp, from_filter) = tokio::io::duplex(256 * 1024);
        let s = said.clone();
        let pending = self.pending.clone();
        tokio::spawn(async move {
            let mut lines = Lines::new(stdout, max_message);
            while let Some(line) = lines.next().await {
                match line {
                    None => *lock(&s.oversized) += 1,
                    Some(l) if l.trim_ascii_start().starts_with(b"{") => {
                        // Seen here, before the response that follows it is: the call
                        // that changed the tools waits for the new list.
                        if contains(&l, b"notifications/tools/list_changed") {
                            pending.announce();
                        }
                        if to_rmcp.write_all(&l).await.is_err() {
                            break;
                        }
                    }
                    Some(l) => {
                        let mut j = lock(&s.junk);
                        if j.len() < 3 && !l.trim_ascii().is_empty() {
                            j.push(short(&l));
                        }
                    }
                }
            }
            let _ = to_rmcp.shutdown().await;
        });
        let mut child = child;
        match handler.serve((from_filter, stdin)).await {
            Ok(service) => Ok(Conn {
                service,
                child,
                said,
                _group: group,
            }),
            Err(e) => {
                let mut status = String::new();
                if let Some(c) = child.as_mut()
                    && let Ok(Ok(st)) =
                        tokio::time::timeout(Duration::from_millis(500), c.wait()).await
                {
                    status = format!(" (it exited: {st})");
                    said.stderr_drained(Duration::from_secs(2)).await;
                }
                Err(format!(
                    "MCP server `{}` did not complete the MCP handshake: {e}{status}{}",
                    self.name,
                    said.tail()
                ))
            }
        }
    }

    async fn connect_http(
        &self,
        opts: &Options,
        handler: Handler,
        said: Arc<Said>,
    ) -> Result<Conn, String> {
        use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
        use rmcp::transport::{StreamableHttpClientTransport, UnixSocketHttpClient};
        let url = self.cfg.url.clone().unwrap_or_default();
        // One forwarder per server and process (another process on this workspace has
        // its own).
        let socket = opts
            .socket_dir
            .join(format!("{}.{}.sock", self.name, std::process::id()));
        {
            let mut started = lock(&self.forwarding);
            if !*started {
                let access = self.http_access(&opts.web, &url)?;
                let upstream: http::Uri = url
                    .parse()
                    .map_err(|e| format!("{}: {e}", self.key("url")))?;
                crate::forward::start(&socket, upstream, Arc::new(access)).map_err(|e| {
                    format!(
                        "MCP server `{}`: the forwarder's socket {}: {e}",
                        self.name,
                        socket.display()
                    )
                })?;
                *started = true;
            }
        }
        let client = UnixSocketHttpClient::new(&socket.to_string_lossy(), &url);
        let transport = StreamableHttpClientTransport::with_client(
            client,
            StreamableHttpClientTransportConfig::with_uri(url.clone()),
        );
        let service = handler.serve(transport).await.map_err(|e| {
            format!(
                "MCP server `{}` at {url} did not complete the MCP handshake: {e}",
                self.name
            )
        })?;
        Ok(Conn {
            service,
            child: None,
            said,
            _group: None,
        })
    }

    /// The web access of an HTTP server: `[tools.web]`'s policy, this server's timeouts,
    /// and its headers (from the config and the host's environment) for its origin only.
    fn http_access(&self, base: &WebAccess, url: &str) -> Result<WebAccess, String> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| format!("{}: {e}", self.key("url")))?;
        let origin = oxydra_runtime::capabilities::http::Origin::of(&uri)
            .ok_or_else(|| format!("{}: `{url}` has no origin", self.key("url")))?;
        let mut access = base.clone();
        access.timeout = Duration::from_secs(self.cfg.call_timeout_secs + 10);
        access.max_response_bytes = (self.cfg.max_result_bytes as u64 * 4).max(4 << 20);
        access.max_redirects = 0;
        access.secrets.clear();
        let mut add = |name: &str, value: String, key: String| -> Result<(), String> {
            let n =
                http::HeaderName::from_bytes(name.as_bytes()).map_err(|e| format!("{key}: {e}"))?;
            let v = http::HeaderValue::from_str(&value).map_err(|e| format!("{key}: {e}"))?;
            access.secrets.push((origin.clone(), n, v));
            Ok(())
        };
        for (h, v) in &self.cfg.headers {
            add(h, v.clone(), self.key(&format!("headers.{h}")))?;
        }
        for (h, var) in &self.cfg.headers_from_env {
            let key = self.key(&format!("headers_from_env.{h}"));
            let v = std::env::var(var).map_err(|_| {
                format!(
                    "MCP server `{}`: {key} = \"{var}\", but ${var} is not set in the host's environment",
                    self.name
                )
            })?;
            add(h, v, key)?;
        }
        Ok(access)
    }

    /// One `tools/call`, from a turn's blocking thread.
    fn call(&self, tool: &str, arguments: &str, deadline: Duration) -> Result<String, CallError> {
        let failed = |message: String| {
            CallError::Tool(ToolFailure {
                kind: "failed",
                message,
            })
        };
        let args: serde_json::Map<String, serde_json::Value> = if arguments.trim().is_empty() {
            serde_json::Map::new()
        } else {
            serde_json::from_str(arguments).map_err(|e| {
                CallError::Tool(ToolFailure {
                    kind: "invalid arguments",
                    message: format!("the arguments are not a JSON object: {e}"),
                })
            })?
        };
        // A server still starting gets its startup time.
        let waited = Instant::now();
        let peer = loop {
            match &*lock(&self.state) {
                State::Ready(p) => break p.clone(),
                // While the backoff runs the call fails at once; once the restart is
                // underway it waits for it like a first start.
                State::Down { reason, retry_at } if Instant::now() < *retry_at => {
                    return Err(failed(format!(
                        "{reason}; its tools are unavailable until it is started again (automatically, with backoff)"
                    )));
                }
                State::Down { .. } | State::Starting => {}
            }
            if waited.elapsed() > Duration::from_secs(self.cfg.startup_timeout_secs) {
                return Err(failed(format!(
                    "MCP server `{}` is still starting; try again shortly",
                    self.name
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let timeout = Duration::from_secs(self.cfg.call_timeout_secs).min(deadline);
        let mut params = CallToolRequestParams::new(tool.to_string());
        params.arguments = Some(args);
        let (tx, rx) = std::sync::mpsc::channel();
        self.handle.spawn(async move {
            let r = tokio::time::timeout(timeout, peer.call_tool(params)).await;
            let _ = tx.send(r);
        });
        let outcome = rx
            .recv()
            .map_err(|_| failed(format!("MCP server `{}`: the call was lost", self.name)))?;
        let result = match outcome {
            Err(_) => {
                return Err(failed(format!(
                    "MCP server `{}` did not answer `{tool}` within {} s ({})",
                    self.name,
                    timeout.as_secs(),
                    self.key("call_timeout_secs")
                )));
            }
            Ok(Err(e)) => {
                return Err(failed(format!(
                    "MCP server `{}` failed on `{tool}`: {e}",
                    self.name
                )));
            }
            Ok(Ok(r)) => r,
        };
        // The call changed the server's tools: wait (briefly) for the new list.
        let waited = Instant::now();
        while self.pending.behind() && waited.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let value = serde_json::to_value(&result).unwrap_or_default();
        let (text, is_error) = result::text_of(&value);
        let text = result::capped(
            text,
            self.cfg.max_result_bytes,
            &self.key("max_result_bytes"),
        );
        if is_error {
            return Err(failed(text));
        }
        Ok(text)
    }
}

/// An MCP server's tool, as the host calls it.
struct McpTool {
    server: Weak<Server>,
    tool: String,
}

impl ExternalTool for McpTool {
    fn call(&self, arguments: &str, deadline: Duration) -> Result<String, CallError> {
        match self.server.upgrade() {
            Some(s) => s.call(&self.tool, arguments, deadline),
            None => Err(CallError::Tool(ToolFailure {
                kind: "failed",
                message: "the MCP client has stopped".into(),
            })),
        }
    }
}

/// Every configured server, supervised on the manager's runtime.
pub struct Manager {
    /// Dropping it (in the background: the manager may be dropped on an async thread)
    /// ends the supervisors; each child is killed as its handle drops.
    runtime: Option<tokio::runtime::Runtime>,
    servers: Vec<Arc<Server>>,
    socket_dir: PathBuf,
}

impl Manager {
    /// Start every enabled server and wait (at most each one's startup timeout, all at
    /// once) until each is ready or has failed; a failed one is retried in the
    /// background. `Err` is a configuration problem, before anything starts.
    pub fn start(cfg: &config::McpConfig, opts: Options) -> Result<Manager, config::KeyError> {
        cfg.validate()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("oxydra-mcp")
            .enable_all()
            .build()
            .map_err(|e| ("mcp".to_string(), format!("the MCP client's runtime: {e}")))?;
        let opts = Arc::new(opts);
        let mut servers = Vec::new();
        for (name, s) in cfg.servers.iter().filter(|(_, s)| s.enabled) {
            let access = match s.transport() {
                Transport::Stdio => config::access(name, s).ok(),
                Transport::Http => None,
            };
            servers.push(Server::new(
                name.clone(),
                s.clone(),
                access,
                runtime.handle().clone(),
            ));
        }
        let _ = std::fs::create_dir_all(&opts.socket_dir);
        remove_stale_sockets(&opts.socket_dir);
        let longest = servers
            .iter()
            .map(|s| Duration::from_secs(s.cfg.startup_timeout_secs))
            .max()
            .unwrap_or_default();
        for s in &servers {
            runtime.spawn(s.clone().supervise(opts.clone()));
        }
        let all = servers.clone();
        runtime.block_on(async move {
            let deadline = tokio::time::Instant::now() + longest + Duration::from_secs(1);
            for s in &all {
                s.settled(deadline).await;
            }
        });
        Ok(Manager {
            runtime: Some(runtime),
            servers,
            socket_dir: opts.socket_dir.clone(),
        })
    }

    pub fn servers(&self) -> Vec<ServerStatus> {
        self.servers.iter().map(|s| s.status()).collect()
    }

    /// The tools `server` lists (offered or not, and why not); `None`: no such server.
    pub fn listed(&self, server: &str) -> Option<Vec<ToolInfo>> {
        self.servers
            .iter()
            .find(|s| s.name == server)
            .map(|s| s.listed())
    }

    /// The names of the configured (enabled) servers.
    pub fn names(&self) -> Vec<String> {
        self.servers.iter().map(|s| s.name.clone()).collect()
    }
}

/// Forwarder sockets (`<server>.<pid>.sock`) of processes that are gone.
fn remove_stale_sockets(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let pid = name
            .strip_suffix(".sock")
            .and_then(|n| n.rsplit_once('.'))
            .and_then(|(_, p)| p.parse::<u32>().ok());
        if let Some(pid) = pid
            && !std::path::Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        for s in &self.servers {
            if *lock(&s.forwarding) {
                let _ = std::fs::remove_file(self.socket_dir.join(format!(
                    "{}.{}.sock",
                    s.name,
                    std::process::id()
                )));
            }
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl ToolSource for Manager {
    fn tools(&self) -> Vec<Arc<LoadedTool>> {
        self.servers.iter().flat_map(|s| s.tools()).collect()
    }
}
