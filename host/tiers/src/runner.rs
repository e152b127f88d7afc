//! The runner: the lifecycle manager of one user's runtime. It launches the runtime
//! (`serve`) in a tier, supervises it (starts it again with backoff when it dies), and
//! owns everything that crosses the tier's boundary:
//!
//! - the egress proxy (`ipc/egress.sock`), the runtime's only way out;
//! - the gateway: a 127.0.0.1 listener whose connections are forwarded to the runtime's
//!   unix socket (`ipc/runtime/gateway.sock`);
//! - the runtime's log (`logs/runtime.log`: its stdout and stderr and the runner's own
//!   events), which the runtime itself can neither read nor write;
//! - the control socket (`ipc/runner-control.sock`, [`crate::control`]).

use crate::confine::Report;
use crate::container::{self, ContainerLaunch};
use crate::control::{self, Answer, Request, Status};
use crate::egress::{self, Grants};
use crate::vm::{self, VmLaunch};
use std::ffi::OsString;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UnixListener, UnixStream};
use tokio::sync::{broadcast, mpsc, oneshot};

/// The runtime's socket directory: the only part of `ipc/` it may write.
pub fn runtime_dir(ws: &Path) -> PathBuf {
    ws.join("ipc").join("runtime")
}

/// The runtime's gateway socket.
pub fn gateway_socket(ws: &Path) -> PathBuf {
    runtime_dir(ws).join("gateway.sock")
}

/// The egress proxy's socket.
pub fn egress_socket(ws: &Path) -> PathBuf {
    ws.join("ipc").join("egress.sock")
}

/// The shell sidecar's socket directory (`ipc/shell`): bound into the sidecar (as
/// `/ipc`) and into the runtime's container (at the same path).
pub fn shell_dir(ws: &Path) -> PathBuf {
    ws.join("ipc").join("shell")
}

/// The shell sidecar's socket, as the runtime (and the runner) reach it.
pub fn shell_socket(ws: &Path) -> PathBuf {
    shell_dir(ws).join(SHELL_SOCKET)
}

/// The socket's name in [`shell_dir`].
pub const SHELL_SOCKET: &str = "shell.sock";

/// Where the runtime records how it confined itself (JSON [`Report`]).
pub fn confinement_path(ws: &Path) -> PathBuf {
    runtime_dir(ws).join("confinement.json")
}

/// The runtime's log.
pub fn log_path(ws: &Path) -> PathBuf {
    ws.join("logs").join("runtime.log")
}

/// 32 random bytes, hex.
pub fn random_secret() -> std::io::Result<String> {
    use std::io::Read;
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Write `text` to `path`, readable by its owner only.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())
}

/// Longest line kept from the runtime's output (longer lines are cut).
const MAX_LINE: usize = 16 * 1024;

/// The line the runtime prints on stdout when its gateway is ready.
pub const READY_PREFIX: &str = "gateway ";

/// A log file over this size is moved to `runtime.log.1` (one old file is kept).
const LOG_ROTATE_BYTES: u64 = 10 * 1024 * 1024;
/// How long a runtime has to stop on SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(15);
/// A runtime that ran this long before it died is restarted at once (backoff resets).
const HEALTHY_RUN: Duration = Duration::from_secs(60);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// How the runtime process is started (the process tier: this binary's `serve`).
#[derive(Debug, Clone)]
pub struct Launch {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// The whole environment the runtime gets (nothing else is inherited).
    pub env: Vec<(OsString, OsString)>,
    pub cwd: PathBuf,
}

/// How the runtime is started, by tier.
#[derive(Debug, Clone)]
pub enum Start {
    /// A host process that confines itself (`serve --confine`).
    Process(Launch),
    /// A Docker container.
    Container(ContainerLaunch),
    /// A virtual machine (the `micro_vm` tier).
    Vm(VmLaunch),
}

/// The runtime's VM's own directory (`ipc/vm/runtime`): its vsock sockets and plan.
pub fn vm_dir(ws: &Path) -> PathBuf {
    ws.join("ipc").join("vm").join("runtime")
}

/// Where the runner's gateway listener sends each connection.
#[derive(Debug, Clone)]
enum Target {
    /// The runtime's gateway socket.
    Unix(PathBuf),
    /// The guest's gateway port, through the VM's hybrid vsock socket.
    Vsock(PathBuf, u32),
}

impl Target {
    fn of(spec: &Spec) -> Target {
        match &spec.launch {
            Start::Vm(l) => Target::Vsock(l.vsock_socket(), crate::vm_guest::GATEWAY_PORT),
            _ => Target::Unix(gateway_socket(&spec.ws)),
        }
    }

    async fn connect(&self) -> std::io::Result<UnixStream> {
        match self {
            Target::Unix(p) => UnixStream::connect(p).await,
            Target::Vsock(uds, port) => vm::hybrid_connect(uds, *port).await,
        }
    }

    fn describe(&self) -> String {
        match self {
            Target::Unix(p) => format!("the runtime's gateway socket {}", p.display()),
            Target::Vsock(_, port) => format!("the guest's gateway (vsock port {port})"),
        }
    }
}

