//! `oxydra-host chat`: an interactive line-mode session with the TUI's slash commands, as
//! a client of the session service. A turn's events print on their own thread, so
//! `/cancel` works while one is streaming.

use super::run::{Printer, open};
use crate::Failure;
use oxydra_agent::turn::TurnError;
use oxydra_session::config::Sources;
use oxydra_session::{ServiceError, SessionService, Subscription};
use oxydra_store::TurnStatus;
use std::io::BufRead;
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct ChatArgs {
    /// Start in this session (its id or a unique prefix).
    #[arg(long)]
    session: Option<String>,
    #[arg(long)]
    agent: Option<String>,
    #[arg(long, value_name = "DIR")]
    workspace: Option<PathBuf>,
    #[arg(long)]
    pub user: Option<String>,
}

const HELP: &str = "commands: /new [name]  /sessions  /switch <id-prefix>  /cancel  /cancelall  /status  /help  /quit\n\
anything else is sent to the agent";

fn status_name(s: TurnStatus) -> &'static str {
    match s {
        TurnStatus::Running => "running",
        TurnStatus::Completed => "completed",
        TurnStatus::Failed => "failed",
        TurnStatus::Budget => "stopped by a budget",
        TurnStatus::Cancelled => "cancelled",
    }
}

/// Print one turn's events until it ends.
fn follow(events: Subscription) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut printer = Printer::new();
        let finished = events.wait_finished(|e| printer.show(e));
        printer.end_line();
        match finished.map(|s| s.outcome) {
            Some(Ok(o)) => {
                let cost = o.cost.map(|c| format!(", ${c:.6}")).unwrap_or_default();
                eprintln!("[done] {} model call(s){cost}", o.steps);
            }
            Some(Err(e)) if matches!(e.error, TurnError::Cancelled) => {
                eprintln!("[cancelled] the turn was cancelled; its partial output is kept")
            }
            Some(Err(e)) => eprintln!("[error] {e}"),
            None => eprintln!("[error] the session service stopped during the turn"),
        }
    })
}

fn say(e: ServiceError) {
    eprintln!("[error] {}", crate::advice::service(e).message);
}

pub fn run(args: ChatArgs, sources: &Sources) -> Result<(), Failure> {
    let (service, first) = open(
        sources,
        args.workspace,
        args.user,
        args.session.as_deref(),
        args.agent.as_deref(),
    )?;
    let mut current = first.id;
    let mut agent = first.agent;
    let mut printing: Option<std::thread::JoinHandle<()>> = None;
    eprintln!("[session] {current} (agent {agent}); /help lists the commands");
    let busy = |service: &SessionService, id: &str| service.snapshot(id).is_some_and(|s| s.active);
    let stdin = std::io::stdin();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let (cmd, rest) = line
            .split_once(' ')
            .map_or((line, ""), |(c, r)| (c, r.trim()));
        match cmd {
            "/quit" | "/exit" => break,
            "/help" => eprintln!("{HELP}"),
            "/cancel" => {
                if service.cancel(&current) {
                    eprintln!("[cancelling]");
                } else {
                    eprintln!("no turn is running");
                }
            }
            "/cancelall" => match service.cancel_all() {
                0 => eprintln!("no turn is running"),
                n => eprintln!("[cancelling] {n} turn(s)"),
            },
            "/new" => {
                if busy(&service, &current) {
                    eprintln!("a turn is running; wait for it or /cancel it first");
                    continue;
                }
                let name = (!rest.is_empty()).then_some(rest);
                match service.create(Some(&agent), name) {
                    Ok(a) => {
                        current = a.id;
                        eprintln!("[session] {current}");
                    }
                    Err(e) => say(e),
                }
            }
            "/sessions" => match service.list() {
                Ok(list) => {
                    for s in list {
                        let mark = if s.id == current { "*" } else { " " };
                        let running = if s.active { "  (running)" } else { "" };
                        eprintln!(
                            "{mark} {}  agent {}  {} turn(s){running}",
                            s.id, s.agent, s.turns
                        );
                    }
                }
                Err(e) => say(e),
            },
            "/switch" => {
                if busy(&service, &current) {
                    eprintln!("a turn is running; wait for it or /cancel it first");
                    continue;
                }
                if rest.is_empty() {
                    eprintln!("/switch <id-prefix>: /sessions lists them");
                    continue;
                }
                match service.attach(rest, None) {
                    Ok(a) => {
                        current = a.id;
                        agent = a.agent;
                        if a.interrupted > 0 {
                            eprintln!(
                                "[session] {current}: the previous turn was interrupted; continuing with its history"
                            );
                        }
                        eprintln!("[session] {current}");
                    }
                    Err(ServiceError::NoSession(_)) => {
                        eprintln!("no session starts with `{rest}`; /sessions lists them")
                    }
                    Err(ServiceError::AmbiguousSession { matches, .. }) => eprintln!(
                        "`{rest}` matches {} sessions; type more of the id",
                        matches.len()
                    ),
                    Err(e) => say(e),
                }
            }
            "/status" => {
                let last = service
                    .attach(&current, None)
                    .ok()
                    .and_then(|a| a.last_turn);
                let turn = match last {
                    Some((n, status)) => format!("last turn {n} {}", status_name(status)),
                    None => "no turns yet".into(),
                };
                let running = if busy(&service, &current) {
                    "a turn is running"
                } else {
                    "idle"
                };
                let model = service.model(&agent).unwrap_or_default();
                eprintln!(
                    "[status] session {current}, agent {agent}, model {model}, {running}, {turn}"
                );
            }
            c if c.starts_with('/') => eprintln!("unknown command `{c}`; /help lists them"),
            _ => match service.submit(&current, line) {
                Ok(events) => {
                    if let Some(p) = printing.take() {
                        let _ = p.join();
                    }
                    printing = Some(follow(events));
                }
                Err(ServiceError::SessionBusy { .. }) => {
                    eprintln!("a turn is running; wait for it or /cancel it")
                }
                Err(e) => say(e),
            },
        }
    }
    if let Some(p) = printing.take() {
        let _ = p.join();
    }
    service.shutdown();
    Ok(())
}
