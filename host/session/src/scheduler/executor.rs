//! The executor inside `serve`: one thread that finds due jobs, starts their runs through
//! the session service, follows them, records them, and tells their origin.
//!
//! - At most one run of a job is in flight; a tick that comes while it runs is recorded
//!   as a skipped run, never queued.
//! - A tick later than `[scheduler] missed_grace_secs` (no `serve` ran, or all
//!   `max_concurrent` slots were busy) is missed: all missed ticks of a job together get
//!   one run, or one skipped record (`missed_ticks`), never one run each.
//! - A run's budgets (model calls, money, wall time) are the job's, applied through the
//!   agent's budget machinery; its turns, cost and full output are recorded.
//! - After `pause_after_failures` consecutive failures the job is paused and its origin
//!   told why; every failure is announced unless the job's policy is `never`.
//! - At start, runs a process that ended left marked running are marked interrupted.

use super::cadence::{Cadence, Kind, format_ms};
use super::{Scheduler, first_chars, notify_of, now_ms};
use crate::config::scheduler::MissedTicks;
use crate::events::{Notice, Subscription, TryRecv, TurnEvent};
use crate::origin::{Notifiers, Origin};
use crate::service::{SessionService, SubmitOptions, TurnLimits};
use oxydra_agent::turn::{TurnError, TurnFailure, TurnOutcome};
use oxydra_runtime::scheduling::Notify;
use oxydra_store::{JobRow, NextTick, RunRow};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// The marker a `conditional` job's answer starts with when it is worth telling.
pub const NOTIFY_MARKER: &str = "[NOTIFY]";

/// What a run that called an unpriced model notes: its spend is unknown, so its job's
/// `max_cost` did not apply (only `max_turns` and `max_wall_secs` did).
pub const COST_UNKNOWN: &str = "cost unknown: model not priced; max_cost not enforceable";

/// Missed ticks counted at most (for the message; one run covers them all anyway).
const COUNT_MISSED_UPTO: u32 = 1000;