/// One user's runner.
#[derive(Debug, Clone)]
pub struct Spec {
    pub user: String,
    /// Absolute.
    pub ws: PathBuf,
    pub tier: String,
    /// The gateway's listener (127.0.0.1).
    pub listen: SocketAddr,
    pub grants: Grants,
    pub launch: Start,
    /// `(uid, gid)` the runtime runs as when it is not the runner's user (a container's
    /// user when the runner is root): the runner gives it the workspace's directories
    /// the runtime writes (and reads), and the egress socket.
    pub runtime_owner: Option<(u32, u32)>,
    /// The shell sidecar (the container tier, unless `shell_enabled = false`).
    pub shell: Option<Sidecar>,
    /// A container per stdio MCP server (the container tier), by server name: each
    /// answers on `ipc/mcp/<name>/bridge.sock` ([`mcp_socket`]).
    pub mcp: Vec<(String, ContainerLaunch)>,
}

/// The stdio MCP servers' bridge sockets' directory (`ipc/mcp`): bound into each
/// server's container and into the runtime's.
pub fn mcp_dir(ws: &Path) -> PathBuf {
    ws.join("ipc").join("mcp")
}

/// The directory of MCP server `name`'s socket: the only part of `ipc/mcp` its
/// container mounts.
pub fn mcp_server_dir(ws: &Path, name: &str) -> PathBuf {
    mcp_dir(ws).join(name)
}

/// Where the container of MCP server `name` answers.
pub fn mcp_socket(ws: &Path, name: &str) -> PathBuf {
    mcp_server_dir(ws, name).join("bridge.sock")
}

/// Which sidecar a supervisor runs: its words in the log, its socket, its line in
/// `status`, and the config key of its image.
#[derive(Debug, Clone)]
enum Role {
    Shell,
    Mcp(String),
}

impl Role {
    fn label(&self) -> String {
        match self {
            Role::Shell => "shell sidecar".into(),
            Role::Mcp(n) => format!("MCP server `{n}`'s container"),
        }
    }
    fn socket(&self, ws: &Path) -> PathBuf {
        match self {
            Role::Shell => shell_socket(ws),
            Role::Mcp(n) => mcp_socket(ws, n),
        }
    }
    fn image_key(&self) -> &'static str {
        match self {
            Role::Shell => "guest_images.shell_vm",
            Role::Mcp(_) => "guest_images.oxydra_vm",
        }
    }
    fn set(&self, state: &Mutex<State>, s: Option<String>) {
        let mut st = lock(state);
        match (self, s) {
            (Role::Shell, s) => st.status.shell = s,
            (Role::Mcp(n), Some(s)) => {
                st.status.mcp.insert(n.clone(), s);
            }
            (Role::Mcp(n), None) => {
                st.status.mcp.remove(n);
            }
        }
    }
}

/// The shell sidecar: a second container, started before the runtime, that answers
/// `shell_exec` on [`shell_socket`].
#[derive(Debug, Clone)]
pub struct Sidecar {
    pub launch: ContainerLaunch,
    /// `shell_enabled = true` in the config: the runner does not start without it.
    /// Otherwise a sidecar that cannot start leaves the runtime without `shell_exec`,
    /// and `status` says why.
    pub required: bool,
}

/// Why the runner stopped, or could not start.
#[derive(Debug)]
pub struct Error(pub String);

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The runtime's log: appended by the runner, followed by `logs --follow`.
struct Log {
    path: PathBuf,
    file: Mutex<std::fs::File>,
    lines: broadcast::Sender<String>,
}

impl Log {
    fn open(path: &Path) -> std::io::Result<Log> {
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d)?;
        }
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        let (lines, _) = broadcast::channel(1024);
        Ok(Log {
            path: path.to_path_buf(),
            file: Mutex::new(file),
            lines,
        })
    }

    fn line(&self, text: &str) {
        let mut f = self
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if f.metadata().is_ok_and(|m| m.len() > LOG_ROTATE_BYTES) {
            let old = self.path.with_extension("log.1");
            let _ = std::fs::rename(&self.path, &old);
            if let Ok(new) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
            {
                *f = new;
            }
        }
        let _ = writeln!(f, "{text}");
        let _ = self.lines.send(text.to_string());
    }

    fn runner(&self, text: &str) {
        tracing::info!("{text}");
        self.line(&format!("runner: {text}"));
    }

    /// The last `n` lines of the file (all with `None`).
    fn tail(&self, n: Option<usize>) -> Vec<String> {
        let text = std::fs::read_to_string(&self.path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        match n {
            Some(n) if n < lines.len() => lines[lines.len() - n..].to_vec(),
            _ => lines,
        }
    }
}

/// What the control socket reads.
#[derive(Default)]
struct State {
    status: Status,
    started: Option<Instant>,
}

enum Command {
    /// Stop; `done` when the runtime is gone, then wait (briefly) for `answered`: the
    /// runner exits only after the client heard that it stopped.
    Stop {
        done: oneshot::Sender<()>,
        answered: oneshot::Receiver<()>,
    },
    Restart(oneshot::Sender<Result<(), String>>),
}

/// Prepare the workspace and run the runner in the foreground until SIGINT/SIGTERM or
/// `stop`. `on_ready` is called once, with the gateway's URL, when the first runtime is
/// ready.
pub fn run(spec: Spec, on_ready: impl FnOnce(&str) + Send + 'static) -> Result<(), Error> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| Error(format!("could not start the runner's event loop: {e}")))?;
    rt.block_on(main(spec, on_ready))
}

