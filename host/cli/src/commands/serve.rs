//! `oxydra-host serve`: the long-running runtime role. The session service and the
//! WebSocket gateway in the foreground until SIGINT/SIGTERM; the gateway's URL on stdout
//! (one line) and in `<user workspace>/ipc/gateway-endpoint`, logs on stderr.

use crate::{Failure, exit};
use oxydra_gateway::token::{self, TOKEN_ENV};
use oxydra_gateway::{Gateway, GatewayOptions};
use oxydra_session::config::Sources;
use oxydra_session::{ServiceOptions, SessionService, System};
use oxydra_tiers::confine::Report;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Where the gateway listens: HOST:PORT (port 0 picks a free one), or unix:PATH.
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR", value_parser = parse_listen)]
    listen: Listen,
    /// The user to serve (default: the only user in runner.toml, else `local`).
    #[arg(long)]
    pub user: Option<String>,
    /// The user's workspace directory; default <workspace_root>/<user>.
    #[arg(long, value_name = "DIR")]
    workspace: Option<PathBuf>,
    /// Confine this process before it reads any input (the process tier): the runner
    /// (`oxydra-host start --insecure`) starts `serve` so, with the plan in
    /// OXYDRA_CONFINE_PLAN and its egress proxy in OXYDRA_EGRESS_SOCKET.
    #[arg(long, conflicts_with = "in_container")]
    confine: bool,
    /// Run as the container tier's runtime: the container confines this process; it
    /// checks from inside that it has no network, a read-only root and vault, no
    /// capabilities, and sends every outgoing connection through the runner's egress
    /// proxy (OXYDRA_EGRESS_SOCKET). The runner (`oxydra-host start`) starts it so.
    #[arg(long, conflicts_with = "in_vm")]
    in_container: bool,
    /// Run as the micro_vm tier's runtime: the VM confines this process (the guest's
    /// init, `vm-guest`, starts it so); it checks from inside as in a container, and
    /// sends every outgoing connection through the runner's egress proxy over vsock.
    #[arg(long, conflicts_with = "confine")]
    in_vm: bool,
}

