//! `oxydra-host schedule list | runs <id> | pause <id> | resume <id> | delete <id>`: the
//! user's scheduled jobs, straight from their store (no `serve` needed; a running
//! `serve` sees the change at its next poll).

use crate::{Failure, exit};
use clap::Subcommand;
use oxydra_session::config::{self, Sources};
use oxydra_session::scheduler::{self, Scheduler};
use std::path::PathBuf;

#[derive(clap::Args)]
pub struct Target {
    /// The user whose jobs (default: the only user in runner.toml, else `local`).
    #[arg(long)]
    pub user: Option<String>,
    /// The user's workspace directory; default <workspace_root>/<user>.
    #[arg(long, value_name = "DIR")]
    workspace: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum ScheduleCommand {
    /// Every job: id, status, cadence, next run, origin.
    List {
        #[command(flatten)]
        target: Target,
    },
    /// A job's latest runs, newest first.
    Runs {
        id: String,
        /// How many (1 to 20).
        #[arg(long, default_value_t = 10)]
        limit: u32,
        #[command(flatten)]
        target: Target,
    },
    /// Stop a job's runs until it is resumed.
    Pause {
        id: String,
        #[command(flatten)]
        target: Target,
    },
    /// Resume a paused job (its next time is after now; its failure count restarts).
    Resume {
        id: String,
        #[command(flatten)]
        target: Target,
    },
    /// Delete a job and its run history.
    Delete {
        id: String,
        #[command(flatten)]
        target: Target,
    },
}

fn open(target: Target, sources: &Sources, user: &Option<String>) -> Result<Scheduler, Failure> {
    let user = target.user.or_else(|| user.clone());
    let (_, default_ws) = oxydra_session::compose::user_and_workspace(sources, user)?;
    let ws = target.workspace.unwrap_or(default_ws);
    let cfg = config::load_agent(sources)?.value.scheduler;
    Ok(Scheduler::open(&ws, cfg)?)
}

fn refused(e: String) -> Failure {
    Failure::new(exit::USAGE, e)
}

/// `user`: the top-level `--user`, when the subcommand names none.
pub fn run(cmd: ScheduleCommand, sources: &Sources, user: Option<String>) -> Result<(), Failure> {
    match cmd {
        ScheduleCommand::List { target } => {
            let s = open(target, sources, &user)?;
            let jobs = s
                .store()
                .jobs()
                .map_err(|e| Failure::new(exit::TOOL_ERROR, e.to_string()))?;
            if jobs.is_empty() {
                println!("no jobs");
            }
            for j in &jobs {
                let v = scheduler::job_view(j);
                let next = v.next_run.unwrap_or_else(|| "-".into());
                println!(
                    "{}  {:<8} {} `{}`{}  next {}  notify {}  from {}  “{}”",
                    j.id,
                    j.status,
                    j.cadence_kind,
                    j.cadence_value,
                    if j.cadence_kind == "cron" {
                        format!(" {}", j.timezone)
                    } else {
                        String::new()
                    },
                    next,
                    j.notify,
                    v.origin,
                    j.name
                );
                if !j.status_detail.is_empty() {
                    println!("    {}", j.status_detail);
                }
            }
            Ok(())
        }
        ScheduleCommand::Runs { id, limit, target } => {
            let s = open(target, sources, &user)?;
            let runs = s.runs(&id, limit).map_err(refused)?;
            if runs.is_empty() {
                println!("no runs yet");
            }
            for r in runs {
                let row = s.store().run(&r.id).ok().flatten();
                let cost = r
                    .cost
                    .map_or("cost unknown".to_string(), |c| format!("${c:.6}"));
                println!(
                    "{}  {:<11} for {}  started {}  ended {}  {} turn(s), {cost}, {} chars",
                    r.id,
                    row.as_ref().map_or("", |x| x.status.as_str()),
                    r.scheduled_for,
                    r.started,
                    r.ended.unwrap_or_else(|| "-".into()),
                    r.turns,
                    r.output_chars
                );
                for line in [r.detail, r.delivered] {
                    if !line.is_empty() {
                        println!("    {line}");
                    }
                }
                if let Some(row) = row
                    && !row.output.is_empty()
                {
                    let head = scheduler::first_chars(row.output.trim(), 200);
                    println!("    {}", head.replace('\n', " "));
                }
            }
            Ok(())
        }
        ScheduleCommand::Pause { id, target } => {
            let s = open(target, sources, &user)?;
            let j = s.set_status(&id, false).map_err(refused)?;
            println!("{} paused", j.id);
            Ok(())
        }
        ScheduleCommand::Resume { id, target } => {
            let s = open(target, sources, &user)?;
            let j = s.set_status(&id, true).map_err(refused)?;
            println!(
                "{} active; next run {}",
                j.id,
                j.next_run.unwrap_or_else(|| "-".into())
            );
            Ok(())
        }
        ScheduleCommand::Delete { id, target } => {
            let s = open(target, sources, &user)?;
            s.delete(&id).map_err(refused)?;
            println!("{} deleted with its runs", id.trim());
            Ok(())
        }
    }
}
