//! `oxydra-host serve`: the long-running runtime role. The session service and the
//! WebSocket gateway in the foreground until SIGINT/SIGTERM; the gateway's URL on stdout
//! (one line) and in `<user workspace>/ipc/gateway-endpoint`, logs on stderr.

use crate::{Failure, exit};
use oxydra_gateway::token::{self, TOKEN_ENV};
use oxydra_gateway::{Gateway, GatewayOptions};
use oxydra_session::config::Sources;
use oxydra_session::{ServiceOptions, SessionService, System};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Where the gateway listens; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0", value_name = "ADDR")]
    listen: SocketAddr,
    /// The user to serve (default: the only user in runner.toml, else `local`).
    #[arg(long)]
    user: Option<String>,
    /// The user's workspace directory; default <workspace_root>/<user>.
    #[arg(long, value_name = "DIR")]
    workspace: Option<PathBuf>,
}

pub fn run(args: ServeArgs, sources: &Sources) -> Result<(), Failure> {
    let started = Instant::now();
    let (user, default_ws) = oxydra_session::compose::user_and_workspace(sources, args.user)?;
    let ws = args.workspace.unwrap_or(default_ws);
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
        let gateway = Gateway::bind(args.listen, service, token, gw_opts)
            .await
            .map_err(|e| {
                Failure::new(
                    exit::USAGE,
                    format!(
                        "could not listen on {}: {e}; pass another --listen address",
                        args.listen
                    ),
                )
            })?;
        let addr = gateway
            .local_addr()
            .map_err(|e| Failure::new(exit::TOOL_ERROR, e.to_string()))?;
        let url = format!("ws://{addr}/ws");
        let endpoint = token::endpoint_path(&ws);
        if let Some(dir) = endpoint.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| Failure::new(exit::TOOL_ERROR, format!("{}: {e}", dir.display())))?;
        }
        token::write_private(&endpoint, &format!("{url}\n"))
            .map_err(|e| Failure::new(exit::TOOL_ERROR, format!("gateway endpoint: {e}")))?;
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
        gateway.run(shutdown_signal()).await;
        // Only our own URL is removed: another serve may have taken the file over.
        if std::fs::read_to_string(&endpoint).is_ok_and(|t| t.trim() == url) {
            let _ = std::fs::remove_file(&endpoint);
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

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
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
            tracing::warn!("no signal handlers: stop serve by killing it");
            std::future::pending::<()>().await;
        }
    }
}