/// The running executor; dropping it stops the loop (a run in flight is left to the
/// session service, whose shutdown cancels it; it is then recorded as interrupted).
pub struct Executor {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Executor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Start the executor for `service`'s user; `None` when the scheduler is disabled.
/// Results for a chat go through the channel registered in `service.notifiers()`.
pub fn start(service: Arc<SessionService>) -> Result<Option<Executor>, String> {
    let Some(sched) = service.scheduler() else {
        return Ok(None);
    };
    let notifiers = service.notifiers().clone();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name("scheduler".into())
        .spawn(move || {
            let mut ex = Loop {
                service,
                sched,
                notifiers,
                flying: Vec::new(),
            };
            ex.run(&flag);
        })
        .map_err(|e| format!("could not start the scheduler thread: {e}"))?;
    Ok(Some(Executor {
        stop,
        thread: Some(thread),
    }))
}

struct InFlight {
    job: JobRow,
    run: RunRow,
    sub: Subscription,
    /// Everything the run said so far (its output if it does not finish).
    text: String,
}

struct Loop {
    service: Arc<SessionService>,
    sched: Arc<Scheduler>,
    notifiers: Notifiers,
    flying: Vec<InFlight>,
}

fn random_run_id() -> String {
    oxydra_agent::ids::random_hex(5)
        .map(|h| format!("run-{h}"))
        .unwrap_or_else(|_| format!("run-{:x}", now_ms()))
}

/// What a finished run amounts to.
struct Ending {
    status: &'static str,
    output: String,
    detail: String,
    turns: u32,
    cost: Option<f64>,
}

impl Loop {
    fn run(&mut self, stop: &AtomicBool) {
        self.recover();
        let poll = Duration::from_secs(self.sched.config().poll_interval_secs);
        let mut next_poll = Instant::now();
        while !stop.load(Ordering::SeqCst) {
            self.follow();
            if Instant::now() >= next_poll {
                if let Err(e) = self.poll() {
                    tracing::warn!("scheduler: {e}");
                }
                next_poll = Instant::now() + poll;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Stopping: runs in flight are cancelled and recorded as interrupted (what they
        // said so far is kept), rather than left for the next start to find.
        for f in &self.flying {
            if let Some(s) = &f.job.session {
                self.service.cancel(s);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.flying.is_empty() && Instant::now() < deadline {
            self.follow();
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs left marked running by a process that ended: interrupted, and said so (at
    /// start, and at every poll for another serve of this workspace that died).
    fn recover(&self) {
        let gone = match self.sched.store().mark_runs_interrupted() {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!("scheduler: could not check for interrupted runs: {e}");
                return;
            }
        };
        for run in gone {
            tracing::info!(job = %run.job_id, run = %run.id, "scheduler: run marked interrupted");
            if let Ok(Some(job)) = self.sched.store().job(&run.job_id)
                && notify_of(&job.notify) != Notify::Never
            {
                let text = format!(
                    "The run of {} started at {} was interrupted: the process running it ended before it finished. The job stays {}.",
                    label(&job),
                    format_ms(run.started_ms),
                    job.status
                );
                self.tell(&job, &run, &text);
            }
        }
    }

    /// Read what in-flight runs said; finish the ones that ended.
    fn follow(&mut self) {
        let mut i = 0;
        while i < self.flying.len() {
            let mut ended = None;
            loop {
                match self.flying[i].sub.try_recv() {
                    TryRecv::Event(TurnEvent::Text(t)) => self.flying[i].text.push_str(&t),
                    TryRecv::Event(TurnEvent::Finished(s)) => {
                        ended = Some(Some(s.outcome));
                        break;
                    }
                    TryRecv::Event(_) => {}
                    TryRecv::Empty => break,
                    TryRecv::Closed => {
                        ended = Some(None);
                        break;
                    }
                }
            }
            match ended {
                Some(outcome) => {
                    let f = self.flying.swap_remove(i);
                    self.finish(f, outcome);
                }
                None => i += 1,
            }
        }
    }

    /// Start (or skip) every due job.
    fn poll(&mut self) -> Result<(), String> {
        // Another serve on this workspace may have died since the last poll: its runs
        // are interrupted, not in flight.
        self.recover();
        let now = now_ms();
        let cfg = self.sched.config().clone();
        let due = self
            .sched
            .store()
            .due_jobs(now)
            .map_err(|e| e.to_string())?;
        for job in due {
            let Some(due_ms) = job.next_run_ms else {
                continue;
            };
            let cadence = match Cadence::stored(
                Kind::parse(&job.cadence_kind).unwrap_or(Kind::Once),
                &job.cadence_value,
                &job.timezone,
                job.created_ms,
            ) {
                Ok(c) => c,
                Err(e) => {
                    let why = format!("its stored cadence is unreadable ({e})");
                    let _ = self.sched.store().pause_job(&job.id, &why);
                    continue;
                }
            };
            let next = match cadence.next_after(now) {
                Some(t) => NextTick::At(t),
                None => NextTick::Finished,
            };
            let mut run = RunRow {
                id: random_run_id(),
                job_id: job.id.clone(),
                scheduled_ms: due_ms,
                started_ms: now,
                ended_ms: None,
                status: "running".into(),
                turns: 0,
                cost: None,
                output: String::new(),
                detail: String::new(),
                delivered: String::new(),
            };
            if let Some(f) = self.flying.iter().find(|f| f.job.id == job.id) {
                run.status = "skipped".into();
                run.ended_ms = Some(now);
                run.detail = format!(
                    "skipped: the previous run ({}, started {}) was still in flight",
                    f.run.id,
                    format_ms(f.run.started_ms)
                );
                run.delivered = "none: nothing ran".into();
                self.claim(due_ms, &run, next);
                continue;
            }
            // A run of this job still in flight in another live process (a second serve
            // on the same workspace): this tick is skipped too, never a second run.
            if let Some(other) = self.sched.store().running_run(&job.id).ok().flatten() {
                run.status = "skipped".into();
                run.ended_ms = Some(now);
                run.detail = format!(
                    "skipped: the previous run ({}, started {}) was still in flight in another process",
                    other.id,
                    format_ms(other.started_ms)
                );
                run.delivered = "none: nothing ran".into();
                self.claim(due_ms, &run, next);
                continue;
            }
            let late_ms = now - due_ms;
            let missed = late_ms
                > i64::try_from(cfg.missed_grace_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
            if missed {
                let n = count_ticks(&cadence, due_ms, now);
                let since = format_ms(due_ms);
                if cfg.missed_ticks == MissedTicks::Skip {
                    run.status = "skipped".into();
                    run.ended_ms = Some(now);
                    run.detail = format!(
                        "skipped: {n} tick(s) missed since {since} while no serve ran (or all runs were busy); [scheduler] missed_ticks = \"skip\""
                    );
                    run.delivered = "none: nothing ran".into();
                    self.claim(due_ms, &run, next);
                    continue;
                }
                run.detail = format!("catching up: {n} tick(s) missed since {since}, run once");
            }
            if self.flying.len() >= cfg.max_concurrent as usize {
                // Stays due; found again at the next poll.
                continue;
            }
            if self.claim(due_ms, &run, next) {
                self.launch(job, run);
            }
        }
        Ok(())
    }

    fn claim(&self, due_ms: i64, run: &RunRow, next: NextTick) -> bool {
        match self.sched.store().claim_tick(due_ms, run, next) {
            Ok(claimed) => {
                if claimed && run.status == "skipped" {
                    tracing::info!(job = %run.job_id, run = %run.id, "scheduler: {}", run.detail);
                    let _ = self
                        .sched
                        .store()
                        .prune_runs(&run.job_id, self.sched.config().max_run_history);
                }
                claimed
            }
            Err(e) => {
                tracing::warn!(job = %run.job_id, "scheduler: could not claim a tick: {e}");
                false
            }
        }
    }

    /// Submit a claimed run to the session service.
    fn launch(&mut self, mut job: JobRow, run: RunRow) {
        let started = (|| -> Result<Subscription, String> {
            let session = match &job.session {
                Some(s) => s.clone(),
                None => {
                    let s = self
                        .service
                        .create(Some(&job.agent), Some(&format!("sched-{}", job.id)))
                        .map_err(|e| e.to_string())?
                        .id;
                    self.sched
                        .store()
                        .set_job_session(&job.id, &s)
                        .map_err(|e| e.to_string())?;
                    job.session = Some(s.clone());
                    s
                }
            };
            let origin = Origin::from_json(&job.origin)?;
            let limits = TurnLimits {
                max_steps: Some((
                    job.max_turns,
                    format!("the job's max_turns ({})", job.max_turns),
                )),
                max_cost: job
                    .max_cost
                    .map(|c| (c, format!("the job's max_cost (${c})"))),
                wall_time: Some((
                    Duration::from_secs(job.max_wall_secs),
                    format!("the job's max_wall_secs ({})", job.max_wall_secs),
                )),
            };
            self.service
                .submit_with(
                    &session,
                    &prompt(&job, &run),
                    SubmitOptions { origin, limits },
                )
                .map_err(|e| e.to_string())
        })();
        match started {
            Ok(sub) => {
                tracing::info!(job = %job.id, run = %run.id, "scheduler: run started");
                self.flying.push(InFlight {
                    job,
                    run,
                    sub,
                    text: String::new(),
                });
            }
            Err(e) => {
                let ending = Ending {
                    status: "failed",
                    output: String::new(),
                    detail: format!("the run could not start: {e}"),
                    turns: 0,
                    cost: None,
                };
                self.record(job, run, ending);
            }
        }
    }

    fn finish(&self, f: InFlight, outcome: Option<Result<TurnOutcome, Arc<TurnFailure>>>) {
        let mut ending = match outcome {
            Some(Ok(o)) => Ending {
                status: "succeeded",
                output: o.answer,
                detail: String::new(),
                turns: o.steps,
                cost: o.cost,
            },
            Some(Err(fail)) => {
                let (status, detail) = match &fail.error {
                    TurnError::Budget(b) => ("budget", b.to_string()),
                    TurnError::Cancelled => (
                        "interrupted",
                        "interrupted: serve stopped during the run".to_string(),
                    ),
                    e => ("failed", e.to_string()),
                };
                Ending {
                    status,
                    output: f.text,
                    detail,
                    turns: fail.spent.steps,
                    cost: fail.spent.cost,
                }
            }
            None => Ending {
                status: "interrupted",
                output: f.text,
                detail: "interrupted: the session service stopped during the run".into(),
                turns: 0,
                cost: None,
            },
        };
        // A priced model's spend is known from its first call (0.0 before): no cost
        // after a model call means the catalog has no prices for it.
        if let Some(max) = f.job.max_cost
            && ending.cost.is_none()
            && ending.turns > 0
        {
            let note = format!(
                "{COST_UNKNOWN} (the job's max_cost of ${max} was not applied; max_turns and max_wall_secs were)"
            );
            ending.detail = if ending.detail.is_empty() {
                note
            } else {
                format!("{}; {note}", ending.detail)
            };
        }
        self.record(f.job, f.run, ending);
    }

    /// Record a run's end, pause the job after too many failures, and tell its origin.
    fn record(&self, job: JobRow, mut run: RunRow, e: Ending) {
        let store = self.sched.store();
        let cfg = self.sched.config();
        run.ended_ms = Some(now_ms());
        run.status = e.status.into();
        run.output = e.output;
        run.turns = e.turns;
        run.cost = e.cost;
        if !e.detail.is_empty() {
            run.detail = if run.detail.is_empty() {
                e.detail
            } else {
                format!("{}; {}", e.detail, run.detail)
            };
        }
        let failed = match e.status {
            "succeeded" => Some(false),
            "failed" | "budget" => Some(true),
            _ => None,
        };
        let failures = match store.finish_run(&run, failed) {
            Ok(n) => n,
            Err(err) => {
                tracing::warn!(job = %job.id, run = %run.id, "scheduler: could not record the run: {err}");
                return;
            }
        };
        let _ = store.prune_runs(&job.id, cfg.max_run_history);
        // The job as it is now (it may have been edited, or deleted, meanwhile).
        let job = match store.job(&job.id) {
            Ok(Some(j)) => j,
            _ => return,
        };
        let policy = notify_of(&job.notify);
        tracing::info!(job = %job.id, run = %run.id, status = %run.status, turns = run.turns, "scheduler: run ended");
        let mut text = match (failed, policy) {
            (Some(false), Notify::Always) => Some(run.output.trim().to_string()),
            (Some(false), Notify::Conditional) => run
                .output
                .trim_start()
                .strip_prefix(NOTIFY_MARKER)
                .map(|rest| rest.trim().to_string()),
            (Some(true), Notify::Always | Notify::Conditional) => Some(format!(
                "The run of {} failed ({}): {}",
                label(&job),
                run.status,
                run.detail
            )),
            (None, Notify::Always | Notify::Conditional) => {
                Some(format!("The run of {} was {}", label(&job), run.detail))
            }
            _ => None,
        };
        if failed == Some(true) && failures >= cfg.pause_after_failures {
            let why = format!(
                "paused after {failures} consecutive failed runs ([scheduler] pause_after_failures = {}); the last: {}",
                cfg.pause_after_failures, run.detail
            );
            if store.pause_job(&job.id, &why).unwrap_or(false) {
                tracing::warn!(job = %job.id, "scheduler: job {why}");
                // Always told, whatever the policy: the job will not run again by itself.
                let pause = format!(
                    "{} is {why}. Resume it with schedule_edit (status active) or `oxydra-host schedule resume {}`.",
                    label(&job),
                    job.id
                );
                text = Some(match text {
                    Some(t) => format!("{t}\n\n{pause}"),
                    None => pause,
                });
            }
        }
        match text {
            Some(t) if !t.is_empty() => self.tell(&job, &run, &t),
            _ => {
                let why = if policy == Notify::Never {
                    "none: the job's policy is never"
                } else {
                    "none: the answer did not start with [NOTIFY]"
                };
                let _ = store.set_run_delivered(&run.id, why);
            }
        }
    }

    /// Send `text` to the job's origin and record where it went.
    fn tell(&self, job: &JobRow, run: &RunRow, text: &str) {
        let delivered = match Origin::from_json(&job.origin) {
            Err(e) => format!("kept here: {e}"),
            Ok(origin) => match &origin {
                Origin::Gateway { session } | Origin::Cli { session } => {
                    let n = self.service.notify(
                        session,
                        Notice {
                            job_id: job.id.clone(),
                            job_name: job.name.clone(),
                            run_id: run.id.clone(),
                            message: text.to_string(),
                        },
                    );
                    if n > 0 {
                        format!("session {session}: {n} client(s)")
                    } else {
                        format!("kept here: no client follows session {session} now")
                    }
                }
                Origin::Channel { channel, .. } => match self.notifiers.get(channel) {
                    Some(n) => {
                        let body = format!("Scheduled job “{}”:\n{text}", job.name);
                        match n.notify(&origin, &body) {
                            Ok(()) => origin.to_string(),
                            Err(e) => format!("kept here: {origin} refused it: {e}"),
                        }
                    }
                    None => format!("kept here: channel {channel} is not running"),
                },
            },
        };
        tracing::info!(job = %job.id, run = %run.id, "scheduler: result {delivered}");
        let _ = self.sched.store().set_run_delivered(&run.id, &delivered);
    }
}

/// `“name” (job-…)`.
fn label(job: &JobRow) -> String {
    format!("job “{}” ({})", first_chars(&job.name, 80), job.id)
}

/// Ticks from `first` up to `now`, counted up to [`COUNT_MISSED_UPTO`].
fn count_ticks(c: &Cadence, first: i64, now: i64) -> String {
    let mut n = 1u32;
    let mut t = first;
    while let Some(next) = c.next_after(t) {
        if next > now {
            return n.to_string();
        }
        n += 1;
        t = next;
        if n >= COUNT_MISSED_UPTO {
            return format!("{COUNT_MISSED_UPTO}+");
        }
    }
    n.to_string()
}

/// The prompt of a run: the goal, with what the run is and how its answer is used.
fn prompt(job: &JobRow, run: &RunRow) -> String {
    let use_of_answer = match notify_of(&job.notify) {
        Notify::Always => "your final answer is sent to the user".to_string(),
        Notify::Conditional => format!(
            "start your final answer with {NOTIFY_MARKER} only if it is worth telling the user now (then it is sent to them without the marker); otherwise it stays in the job's history"
        ),
        Notify::Never => "your final answer is kept in the job's history; nobody is told".into(),
    };
    format!(
        "[Scheduled run {} of job “{}” ({}), for {}. Nobody watches this turn live: {use_of_answer}.]\n\n{}",
        run.id,
        job.name,
        job.id,
        format_ms(run.scheduled_ms),
        job.goal
    )
}