/// The workspace's directories, made when missing: `shared`, `tmp`, `vault` for the
/// agent, `ipc` (and `ipc/runtime`) for the sockets, `logs`, `.oxydra` for the store.
pub fn prepare(ws: &Path) -> std::io::Result<()> {
    for d in [
        "shared",
        "tmp",
        "vault",
        "ipc/runtime",
        "ipc/shell",
        "ipc/mcp",
        "ipc/vm",
        "logs",
        ".oxydra",
    ] {
        std::fs::create_dir_all(ws.join(d))?;
    }
    Ok(())
}

async fn main(spec: Spec, on_ready: impl FnOnce(&str) + Send + 'static) -> Result<(), Error> {
    let ws = spec.ws.clone();
    let io = |what: &str, e: std::io::Error| Error(format!("{what}: {e}"));
    prepare(&ws).map_err(|e| io(&format!("preparing {}", ws.display()), e))?;
    // One runner per workspace: a live control socket means another runner owns it.
    let control_path = control::socket(&ws);
    if UnixStream::connect(&control_path).await.is_ok() {
        return Err(Error(format!(
            "a runner is already running for user {} ({}); stop it first with `oxydra-host --user {} stop`",
            spec.user,
            control_path.display(),
            spec.user
        )));
    }
    let _ = std::fs::remove_file(&control_path);
    let secret = random_secret().map_err(|e| io("a random secret", e))?;
    write_private(&control::secret_path(&ws), &secret)
        .map_err(|e| io("the control socket's secret", e))?;
    let control = UnixListener::bind(&control_path)
        .map_err(|e| io(&format!("control socket {}", control_path.display()), e))?;
    let log = Arc::new(Log::open(&log_path(&ws)).map_err(|e| io("the runtime log", e))?);
    let proxy = egress::start(
        &egress_socket(&ws),
        spec.grants.clone(),
        &tokio::runtime::Handle::current(),
    )
    .map_err(|e| io("the egress proxy", e))?;
    if let Some((uid, gid)) = spec.runtime_owner {
        give(&ws, uid, gid).map_err(|e| {
            io(
                &format!("giving the workspace to the runtime's user {uid}:{gid}"),
                e,
            )
        })?;
    }
    let listener = TcpListener::bind(spec.listen).await.map_err(|e| {
        Error(format!(
            "could not listen on {}: {e}; pass another --listen address",
            spec.listen
        ))
    })?;
    let addr = listener
        .local_addr()
        .map_err(|e| io("the gateway listener", e))?;
    let url = format!("ws://{addr}/ws");
    let state = Arc::new(Mutex::new(State {
        status: Status {
            user: spec.user.clone(),
            tier: spec.tier.clone(),
            state: "starting".into(),
            runner_pid: std::process::id(),
            gateway: url.clone(),
            ..Status::default()
        },
        started: None,
    }));
    log.runner(&format!(
        "runner for user {} (pid {}), {} tier, gateway {url}",
        spec.user,
        std::process::id(),
        spec.tier
    ));
    let target = Target::of(&spec);
    tokio::spawn(forward(listener, target.clone()));
    // The shell sidecar first: the runtime registers `shell_exec` only when its socket
    // answers at start.
    let mut shell = None;
    if let Some(sc) = spec.shell.clone() {
        let (up_tx, up_rx) = oneshot::channel();
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(sidecar(
            Role::Shell,
            sc.launch,
            ws.clone(),
            log.clone(),
            state.clone(),
            up_tx,
            stop_rx,
        ));
        match up_rx.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) if sc.required => {
                let _ = stop_tx.send(());
                let _ = tokio::time::timeout(STOP_GRACE + Duration::from_secs(5), task).await;
                return Err(Error(format!(
                    "the shell sidecar did not start ({e}); build its image with ./scripts/build-guest-images.sh, or set [behavior] shell_enabled = false"
                )));
            }
            Ok(Err(e)) => log.runner(&format!(
                "the runtime starts without shell_exec: the shell sidecar did not start ({e})"
            )),
            Err(_) => {}
        }
        shell = Some((stop_tx, task));
    }
    // Each stdio MCP server's container before the runtime, which connects at start.
    let mut mcp = Vec::new();
    for (name, launch) in spec.mcp.clone() {
        let (up_tx, up_rx) = oneshot::channel();
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(sidecar(
            Role::Mcp(name.clone()),
            launch,
            ws.clone(),
            log.clone(),
            state.clone(),
            up_tx,
            stop_rx,
        ));
        if let Ok(Err(e)) = up_rx.await {
            log.runner(&format!(
                "MCP server `{name}` is down at start: its container did not start ({e})"
            ));
        }
        mcp.push((stop_tx, task));
    }
    let (cmd_tx, cmd_rx) = mpsc::channel::<Command>(8);
    let counters = proxy.counters.clone();
    let ctl = tokio::spawn(serve_control(
        control,
        Arc::from(secret.as_str()),
        state.clone(),
        log.clone(),
        cmd_tx,
        counters,
        Arc::new(Place {
            ws: ws.clone(),
            gateway: target,
        }),
    ));
    let result = supervise(&spec, &state, &log, cmd_rx, url, on_ready).await;
    for (stop, task) in shell.into_iter().chain(mcp) {
        let _ = stop.send(());
        let _ = tokio::time::timeout(STOP_GRACE + Duration::from_secs(5), task).await;
    }
    ctl.abort();
    let _ = std::fs::remove_file(&control_path);
    let _ = std::fs::remove_file(control::secret_path(&ws));
    let _ = std::fs::remove_file(gateway_socket(&ws));
    drop(proxy);
    match &result {
        Ok(()) => log.runner("stopped"),
        Err(e) => log.runner(&format!("stopped: {e}")),
    }
    result
}

