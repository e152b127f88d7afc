//! `oxydra-host run "prompt"`: one turn in a fresh (or `--session`) session, as a client
//! of the session service. The answer streams to stdout; the session id, model calls and
//! tool calls go to stderr.

use crate::{Failure, advice, exit};
use oxydra_agent::money::format_money;
use oxydra_agent::turn::TurnError;
use oxydra_session::config::Sources;
use oxydra_session::{Attached, ServiceOptions, SessionService, System, TurnEvent};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

#[derive(clap::Args)]
pub struct RunArgs {
    /// Continue this session (its id, or a unique prefix; printed on stderr when a session starts).
    #[arg(long)]
    session: Option<String>,
    /// Run as this agent from [agents.<name>] (its prompt, tools, model and budgets).
    #[arg(long)]
    agent: Option<String>,
    /// Workspace directory (shared/, tmp/, vault/); default <workspace_root>/<user>.
    #[arg(long, value_name = "DIR")]
    workspace: Option<PathBuf>,
    #[arg(long)]
    pub user: Option<String>,
    prompt: String,
}

/// Writes a turn's events: the answer to stdout as it streams, the rest to stderr.
pub struct Printer {
    at_line_start: bool,
    /// stdout was closed (`run … | head`): nobody reads the answer any more.
    pub closed: bool,
}

impl Printer {
    pub fn new() -> Printer {
        Printer {
            at_line_start: true,
            closed: false,
        }
    }

    fn out(&mut self, text: &str) {
        if self.closed {
            return;
        }
        let mut out = std::io::stdout().lock();
        if out
            .write_all(text.as_bytes())
            .and_then(|()| out.flush())
            .is_err()
        {
            self.closed = true;
        }
    }

    pub fn show(&mut self, e: &TurnEvent) {
        match e {
            TurnEvent::Text(t) => {
                self.out(t);
                if !t.is_empty() {
                    self.at_line_start = t.ends_with('\n');
                }
            }
            TurnEvent::ProviderCall { step, max } => {
                if *step > 1 {
                    eprintln!("[model] call {step}/{max}");
                }
            }
            TurnEvent::Queued { position, .. } => {
                eprintln!("[queued] waiting for a turn slot (position {position})")
            }
            TurnEvent::ToolStart { name, arguments } => {
                let shown: String = arguments.chars().take(160).collect();
                eprintln!("[tool] {name} {shown}");
            }
            TurnEvent::ToolEnd { name, elapsed, ok } => {
                eprintln!(
                    "[tool] {name} {} ({} ms)",
                    if *ok { "ok" } else { "failed" },
                    elapsed.as_millis()
                );
            }
            TurnEvent::Compaction { turns, upto_turn } => {
                eprintln!(
                    "[context] the model summarised {turns} earlier turn(s) (through turn {upto_turn}) to fit its window"
                );
            }
            TurnEvent::ContextTrimmed { turns } => {
                eprintln!(
                    "[context] {turns} earlier turn(s) were left out: they do not fit the model's window"
                );
            }
            TurnEvent::Lagged { missed, .. } => {
                eprintln!("[lagged] {missed} event(s) were not shown")
            }
            TurnEvent::Notice(n) => {
                eprintln!("[scheduled] {} ({}): {}", n.job_name, n.job_id, n.message)
            }
            TurnEvent::Snapshot(_)
            | TurnEvent::Started { .. }
            | TurnEvent::Reasoning(_)
            | TurnEvent::Usage { .. }
            | TurnEvent::Finished(_) => {}
        }
    }

    /// End the answer's line, if it did not end with one.
    pub fn end_line(&mut self) {
        if !self.at_line_start {
            self.out("\n");
            self.at_line_start = true;
        }
    }
}