#[derive(Clone, Debug)]
enum Listen {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

fn parse_listen(s: &str) -> Result<Listen, String> {
    if let Some(p) = s.strip_prefix("unix:") {
        if p.is_empty() {
            return Err("unix: needs a socket path, e.g. unix:/run/oxydra/gateway.sock".into());
        }
        return Ok(Listen::Unix(PathBuf::from(p)));
    }
    s.parse()
        .map(Listen::Tcp)
        .map_err(|e| format!("{s}: {e}; use HOST:PORT (e.g. 127.0.0.1:0) or unix:PATH"))
}

impl std::fmt::Display for Listen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Listen::Tcp(a) => write!(f, "{a}"),
            Listen::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// The process tier: confine this process as the runner planned, check that it took,
/// and send every outgoing connection through the runner's egress proxy.
fn confine_self() -> Result<Report, Failure> {
    use oxydra_runtime::capabilities::egress::{EGRESS_SECRET_ENV, EGRESS_SOCKET_ENV, use_proxy};
    // A runtime never outlives its runner (a runner killed with SIGKILL included).
    oxydra_tiers::confine::die_with_parent();
    use oxydra_tiers::confine::{self, PLAN_ENV, Plan};
    let started_by_runner =
        "serve --confine is started by the runner (`oxydra-host start --insecure`)";
    let plan = std::env::var(PLAN_ENV).map_err(|_| {
        Failure::new(
            exit::USAGE,
            format!("{started_by_runner}, which passes the confinement plan in {PLAN_ENV}"),
        )
    })?;
    let plan: Plan = serde_json::from_str(&plan)
        .map_err(|e| Failure::new(exit::USAGE, format!("{PLAN_ENV}: {e}")))?;
    let socket = std::env::var_os(EGRESS_SOCKET_ENV).ok_or_else(|| {
        Failure::new(
            exit::USAGE,
            format!("{started_by_runner}, which passes its egress proxy in {EGRESS_SOCKET_ENV}"),
        )
    })?;
    let secret = std::env::var(EGRESS_SECRET_ENV).ok();
    // A runtime that cannot confine itself must not run (exit 2: the runner stops).
    let mut report = confine::confine(&plan)
        .map_err(|e| Failure::new(exit::USAGE, format!("could not confine the runtime: {e}")))?;
    confine::verify(&plan, &mut report);
    use_proxy(std::path::Path::new(&socket), secret).map_err(|e| Failure::new(exit::USAGE, e))?;
    Ok(report)
}

/// The container tier: check the container from inside, and leave only through the
/// runner's egress proxy.
fn contained(ws: &std::path::Path, tier: &str) -> Result<Report, Failure> {
    use oxydra_runtime::capabilities::egress::{EGRESS_SECRET_ENV, EGRESS_SOCKET_ENV, use_proxy};
    let socket = std::env::var_os(EGRESS_SOCKET_ENV).ok_or_else(|| {
        Failure::new(
            exit::USAGE,
            format!(
                "serve --in-container is started by the runner (`oxydra-host start`), which passes its egress proxy in {EGRESS_SOCKET_ENV}"
            ),
        )
    })?;
    let report = oxydra_tiers::container::verify_inside(ws, tier);
    use_proxy(
        std::path::Path::new(&socket),
        std::env::var(EGRESS_SECRET_ENV).ok(),
    )
    .map_err(|e| Failure::new(exit::USAGE, e))?;
    // The shell sidecar, when the runner started one: `shell_exec` is registered only
    // if it answers (System::new checks).
    if let Some(shell) = std::env::var_os(oxydra_runtime::capabilities::shell::SHELL_SOCKET_ENV) {
        oxydra_runtime::capabilities::shell::use_sidecar(std::path::Path::new(&shell))
            .map_err(|e| Failure::new(exit::USAGE, e))?;
    }
    Ok(report)
}

pub fn run(args: ServeArgs, sources: &Sources) -> Result<(), Failure> {
    let started = Instant::now();
    // Before anything is read (config included) and before any thread starts.
    let mut confinement = if args.confine {
        Some(confine_self()?)
    } else {
        None
    };
    let (user, default_ws) = oxydra_session::compose::user_and_workspace(sources, args.user)?;
    let ws = args.workspace.unwrap_or(default_ws);
    if args.in_container {
        // The container confined this process before it started.
        confinement = Some(contained(
            &ws,
            "container tier: the engine confines this process",
        )?);
    }
    if args.in_vm {
        // The VM is the boundary; inside it the runtime also gains no privileges.
        let nnp = oxydra_tiers::vm_guest::set_no_new_privs();
        let mut report = contained(
            &ws,
            "micro_vm tier: a virtual machine confines this process",
        )?;
        if let Err(e) = nnp {
            report
                .degraded
                .push(format!("no_new_privs could not be set: {e}"));
        }
        confinement = Some(report);
    }
    if let Some(report) = &confinement {
        let path = oxydra_tiers::runner::confinement_path(&ws);
        let text = serde_json::to_string_pretty(report).unwrap_or_default();
        std::fs::write(&path, text)
            .map_err(|e| Failure::new(exit::USAGE, format!("{}: {e}", path.display())))?;
        for d in &report.degraded {
            tracing::warn!("confinement degraded: {d}");
        }
    }
    let system = System::load(sources)?;
    for n in &system.config.notices {
        eprintln!("{n}");
    }
    for w in &system.warnings {
        tracing::warn!("{w}");
    }
    let opts = ServiceOptions::from_config(&system.config);
    let gw_opts = GatewayOptions::from_config(&system.config);
    let service = Arc::new(SessionService::open(Arc::new(system), &user, &ws, opts)?);
    // Channels run inside serve, as clients of the same session service.
    let user_cfg = oxydra_session::compose::user_config(sources, &user)?;
    let telegram = match &user_cfg.channels.telegram {
        Some(t) => oxydra_session::telegram::start(service.clone(), t, |v| std::env::var(v).ok())?,
        None => None,
    };
    if telegram.is_some() {
        eprintln!("telegram: polling for user {user}");
    }
    // The scheduler's executor: due jobs run as turns of this service; results go to
    // their origin (gateway clients of the session, or a channel's notifier).
    let scheduler = oxydra_session::scheduler::executor::start(service.clone())
        .map_err(|e| Failure::new(exit::TOOL_ERROR, e))?;
    let env_token = std::env::var(TOKEN_ENV).ok().filter(|t| !t.is_empty());
    let token = token::load_or_create(&ws, env_token)
        .map_err(|e| Failure::new(exit::USAGE, format!("gateway token: {e}")))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(
            std::thread::available_parallelism()
                .map_or(2, |n| n.get())
                .min(4),
        )
        .thread_name("gateway")
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| {
            Failure::new(
                exit::TOOL_ERROR,
                format!("could not start the gateway runtime: {e}"),
            )
        })?;
    // The service (and its store, which owns a runtime of its own) is dropped here,
    // outside the gateway's runtime: a runtime cannot be dropped inside another.
    let held = service.clone();
    let result = rt.block_on(async move {
        let warm = service.clone();
        let listen = args.listen.clone();
        let cannot = |e: std::io::Error| {
            Failure::new(
                exit::USAGE,
                format!("could not listen on {listen}: {e}; pass another --listen address"),
            )
        };
        let (gateway, url, endpoint) = match &args.listen {
            Listen::Tcp(addr) => {
                let gateway = Gateway::bind(*addr, service, token, gw_opts)
                    .await
                    .map_err(cannot)?;
                let addr = gateway
                    .local_addr()
                    .map_err(|e| Failure::new(exit::TOOL_ERROR, e.to_string()))?;
                let url = format!("ws://{addr}/ws");
                // Clients find a TCP gateway through this file; behind a runner, the
                // runner writes it with its own listener.
                let endpoint = token::endpoint_path(&ws);
                if let Some(dir) = endpoint.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        Failure::new(exit::TOOL_ERROR, format!("{}: {e}", dir.display()))
                    })?;
                }
                token::write_private(&endpoint, &format!("{url}\n")).map_err(|e| {
                    Failure::new(exit::TOOL_ERROR, format!("gateway endpoint: {e}"))
                })?;
                (gateway, url, Some(endpoint))
            }
            Listen::Unix(path) => {
                if path.exists() {
                    std::fs::remove_file(path).map_err(cannot)?;
                }
                let l = std::os::unix::net::UnixListener::bind(path).map_err(cannot)?;
                let gateway = Gateway::from_std_unix(l, path.clone(), service, token, gw_opts)
                    .map_err(cannot)?;
                (gateway, format!("unix:{}", path.display()), None)
            }
        };
        tracing::info!(
            "gateway ready for user {user} in {:.1} ms (workspace {})",
            started.elapsed().as_secs_f64() * 1000.0,
            ws.display()
        );
        {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "gateway {url}").and_then(|()| out.flush());
        }
        // The default agent's runtime (its provider, its store connection) is built now,
        // after ready, so the first hello does not wait for it.
        tokio::task::spawn_blocking(move || {
            if let Err(e) = warm.model("default") {
                tracing::warn!("the default agent cannot run: {e}");
            }
        });
        gateway.run(oxydra_tiers::runner::signalled()).await;
        // Only our own URL is removed: another serve may have taken the file over.
        if let Some(endpoint) = &endpoint
            && std::fs::read_to_string(endpoint).is_ok_and(|t| t.trim() == url)
        {
            let _ = std::fs::remove_file(endpoint);
        }
        if let Listen::Unix(path) = &args.listen {
            let _ = std::fs::remove_file(path);
        }
        tracing::info!("gateway stopped");
        Ok(())
    });
    drop(scheduler);
    drop(telegram);
    drop(rt);
    drop(held);
    result
}
