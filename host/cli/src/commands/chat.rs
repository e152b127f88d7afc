//! `oxydra-host chat`: an interactive line-mode session with the TUI's slash commands.
//! Turns run on a worker thread, so `/cancel` works while one is streaming.

use super::run::{Opened, Printer, open, session_id};
use crate::Failure;
use crate::config::Sources;
use oxydra_agent::turn::{CancelToken, TurnError};
use oxydra_store::TurnStatus;
use std::io::BufRead;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};

#[derive(clap::Args)]
pub struct ChatArgs {
    /// Start in this session.
    #[arg(long)]
    session: Option<String>,
    #[arg(long)]
    agent: Option<String>,
    #[arg(long, value_name = "DIR")]
    workspace: Option<PathBuf>,
    #[arg(long)]
    user: Option<String>,
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

pub fn run(args: ChatArgs, sources: &Sources) -> Result<(), Failure> {
    let Opened {
        runtime,
        agent,
        agent_name,
        session: first,
    } = open(
        sources,
        args.workspace,
        args.user,
        args.session.as_deref(),
        args.agent,
    )?;
    let current = Arc::new(Mutex::new(first));
    let cancel = CancelToken::default();
    let busy = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel::<(String, String)>();

    let worker = {
        let (runtime, cancel, busy) = (runtime.clone(), cancel.clone(), busy.clone());
        std::thread::spawn(move || {
            for (session, prompt) in rx {
                let mut printer = Printer::new();
                let result = runtime.run_turn_cancellable(
                    &session,
                    &agent,
                    &prompt,
                    &mut |p| printer.show(p),
                    &cancel,
                );
                printer.end_line();
                match result {
                    Ok(o) => {
                        let cost = o.cost.map(|c| format!(", ${c:.6}")).unwrap_or_default();
                        eprintln!("[done] {} model call(s){cost}", o.steps);
                    }
                    Err(TurnError::Cancelled) => {
                        eprintln!("[cancelled] the turn was cancelled; its partial output is kept")
                    }
                    Err(e) => eprintln!("[error] {e}"),
                }
                busy.store(false, Ordering::SeqCst);
            }
        })
    };

    eprintln!(
        "[session] {} (agent {agent_name}); /help lists the commands",
        current.lock().map(|c| c.clone()).unwrap_or_default()
    );
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
        let session = current.lock().map(|c| c.clone()).unwrap_or_default();
        match cmd {
            "/quit" | "/exit" => break,
            "/help" => eprintln!("{HELP}"),
            "/cancel" | "/cancelall" => {
                if busy.load(Ordering::SeqCst) {
                    cancel.cancel();
                    eprintln!("[cancelling]");
                } else {
                    eprintln!("no turn is running");
                }
            }
            "/new" => {
                if busy.load(Ordering::SeqCst) {
                    eprintln!("a turn is running; wait for it or /cancel it first");
                    continue;
                }
                // A named session: the name leads its id, so /switch <name> finds it.
                let id = if rest.is_empty() {
                    session_id()
                } else {
                    format!(
                        "{}-{}",
                        rest.replace(char::is_whitespace, "-"),
                        &session_id()[..8]
                    )
                };
                if let Err(e) = runtime.store.create_session(&id, &agent_name) {
                    eprintln!("[error] {e}");
                    continue;
                }
                if let Ok(mut c) = current.lock() {
                    c.clone_from(&id);
                }
                eprintln!("[session] {id}");
            }
            "/sessions" => match runtime.store.sessions() {
                Ok(list) => {
                    for (id, agent, turns) in list {
                        let mark = if id == session { "*" } else { " " };
                        eprintln!("{mark} {id}  agent {agent}  {turns} turn(s)");
                    }
                }
                Err(e) => eprintln!("[error] {e}"),
            },
            "/switch" => {
                if busy.load(Ordering::SeqCst) {
                    eprintln!("a turn is running; wait for it or /cancel it first");
                    continue;
                }
                let matches: Vec<String> = runtime
                    .store
                    .sessions()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(id, _, _)| id)
                    .filter(|id| !rest.is_empty() && id.starts_with(rest))
                    .collect();
                match matches.as_slice() {
                    [one] => {
                        if let Ok(mut c) = current.lock() {
                            c.clone_from(one);
                        }
                        eprintln!("[session] {one}");
                    }
                    [] => eprintln!("no session starts with `{rest}`; /sessions lists them"),
                    many => eprintln!(
                        "`{rest}` matches {} sessions; type more of the id",
                        many.len()
                    ),
                }
            }
            "/status" => {
                let last = runtime
                    .store
                    .turns(&session)
                    .ok()
                    .and_then(|t| t.last().cloned());
                let turn = match last {
                    Some(t) => format!("last turn {} {}", t.turn, status_name(t.status)),
                    None => "no turns yet".into(),
                };
                let running = if busy.load(Ordering::SeqCst) {
                    "a turn is running"
                } else {
                    "idle"
                };
                eprintln!(
                    "[status] session {session}, agent {agent_name}, model {}, {running}, {turn}",
                    runtime.model
                );
            }
            c if c.starts_with('/') => eprintln!("unknown command `{c}`; /help lists them"),
            _ => {
                if busy.swap(true, Ordering::SeqCst) {
                    eprintln!("a turn is running; wait for it or /cancel it");
                    continue;
                }
                cancel.reset();
                if tx.send((session, line.to_string())).is_err() {
                    break;
                }
            }
        }
    }
    drop(tx);
    let _ = worker.join();
    Ok(())
}