/// The directories the runtime (and the shell sidecar) writes or reads (`shared`, `tmp`,
/// `vault`, `.oxydra`, `ipc/runtime`, `ipc/shell`), with everything in them, and the egress socket, owned by `uid:gid`.
/// The control socket, its secret and the log stay the runner's.
fn give(ws: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    fn walk(p: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
        std::os::unix::fs::lchown(p, Some(uid), Some(gid))?;
        if std::fs::symlink_metadata(p)?.is_dir() {
            for e in std::fs::read_dir(p)? {
                walk(&e?.path(), uid, gid)?;
            }
        }
        Ok(())
    }
    for d in [
        "shared",
        "tmp",
        "vault",
        ".oxydra",
        "ipc/runtime",
        "ipc/shell",
        "ipc/mcp",
    ] {
        walk(&ws.join(d), uid, gid)?;
    }
    std::os::unix::fs::lchown(egress_socket(ws), Some(uid), Some(gid))
}

/// Each connection to the runner's listener, copied to and from the runtime's socket.
async fn forward(listener: TcpListener, target: Target) {
    loop {
        let Ok((mut tcp, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let target = target.clone();
        tokio::spawn(async move {
            match target.connect().await {
                Ok(mut unix) => {
                    let _ = tokio::io::copy_bidirectional(&mut tcp, &mut unix).await;
                }
                Err(e) => {
                    // The runtime is (re)starting: the client reconnects.
                    tracing::debug!("gateway forward: {}: {e}", target.describe());
                    let _ = tcp
                        .write_all(
                            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 36\r\nconnection: close\r\n\r\nthe runtime is starting; retry soon\n",
                        )
                        .await;
                }
            }
        });
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// SIGINT or SIGTERM to this process (the runner's, and `serve`'s, way to stop).
pub async fn signalled() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        _ => {
            tracing::warn!("no signal handlers: stop this process by killing it");
            std::future::pending::<()>().await;
        }
    }
}

/// Copy one of the runtime's streams into the log; on stdout, report the ready line.
/// Bytes that are not UTF-8 are replaced, over-long lines cut: the pipe is read to its
/// end whatever the runtime writes.
async fn pump(
    stream: impl AsyncRead + Unpin,
    log: Arc<Log>,
    ready: Option<oneshot::Sender<()>>,
    prefix: &'static str,
) {
    let mut reader = BufReader::new(stream);
    let mut ready = ready;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match (&mut reader)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut buf)
            .await
        {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let cut = !buf.ends_with(b"\n");
        let text = String::from_utf8_lossy(&buf);
        let line = text.trim_end_matches(['\n', '\r']);
        if line.starts_with(READY_PREFIX)
            && let Some(tx) = ready.take()
        {
            let _ = tx.send(());
        }
        log.line(&format!("{prefix}{line}"));
        if cut {
            // The rest of an over-long line is dropped, up to its end.
            let mut rest = Vec::new();
            loop {
                rest.clear();
                match (&mut reader)
                    .take(MAX_LINE as u64)
                    .read_until(b'\n', &mut rest)
                    .await
                {
                    Ok(0) | Err(_) => return,
                    Ok(_) if rest.ends_with(b"\n") => break,
                    Ok(_) => {}
                }
            }
            log.line(&format!(
                "{prefix}runner: (the line above was longer than 16 KiB and was cut)"
            ));
        }
    }
}

fn describe_exit(status: std::io::Result<std::process::ExitStatus>) -> (String, Option<i32>) {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(c), _) => (format!("exited with status {c}"), Some(c)),
            (None, Some(sig)) => (format!("killed by signal {sig}"), None),
            _ => (s.to_string(), None),
        },
        Err(e) => (format!("could not be waited for: {e}"), None),
    }
}

