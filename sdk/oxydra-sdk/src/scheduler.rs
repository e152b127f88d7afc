//! The calling user's scheduled jobs through `oxydra:scheduler/jobs`: calling any of
//! these makes the component import it, so it needs the `scheduler` profile. The host
//! scopes every call to the user of the turn, and a new job reports to the turn's origin
//! (a tool cannot name another). Every `Err` is a message for the model that names the
//! field at fault and what is valid.

use crate::bindings::scheduler::oxydra::scheduler::jobs;

pub use jobs::{
    CadenceKind, Job, JobStatus, NewJob, Notify, OutputPage, Page, Patch, Query, Run, RunStatus,
};

use crate::ToolEnum;

/// The `cadence_type` argument of the schedule_* tools (`cron`, `once`, `interval`), as
/// the model writes it; `.into()` gives the [`CadenceKind`] the host takes.
#[derive(ToolEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum CadenceType {
    Cron,
    Once,
    Interval,
}

impl From<CadenceType> for CadenceKind {
    fn from(c: CadenceType) -> CadenceKind {
        match c {
            CadenceType::Cron => CadenceKind::Cron,
            CadenceType::Once => CadenceKind::Once,
            CadenceType::Interval => CadenceKind::Interval,
        }
    }
}

impl From<CadenceKind> for CadenceType {
    fn from(k: CadenceKind) -> CadenceType {
        match k {
            CadenceKind::Cron => CadenceType::Cron,
            CadenceKind::Once => CadenceType::Once,
            CadenceKind::Interval => CadenceType::Interval,
        }
    }
}

/// The `notification` argument of the schedule_* tools (`always`, `conditional`,
/// `never`); `.into()` gives the host's [`Notify`].
#[derive(ToolEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notification {
    Always,
    Conditional,
    Never,
}

impl From<Notification> for Notify {
    fn from(n: Notification) -> Notify {
        match n {
            Notification::Always => Notify::Always,
            Notification::Conditional => Notify::Conditional,
            Notification::Never => Notify::Never,
        }
    }
}

impl From<Notify> for Notification {
    fn from(n: Notify) -> Notification {
        match n {
            Notify::Always => Notification::Always,
            Notify::Conditional => Notification::Conditional,
            Notify::Never => Notification::Never,
        }
    }
}

pub fn create(job: &NewJob) -> Result<Job, String> {
    jobs::create(job)
}

pub fn search(query: &Query) -> Result<Page, String> {
    jobs::search(query)
}

pub fn edit(patch: &Patch) -> Result<Job, String> {
    jobs::edit(patch)
}

/// Delete a job and its run history.
pub fn delete(id: &str) -> Result<(), String> {
    jobs::delete(id)
}

/// A job's latest runs, newest first.
pub fn runs(job: &str, limit: u32) -> Result<Vec<Run>, String> {
    jobs::runs(job, limit)
}

/// `max_chars` characters of a run's full output from `offset`.
pub fn run_output(run: &str, offset: u32, max_chars: u32) -> Result<OutputPage, String> {
    jobs::run_output(run, offset, max_chars)
}

fn status_str(s: JobStatus) -> &'static str {
    match s {
        JobStatus::Active => "active",
        JobStatus::Paused => "paused",
        JobStatus::Finished => "finished",
    }
}

fn run_status_str(s: RunStatus) -> &'static str {
    match s {
        RunStatus::Running => "running",
        RunStatus::Succeeded => "succeeded",
        RunStatus::Failed => "failed",
        RunStatus::Budget => "budget",
        RunStatus::Skipped => "skipped",
        RunStatus::Interrupted => "interrupted",
    }
}

/// A job as the JSON the schedule_* tools answer with.
pub fn job_json(j: &Job) -> serde_json::Value {
    serde_json::json!({
        "schedule_id": j.id,
        "name": j.name,
        "goal": j.goal,
        "cadence_type": CadenceType::from(j.cadence_kind).as_str(),
        "cadence_value": j.cadence_value,
        "timezone": j.timezone,
        "notification": Notification::from(j.notify).as_str(),
        "status": status_str(j.status),
        "status_detail": j.status_detail,
        "origin": j.origin,
        "next_run": j.next_run,
        "consecutive_failures": j.consecutive_failures,
        "max_turns": j.max_turns,
        "max_cost": j.max_cost,
        "max_wall_secs": j.max_wall_secs,
        "created": j.created,
    })
}

/// A run as JSON (metadata; `schedule_run_output` pages the output).
pub fn run_json(r: &Run) -> serde_json::Value {
    serde_json::json!({
        "run_id": r.id,
        "schedule_id": r.job,
        "scheduled_for": r.scheduled_for,
        "started": r.started,
        "ended": r.ended,
        "status": run_status_str(r.status),
        "turns": r.turns,
        "cost": r.cost,
        "output_chars": r.output_chars,
        "detail": r.detail,
        "delivered": r.delivered,
    })
}
