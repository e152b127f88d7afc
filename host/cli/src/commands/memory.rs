//! `oxydra-host memory search "…" | list | reindex`: a user's memory, straight from their
//! store and indexes (no `serve` needed). `reindex` refuses while a `serve` writes the
//! same indexes.

use crate::{Failure, exit};
use clap::Subcommand;
use oxydra_memory::{Memory, Search, Source};
use oxydra_session::config::{self, Sources};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Args)]
pub struct Target {
    /// The user whose memory (default: the only user in runner.toml, else `local`).
    #[arg(long)]
    pub user: Option<String>,
    /// The user's workspace directory; default <workspace_root>/<user>.
    #[arg(long, value_name = "DIR")]
    workspace: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum MemoryCommand {
    /// Hybrid search (full text + vectors) over the user's notes, and with
    /// --conversations their earlier conversations and session summaries.
    Search {
        query: String,
        /// How many results (1 to 20; default [memory.retrieval] top_k).
        #[arg(long)]
        top_k: Option<u32>,
        /// Also earlier conversations and session summaries.
        #[arg(long)]
        conversations: bool,
        /// Only notes with this tag (repeatable: all of them).
        #[arg(long = "tag")]
        tags: Vec<String>,
        #[command(flatten)]
        target: Target,
    },
    /// The user's notes, newest first.
    List {
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[arg(long, default_value_t = 0)]
        offset: u32,
        #[command(flatten)]
        target: Target,
    },
    /// Summarise into memory the sessions idle for --idle-hours (default [memory]
    /// stale_session_hours) whose summary is missing or older than their last turn, as
    /// each session's agent (one model call each). `serve` does this by itself.
    Summarize {
        #[arg(long, value_name = "HOURS")]
        idle_hours: Option<f64>,
        #[command(flatten)]
        target: Target,
    },
    /// Rebuild the full-text and vector indexes from the store, embedding again what
    /// another embedding backend embedded.
    Reindex {
        #[command(flatten)]
        target: Target,
    },
}

fn open(target: Target, sources: &Sources, user: &Option<String>) -> Result<Arc<Memory>, Failure> {
    let cfg = config::load_agent(sources)?.value.memory;
    if !cfg.enabled {
        return Err(Failure::new(
            exit::USAGE,
            "memory is disabled: set `[memory] enabled = true` in agent.toml",
        ));
    }
    let user = target.user.or_else(|| user.clone());
    let (user, default_ws) = oxydra_session::compose::user_and_workspace(sources, user)?;
    let ws = target.workspace.unwrap_or(default_ws);
    Ok(oxydra_session::memory::open(&cfg, &ws, &user)?)
}

fn failed(e: oxydra_memory::MemoryError) -> Failure {
    match e {
        oxydra_memory::MemoryError::Invalid(_) | oxydra_memory::MemoryError::NotFound(_) => {
            Failure::new(exit::USAGE, e.to_string())
        }
        e => Failure::new(exit::TOOL_ERROR, e.to_string()),
    }
}

fn one_line(s: &str, max: usize) -> String {
    let flat = s.replace('\n', " ");
    if flat.chars().count() > max {
        format!("{}…", flat.chars().take(max).collect::<String>())
    } else {
        flat
    }
}

/// `user`: the top-level `--user`, when the subcommand names none.
pub fn run(cmd: MemoryCommand, sources: &Sources, user: Option<String>) -> Result<(), Failure> {
    match cmd {
        MemoryCommand::Search {
            query,
            top_k,
            conversations,
            tags,
            target,
        } => {
            let cfg = config::load_agent(sources)?.value.memory;
            let m = open(target, sources, &user)?;
            let hits = m
                .search(&Search {
                    include_conversation: conversations,
                    tags,
                    ..Search::new(&query, top_k.unwrap_or(cfg.retrieval.top_k))
                })
                .map_err(failed)?;
            if hits.is_empty() {
                println!("nothing found");
            }
            for h in hits {
                let from = match (h.source, &h.session) {
                    (Source::Note, _) => String::new(),
                    (s, Some(sess)) => format!(" ({} of session {sess})", s.as_str()),
                    (s, None) => format!(" ({})", s.as_str()),
                };
                let tags = if h.tags.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", h.tags.join(", "))
                };
                println!(
                    "{:.4}  {}{from}{tags}  {}\n        {}",
                    h.score,
                    h.id,
                    oxydra_session::memory::rfc3339(h.when_ms),
                    one_line(&h.content, 200)
                );
            }
            Ok(())
        }
        MemoryCommand::List {
            limit,
            offset,
            target,
        } => {
            let m = open(target, sources, &user)?;
            let (notes, total) = m.list(limit.clamp(1, 1000), offset).map_err(failed)?;
            println!("{total} notes");
            for n in notes {
                let tags = if n.tags.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", n.tags.join(", "))
                };
                println!(
                    "{}  {}{tags}\n        {}",
                    n.id,
                    oxydra_session::memory::rfc3339(n.updated_ms),
                    one_line(&n.content, 200)
                );
            }
            Ok(())
        }
        MemoryCommand::Summarize { idle_hours, target } => {
            let cfg = config::load_agent(sources)?.value.memory;
            if !cfg.enabled {
                return Err(Failure::new(
                    exit::USAGE,
                    "memory is disabled: set `[memory] enabled = true` in agent.toml",
                ));
            }
            let hours = idle_hours.unwrap_or(f64::from(cfg.stale_session_hours));
            if !(hours.is_finite() && hours >= 0.0) {
                return Err(Failure::new(
                    exit::USAGE,
                    format!("--idle-hours {hours}: give a number of hours, 0 or more"),
                ));
            }
            let (service, _) = crate::commands::run::open_service(
                sources,
                target.workspace,
                target.user.or(user),
            )?;
            let done = service
                .summarize_stale(std::time::Duration::from_secs_f64(hours * 3600.0))
                .map_err(|e| Failure::new(exit::TOOL_ERROR, e.to_string()))?;
            println!(
                "summarised {} session(s) idle for {hours} h or more{}",
                done.len(),
                if done.is_empty() {
                    String::new()
                } else {
                    format!(": {}", done.join(", "))
                }
            );
            Ok(())
        }
        MemoryCommand::Reindex { target } => {
            let m = open(target, sources, &user)?;
            let mut err = std::io::stderr();
            let tty = std::io::IsTerminal::is_terminal(&err);
            let mut last_pct = u64::MAX;
            let report = m
                .reindex(&mut |done, total| {
                    let pct = (done * 100).checked_div(total).unwrap_or(100);
                    if pct == last_pct {
                        return;
                    }
                    last_pct = pct;
                    let filled = (pct / 5) as usize;
                    let bar = format!(
                        "[{}{}] {done}/{total} documents",
                        "#".repeat(filled),
                        " ".repeat(20 - filled.min(20))
                    );
                    let _ = if tty {
                        write!(err, "\r{bar}")
                    } else {
                        writeln!(err, "{bar}")
                    };
                })
                .map_err(failed)?;
            if tty {
                let _ = writeln!(err);
            }
            println!(
                "reindexed {} documents in {:.1} s with {}{}",
                report.documents,
                report.elapsed.as_secs_f64(),
                report.model,
                if report.re_embedded > 0 {
                    format!(
                        "; {} embedded again (they were embedded by another backend)",
                        report.re_embedded
                    )
                } else {
                    String::new()
                }
            );
            Ok(())
        }
    }
}