/// SIGTERM, then SIGKILL after the grace period.
async fn terminate(child: &mut tokio::process::Child) -> String {
    if let Some(pid) = child
        .id()
        .and_then(|p| rustix::process::Pid::from_raw(p as i32))
    {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    match tokio::time::timeout(STOP_GRACE, child.wait()).await {
        Ok(s) => describe_exit(s).0,
        Err(_) => {
            if let Some(pid) = child
                .id()
                .and_then(|p| rustix::process::Pid::from_raw(p as i32))
            {
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            }
            let _ = child.kill().await;
            format!(
                "killed: it did not stop within {} s of SIGTERM",
                STOP_GRACE.as_secs()
            )
        }
    }
}

/// The runtime, as it runs in its tier.
enum Child {
    Process(tokio::process::Child),
    Container(container::Running),
    Vm(Box<vm::Running>),
}

impl Child {
    /// Its pid on this host (a container's init, as the engine reports it).
    async fn pid(&self) -> Option<u32> {
        match self {
            Child::Process(c) => c.id(),
            Child::Container(c) => c.pid().await,
            Child::Vm(v) => v.pid(),
        }
    }

    fn container(&self) -> Option<String> {
        match self {
            Child::Process(_) => None,
            Child::Container(c) => Some(c.describe()),
            Child::Vm(v) => Some(v.describe()),
        }
    }

    /// Until it ends by itself: how, and its exit code.
    async fn wait(&mut self) -> (String, Option<i32>) {
        match self {
            Child::Process(c) => describe_exit(c.wait().await),
            Child::Container(c) => c.wait().await,
            Child::Vm(v) => v.wait().await,
        }
    }

    /// Stop it: SIGTERM, then SIGKILL after the grace period.
    async fn terminate(&mut self) -> String {
        match self {
            Child::Process(c) => terminate(c).await,
            Child::Container(c) => c.terminate(STOP_GRACE).await,
            Child::Vm(v) => v.terminate(STOP_GRACE).await,
        }
    }

    /// What is left of it once it ended (a container is removed).
    async fn remove(&mut self) {
        match self {
            Child::Container(c) => c.remove().await,
            Child::Vm(v) => v.remove().await,
            Child::Process(_) => {}
        }
    }
}

/// Start the runtime in its tier; its stdout and stderr are pumped into the log (the
/// ready line on stdout answers `ready`).
async fn launch(
    spec: &Spec,
    log: &Arc<Log>,
    ready: oneshot::Sender<()>,
    pumps: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Result<Child, Error> {
    match &spec.launch {
        Start::Process(l) => {
            let mut cmd = tokio::process::Command::new(&l.program);
            cmd.args(&l.args)
                .env_clear()
                .envs(l.env.iter().map(|(k, v)| (k, v)))
                .current_dir(&l.cwd)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                // Its own process group: a Ctrl-C at the runner's terminal reaches the
                // runner, which stops the runtime in order.
                .process_group(0)
                .kill_on_drop(true);
            let mut child = cmd.spawn().map_err(|e| {
                Error(format!(
                    "could not start the runtime ({}): {e}",
                    l.program.display()
                ))
            })?;
            if let Some(out) = child.stdout.take() {
                pumps.push(tokio::spawn(pump(out, log.clone(), Some(ready), "")));
            }
            if let Some(err) = child.stderr.take() {
                pumps.push(tokio::spawn(pump(err, log.clone(), None, "")));
            }
            log.runner(&format!(
                "runtime started (pid {})",
                child.id().map_or("?".into(), |p| p.to_string())
            ));
            Ok(Child::Process(child))
        }
        Start::Container(l) => {
            let docker = container::connect().await.map_err(Error)?;
            container::check(&docker, l, "guest_images.oxydra_vm")
                .await
                .map_err(Error)?;
            let (out_w, out_r) = tokio::io::duplex(64 * 1024);
            let (err_w, err_r) = tokio::io::duplex(64 * 1024);
            pumps.push(tokio::spawn(pump(out_r, log.clone(), Some(ready), "")));
            pumps.push(tokio::spawn(pump(err_r, log.clone(), None, "")));
            let running = container::start(&docker, l, out_w, err_w)
                .await
                .map_err(Error)?;
            log.runner(&format!(
                "runtime started in container {} from image {}",
                running.describe(),
                l.image
            ));
            Ok(Child::Container(running))
        }
        Start::Vm(l) => {
            let (out_w, out_r) = tokio::io::duplex(64 * 1024);
            let (err_w, err_r) = tokio::io::duplex(64 * 1024);
            pumps.push(tokio::spawn(pump(out_r, log.clone(), Some(ready), "")));
            pumps.push(tokio::spawn(pump(err_r, log.clone(), None, "vmm: ")));
            let running = vm::start(l, out_w, err_w).await.map_err(Error)?;
            log.runner(&format!("runtime started in a VM: {}", running.describe()));
            Ok(Child::Vm(Box::new(running)))
        }
    }
}

/// How long a starting sidecar has for its socket to answer.
const SHELL_READY: Duration = Duration::from_secs(15);

/// Run the shell sidecar until `stop`: start its container, wait for its socket, and
/// start it again with backoff when it dies. `up` is answered once: when the socket
/// first answers, or with why the first start failed. An image that is not built is not
/// retried (building it is the fix); `status` shows the sidecar's state throughout.
async fn sidecar(
    role: Role,
    l: ContainerLaunch,
    ws: PathBuf,
    log: Arc<Log>,
    state: Arc<Mutex<State>>,
    up: oneshot::Sender<Result<(), String>>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut up = Some(up);
    let mut failures: u32 = 0;
    let set = |s: String| role.set(&state, Some(s));
    let socket = role.socket(&ws);
    let label = role.label();
    loop {
        let launched = Instant::now();
        let _ = std::fs::remove_file(&socket);
        let docker = match container::connect().await {
            Ok(d) => d,
            Err(e) => {
                set(format!("off: {e}"));
                log.runner(&format!("{label}: {e}"));
                if let Some(tx) = up.take() {
                    let _ = tx.send(Err(e));
                }
                return;
            }
        };
        let checked = container::check(&docker, &l, role.image_key()).await;
        if let Err(e) = checked {
            set(format!("off: {e}"));
            log.runner(&format!("{label}: {e}"));
            if let Some(tx) = up.take() {
                let _ = tx.send(Err(e));
            }
            return;
        }
        let (out_w, out_r) = tokio::io::duplex(64 * 1024);
        let (err_w, err_r) = tokio::io::duplex(64 * 1024);
        let prefix: &'static str = match &role {
            Role::Shell => "shell: ",
            Role::Mcp(_) => "mcp: ",
        };
        let pumps = [
            tokio::spawn(pump(out_r, log.clone(), None, prefix)),
            tokio::spawn(pump(err_r, log.clone(), None, prefix)),
        ];
        let outcome: Result<container::Running, String> =
            container::start(&docker, &l, out_w, err_w).await;
        let what = match outcome {
            Err(e) => e,
            Ok(running) => {
                log.runner(&format!(
                    "{label} started in container {} from image {}",
                    running.describe(),
                    l.image
                ));
                set(format!("starting (container {})", running.describe()));
                let answers = async {
                    let deadline = Instant::now() + SHELL_READY;
                    while Instant::now() < deadline {
                        if UnixStream::connect(&socket).await.is_ok() {
                            return true;
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    false
                };
                let what = tokio::select! {
                    answered = answers => {
                        if answered {
                            let ms = launched.elapsed().as_millis();
                            set(format!("up (container {}, ready in {ms} ms)", running.describe()));
                            log.runner(&format!("{label} ready in {ms} ms"));
                            if let Some(tx) = up.take() {
                                let _ = tx.send(Ok(()));
                            }
                            tokio::select! {
                                (what, _) = running.wait() => what,
                                _ = &mut stop => return stop_sidecar(&role, &running, &log, &state).await,
                            }
                        } else {
                            let _ = running.terminate(Duration::from_secs(2)).await;
                            format!("did not answer on {} within {} s", socket.display(), SHELL_READY.as_secs())
                        }
                    }
                    (what, _) = running.wait() => what,
                    _ = &mut stop => return stop_sidecar(&role, &running, &log, &state).await,
                };
                running.remove().await;
                what
            }
        };
        for p in pumps {
            let _ = tokio::time::timeout(Duration::from_secs(2), p).await;
        }
        log.runner(&format!("{label} {what}"));
        if let Some(tx) = up.take() {
            let _ = tx.send(Err(what.clone()));
        }
        failures = if launched.elapsed() >= HEALTHY_RUN {
            0
        } else {
            failures + 1
        };
        let delay = backoff(failures);
        set(format!(
            "restarting in {} ms (it {what})",
            delay.as_millis()
        ));
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = &mut stop => {
                role.set(&state, None);
                return;
            }
        }
    }
}

/// `stop`: the sidecar's container stopped (SIGKILL after the grace) and removed.
async fn stop_sidecar(role: &Role, running: &container::Running, log: &Log, state: &Mutex<State>) {
    let what = running.terminate(STOP_GRACE).await;
    running.remove().await;
    log.runner(&format!("{} {what}", role.label()));
    role.set(state, None);
}

/// Exit codes of a runtime that cannot start as configured: starting it again will not
/// help (bad configuration, a refused component).
fn is_config_failure(code: Option<i32>) -> bool {
    matches!(code, Some(2 | 3))
}

async fn supervise(
    spec: &Spec,
    state: &Arc<Mutex<State>>,
    log: &Arc<Log>,
    mut cmds: mpsc::Receiver<Command>,
    url: String,
    on_ready: impl FnOnce(&str) + Send + 'static,
) -> Result<(), Error> {
    let mut on_ready = Some(on_ready);
    let mut failures: u32 = 0;
    // A `restart` is answered when the new runtime is ready (or ends before it is).
    let mut pending_restart: Option<oneshot::Sender<Result<(), String>>> = None;
    let signal = signalled();
    tokio::pin!(signal);
    loop {
        let launched = Instant::now();
        let _ = std::fs::remove_file(gateway_socket(&spec.ws));
        let _ = std::fs::remove_file(confinement_path(&spec.ws));
        let (ready_tx, ready_rx) = oneshot::channel();
        let mut pumps = Vec::new();
        // A runtime that cannot be started (no binary, no engine, no image): starting
        // it again will not help.
        let mut child = launch(spec, log, ready_tx, &mut pumps).await?;
        let pid = child.pid().await;
        {
            let mut s = lock(state);
            s.status.runtime_pid = pid;
            s.status.container = child.container();
            s.status.state = "starting".into();
            s.status.ready_ms = None;
            s.status.applied.clear();
            s.status.degraded.clear();
            s.status.verified.clear();
            s.started = Some(launched);
        }
        // The runtime's last words reach the log before the runner says it ended.
        let drain = |pumps: Vec<tokio::task::JoinHandle<()>>| async move {
            for p in pumps {
                let _ = tokio::time::timeout(Duration::from_secs(2), p).await;
            }
        };
        let mut ready_rx = Some(ready_rx);
        let mut was_ready = false;
        // Wait for the runtime to end (or be ended).
        let outcome: (String, Option<i32>, bool) = loop {
            tokio::select! {
                r = async {
                    match ready_rx.as_mut() {
                        Some(rx) => rx.await,
                        None => std::future::pending().await,
                    }
                }, if ready_rx.is_some() => {
                    ready_rx = None;
                    if r.is_err() { continue; }
                    was_ready = true;
                    let ms = launched.elapsed().as_millis() as u64;
                    // What the runtime checked from inside; for a container, also
                    // what the engine says it is held to.
                    let mut report = std::fs::read_to_string(confinement_path(&spec.ws))
                        .ok()
                        .and_then(|t| serde_json::from_str::<Report>(&t).ok());
                    if let (Child::Container(c), Start::Container(l)) = (&child, &spec.launch) {
                        let (applied, degraded) = c.protections(l).await;
                        let r = report.get_or_insert_with(Report::default);
                        r.applied.extend(applied);
                        r.degraded.extend(degraded);
                    }
                    if let (Child::Vm(v), Start::Vm(l)) = (&child, &spec.launch) {
                        v.forget_plan();
                        let r = report.get_or_insert_with(Report::default);
                        r.applied.extend(vm::protections(l, &v.describe()));
                        r.degraded.extend(v.degraded.clone());
                    }
                    {
                        let mut s = lock(state);
                        s.status.state = "ready".into();
                        s.status.ready_ms = Some(ms);
                        if let Some(r) = report {
                            s.status.applied = r.applied;
                            s.status.degraded = r.degraded;
                            s.status.verified = r.verified;
                        }
                        if let Some(off) = s.status.shell.as_deref().and_then(|t| t.strip_prefix("off: ")) {
                            let reason = format!("no shell_exec: the shell sidecar is off ({off})");
                            s.status.degraded.push(reason);
                        }
                    }
                    log.runner(&format!("runtime ready in {ms} ms"));
                    if let Some(f) = on_ready.take() { f(&url); }
                    if let Some(tx) = pending_restart.take() { let _ = tx.send(Ok(())); }
                }
                (what, code) = child.wait() => {
                    child.remove().await;
                    break (what, code, false);
                }
                c = cmds.recv() => match c {
                    Some(Command::Stop { done, answered }) => {
                        lock(state).status.state = "stopping".into();
                        log.runner("stop requested");
                        let what = child.terminate().await;
                        drain(std::mem::take(&mut pumps)).await;
                        log.runner(&format!("runtime {what}"));
                        {
                            let mut s = lock(state);
                            s.status.runtime_pid = None;
                            s.status.container = None;
                        }
                        let _ = done.send(());
                        let _ = tokio::time::timeout(Duration::from_secs(2), answered).await;
                        return Ok(());
                    }
                    Some(Command::Restart(done)) => {
                        log.runner("restart requested");
                        lock(state).status.state = "restarting".into();
                        let what = child.terminate().await;
                        if let Some(old) = pending_restart.replace(done) {
                            let _ = old.send(Err("another restart was requested".into()));
                        }
                        break (what, None, true);
                    }
                    None => {}
                },
                () = &mut signal => {
                    lock(state).status.state = "stopping".into();
                    log.runner("signal received: stopping");
                    let what = child.terminate().await;
                    drain(std::mem::take(&mut pumps)).await;
                    log.runner(&format!("runtime {what}"));
                    return Ok(());
                }
            }
        };
        drain(std::mem::take(&mut pumps)).await;
        let (what, code, requested) = outcome;
        if !requested && let Some(tx) = pending_restart.take() {
            let _ = tx.send(Err(format!(
                "the new runtime {what} before it was ready; see `oxydra-host logs`"
            )));
        }
        log.runner(&format!("runtime {what}"));
        {
            let mut s = lock(state);
            s.status.last_exit = Some(what.clone());
            s.status.runtime_pid = None;
            s.status.container = None;
            s.status.restarts += 1;
        }
        if requested {
            // Start again at once.
            failures = 0;
            continue;
        }
        if !was_ready && is_config_failure(code) {
            let tail = log.tail(Some(20)).join("\n");
            return Err(Error(format!(
                "the runtime cannot start as configured ({what}); it said:\n{tail}"
            )));
        }
        // Died on its own: start again, sooner when it had run well.
        let ran = launched.elapsed();
        failures = if ran >= HEALTHY_RUN { 0 } else { failures + 1 };
        let delay = backoff(failures);
        if let Some(tx) = pending_restart.take() {
            let _ = tx.send(Err(format!("the runtime {what}; see `oxydra-host logs`")));
        }
        lock(state).status.state = "restarting".into();
        log.runner(&format!(
            "starting the runtime again in {} ms",
            delay.as_millis()
        ));
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = &mut signal => { log.runner("signal received: stopping"); return Ok(()); }
            c = cmds.recv() => match c {
                Some(Command::Stop { done, answered }) => {
                    let _ = done.send(());
                    let _ = tokio::time::timeout(Duration::from_secs(2), answered).await;
                    return Ok(());
                }
                // Start now instead of after the backoff; answered when ready.
                Some(Command::Restart(done)) => pending_restart = Some(done),
                None => {}
            }
        }
    }
}

/// 0 → at once; then 1 s, 2 s, 4 s … up to 30 s.
fn backoff(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    Duration::from_secs(1u64 << (failures - 1).min(5)).min(BACKOFF_MAX)
}

/// The workspace, and where its runtime's gateway answers.
struct Place {
    ws: PathBuf,
    gateway: Target,
}

/// Answer control connections.
async fn serve_control(
    listener: UnixListener,
    secret: Arc<str>,
    state: Arc<Mutex<State>>,
    log: Arc<Log>,
    cmds: mpsc::Sender<Command>,
    counters: Arc<egress::Counters>,
    at: Arc<Place>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let (secret, state, log, cmds, counters, at) = (
            secret.clone(),
            state.clone(),
            log.clone(),
            cmds.clone(),
            counters.clone(),
            at.clone(),
        );
        tokio::spawn(async move {
            control_connection(stream, &secret, &state, &log, &cmds, &counters, &at).await;
        });
    }
}