/// The service for the workspace `run` and `chat` use, and the session to start in
/// (resumed, or new).
pub fn open(
    sources: &Sources,
    workspace: Option<PathBuf>,
    user: Option<String>,
    session: Option<&str>,
    agent: Option<&str>,
) -> Result<(SessionService, Attached), Failure> {
    let (service, _) = open_service(sources, workspace, user)?;
    let attached = match session {
        Some(id) => service.attach(id, agent)?,
        None => service.create(agent, None)?,
    };
    if attached.interrupted > 0 {
        eprintln!(
            "[session] {}: the previous turn was interrupted; continuing with its history",
            attached.id
        );
    }
    Ok((service, attached))
}

/// The session service for the workspace `run` and `chat` use, and the user it acts for.
pub fn open_service(
    sources: &Sources,
    workspace: Option<PathBuf>,
    user: Option<String>,
) -> Result<(SessionService, String), Failure> {
    let system = System::load(sources)?;
    for n in &system.config.notices {
        eprintln!("{n}");
    }
    for w in &system.warnings {
        eprintln!("[warning] {w}");
    }
    // The user whose memory and jobs these are: the one named, else the one runner.toml
    // lists alone (whose workspace this is), else `local`.
    let user_id = match &user {
        Some(u) => u.clone(),
        None => oxydra_session::compose::user_and_workspace(sources, None)?.0,
    };
    let ws_dir = match workspace {
        Some(d) => d,
        None => crate::commands::tool::default_workspace(sources, user)?,
    };
    let opts = ServiceOptions::from_config(&system.config);
    let service = SessionService::open(Arc::new(system), &user_id, &ws_dir, opts)?;
    Ok((service, user_id))
}

pub fn run(args: RunArgs, sources: &Sources) -> Result<(), Failure> {
    let (service, session) = open(
        sources,
        args.workspace,
        args.user,
        args.session.as_deref(),
        args.agent.as_deref(),
    )?;
    eprintln!("[session] {} (agent {})", session.id, session.agent);
    // SIGINT or SIGTERM cancels the turn (its partial output is kept), then exits 130;
    // a closed stdout cancels it too.
    let signalled = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, signalled.clone())
            .map_err(|e| Failure::new(exit::TOOL_ERROR, format!("signal handler: {e}")))?;
    }
    let events = service.submit(&session.id, &args.prompt)?;
    let mut printer = Printer::new();
    let mut cancelled_by: Option<&str> = None;
    let finished = loop {
        match events.recv_timeout(Duration::from_millis(50)) {
            Ok(Some(TurnEvent::Finished(s))) => break Some(s),
            Ok(Some(e)) => printer.show(&e),
            Ok(None) => break None,
            Err(()) => {}
        }
        if cancelled_by.is_none() {
            if signalled.load(Ordering::SeqCst) {
                cancelled_by = Some("a signal");
            } else if printer.closed {
                cancelled_by = Some("closed stdout");
            }
            if let Some(why) = cancelled_by {
                eprintln!("[cancelling] {why}: the turn stops; what it produced so far is kept");
                service.cancel(&session.id);
            }
        }
    };
    printer.end_line();
    let Some(summary) = finished else {
        return Err(Failure::new(
            exit::TOOL_ERROR,
            "the session service stopped before the turn ended",
        ));
    };
    match summary.outcome {
        Ok(o) => {
            let cost = o.cost.map(|c| format!(", ${c:.6}")).unwrap_or_default();
            eprintln!(
                "[done] {} model call(s), {} input + {} output tokens{cost}; continue with --session {}",
                o.steps, o.usage.input_tokens, o.usage.output_tokens, session.id
            );
            Ok(())
        }
        Err(f) => {
            let code = match (&f.error, cancelled_by) {
                (TurnError::Cancelled, Some("closed stdout")) => 141,
                (TurnError::Cancelled, _) => 130,
                _ => exit::TOOL_ERROR,
            };
            let s = &f.spent;
            if s.steps > 0 {
                let cost = s
                    .cost
                    .map(|c| format!(", {}", format_money(c)))
                    .unwrap_or_default();
                eprintln!(
                    "[spent] {} model call(s), {} input + {} output tokens{cost}",
                    s.steps, s.usage.input_tokens, s.usage.output_tokens
                );
            }
            Err(Failure::new(code, advice::turn(&f.error, &session.id)))
        }
    }
}