async fn send(stream: &mut UnixStream, answer: &Answer) -> std::io::Result<()> {
    let mut line = serde_json::to_string(answer).unwrap_or_else(|_| "{\"ok\":false}".into());
    line.push('\n');
    stream.write_all(line.as_bytes()).await
}

/// Whether the runtime's gateway socket accepts a connection.
async fn health(target: &Target) -> String {
    match tokio::time::timeout(Duration::from_secs(2), target.connect()).await {
        // The guest's bridge accepts before it reaches the runtime's socket, and closes
        // at once when nothing listens there: a connection that stays open is a runtime.
        Ok(Ok(mut s)) if matches!(target, Target::Vsock(..)) => {
            let mut b = [0u8; 1];
            match tokio::time::timeout(Duration::from_millis(300), s.read(&mut b)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    "the guest answers, but the runtime's gateway inside it does not".into()
                }
                _ => "ok".into(),
            }
        }
        Ok(Ok(_)) => "ok".into(),
        Ok(Err(e)) => format!("{} does not answer: {e}", target.describe()),
        Err(_) => format!("{} did not answer within 2 s", target.describe()),
    }
}

async fn control_connection(
    mut stream: UnixStream,
    secret: &str,
    state: &Mutex<State>,
    log: &Log,
    cmds: &mpsc::Sender<Command>,
    counters: &egress::Counters,
    at: &Place,
) {
    let (ws, target) = (at.ws.as_path(), &at.gateway);
    let mut line = String::new();
    {
        let mut reader = BufReader::new(&mut stream);
        let read = tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut line)).await;
        if !matches!(read, Ok(Ok(n)) if n > 0) {
            return;
        }
    }
    let req: Request = match serde_json::from_str::<control::Envelope>(line.trim()) {
        Ok(e)
            if e.secret.len() == secret.len()
                && e.secret
                    .bytes()
                    .zip(secret.bytes())
                    .fold(0u8, |a, (x, y)| a | (x ^ y))
                    == 0 =>
        {
            e.request
        }
        Ok(_) => {
            let _ = send(
                &mut stream,
                &Answer::error(format!(
                    "wrong control secret: the runner's is in {} (readable by its user only)",
                    control::secret_path(ws).display()
                )),
            )
            .await;
            return;
        }
        Err(e) => {
            let _ = send(
                &mut stream,
                &Answer::error(format!(
                    "not a control request ({e}); expected one JSON line such as {{\"op\":\"status\"}}"
                )),
            )
            .await;
            return;
        }
    };
    match req {
        Request::Status => {
            let mut status = {
                let s = lock(state);
                let mut status = s.status.clone();
                status.uptime_secs = status
                    .runtime_pid
                    .and(s.started)
                    .map(|t| t.elapsed().as_secs());
                status
            };
            status.health = if status.runtime_pid.is_some() {
                health(target).await
            } else {
                "no runtime is running".into()
            };
            status.egress_tunnels = counters.tunnels.load(Ordering::Relaxed);
            status.egress_refused = counters.refused.load(Ordering::Relaxed);
            let _ = send(
                &mut stream,
                &Answer {
                    status: Some(status),
                    ..Answer::ok()
                },
            )
            .await;
        }
        Request::Stop => {
            let (tx, rx) = oneshot::channel();
            let (answered_tx, answered) = oneshot::channel();
            if cmds
                .send(Command::Stop { done: tx, answered })
                .await
                .is_err()
            {
                let _ = send(
                    &mut stream,
                    &Answer::error("the runner is already stopping"),
                )
                .await;
                return;
            }
            let _ = rx.await;
            let _ = send(&mut stream, &Answer::ok()).await;
            let _ = stream.flush().await;
            let _ = answered_tx.send(());
        }
        Request::Restart => {
            let (tx, rx) = oneshot::channel();
            if cmds.send(Command::Restart(tx)).await.is_err() {
                let _ = send(&mut stream, &Answer::error("the runner is stopping")).await;
                return;
            }
            let answer = match rx.await {
                Ok(Ok(())) => Answer::ok(),
                Ok(Err(e)) => Answer::error(e),
                Err(_) => Answer::error("the runner stopped before the runtime was ready"),
            };
            let _ = send(&mut stream, &answer).await;
        }
        Request::Logs { tail, follow } => {
            // Subscribe first: no line falls between the tail and the follow.
            let mut rx = log.lines.subscribe();
            if send(&mut stream, &Answer::ok()).await.is_err() {
                return;
            }
            let mut text = String::new();
            for l in log.tail(tail) {
                text.push_str(&l);
                text.push('\n');
            }
            if stream.write_all(text.as_bytes()).await.is_err() || !follow {
                return;
            }
            loop {
                match rx.recv().await {
                    Ok(l) => {
                        if stream.write_all(format!("{l}\n").as_bytes()).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        let note =
                            format!("runner: ({n} log lines skipped: the reader fell behind)\n");
                        if stream.write_all(note.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_thirty_seconds() {
        let secs: Vec<u64> = (0..9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(secs, vec![0, 1, 2, 4, 8, 16, 30, 30, 30]);
    }
}
