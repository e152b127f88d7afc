//! The durable scheduler: jobs (cron, interval, once) kept in the user's store, run by
//! `serve` through the session service, their results sent to where they came from.
//!
//! - [`Scheduler`]: one user's jobs over their store, with `[scheduler]`; it hands each
//!   turn a [`Jobs`] scoped to the turn's origin and agent ([`Scheduler::jobs_for`]) and
//!   serves the CLI (`oxydra-host schedule …`).
//! - [`executor`]: the loop inside `serve` that runs due jobs.
//! - [`cadence`]: when a job is due.

pub mod cadence;
pub mod executor;

use crate::config::SchedulerConfig;
use crate::error::ServiceError;
use crate::origin::Origin;
use cadence::{Cadence, Kind, Refused, format_ms};
use oxydra_runtime::scheduling::{
    CadenceKind, Job, JobStatus, Jobs, NewJob, Notify, OutputPage, Page, Patch, Query, Run,
    RunStatus,
};
use oxydra_store::{JobRow, RunRow, Store};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Characters of a goal at most.
pub const MAX_GOAL_CHARS: usize = 8000;
/// Characters of a name at most.
pub const MAX_NAME_CHARS: usize = 80;

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The first `n` characters of `s` (never a byte slice: a character may be several bytes).
pub fn first_chars(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn kind_of(k: CadenceKind) -> Kind {
    match k {
        CadenceKind::Cron => Kind::Cron,
        CadenceKind::Interval => Kind::Interval,
        CadenceKind::Once => Kind::Once,
    }
}

fn wit_kind(k: Kind) -> CadenceKind {
    match k {
        Kind::Cron => CadenceKind::Cron,
        Kind::Interval => CadenceKind::Interval,
        Kind::Once => CadenceKind::Once,
    }
}

pub fn notify_str(n: Notify) -> &'static str {
    match n {
        Notify::Always => "always",
        Notify::Conditional => "conditional",
        Notify::Never => "never",
    }
}

pub fn notify_of(s: &str) -> Notify {
    match s {
        "conditional" => Notify::Conditional,
        "never" => Notify::Never,
        _ => Notify::Always,
    }
}

fn status_of(s: &str) -> JobStatus {
    match s {
        "paused" => JobStatus::Paused,
        "finished" => JobStatus::Finished,
        _ => JobStatus::Active,
    }
}

pub fn run_status_of(s: &str) -> RunStatus {
    match s {
        "succeeded" => RunStatus::Succeeded,
        "failed" => RunStatus::Failed,
        "budget" => RunStatus::Budget,
        "skipped" => RunStatus::Skipped,
        "interrupted" => RunStatus::Interrupted,
        _ => RunStatus::Running,
    }
}

/// A job's origin, for display.
pub fn origin_text(json: &str) -> String {
    Origin::from_json(json).map_or_else(|e| e, |o| o.to_string())
}

pub fn job_view(r: &JobRow) -> Job {
    Job {
        id: r.id.clone(),
        name: r.name.clone(),
        goal: r.goal.clone(),
        cadence_kind: wit_kind(Kind::parse(&r.cadence_kind).unwrap_or(Kind::Once)),
        cadence_value: r.cadence_value.clone(),
        timezone: r.timezone.clone(),
        notify: notify_of(&r.notify),
        status: status_of(&r.status),
        status_detail: r.status_detail.clone(),
        origin: origin_text(&r.origin),
        next_run: r.next_run_ms.map(format_ms),
        consecutive_failures: r.consecutive_failures,
        max_turns: r.max_turns,
        max_cost: r.max_cost,
        max_wall_secs: r.max_wall_secs,
        created: format_ms(r.created_ms),
    }
}

pub fn run_view(r: &RunRow) -> Run {
    Run {
        id: r.id.clone(),
        job: r.job_id.clone(),
        scheduled_for: format_ms(r.scheduled_ms),
        started: format_ms(r.started_ms),
        ended: r.ended_ms.map(format_ms),
        status: run_status_of(&r.status),
        turns: r.turns,
        cost: r.cost,
        output_chars: u32::try_from(r.output.chars().count()).unwrap_or(u32::MAX),
        detail: r.detail.clone(),
        delivered: r.delivered.clone(),
    }
}

fn refused(r: Refused) -> String {
    r.to_string()
}

/// One user's jobs (their store) under `[scheduler]`.
pub struct Scheduler {
    store: Store,
    cfg: SchedulerConfig,
}

impl std::fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scheduler").finish_non_exhaustive()
    }
}

impl Scheduler {
    /// The scheduler of the workspace at `ws_dir` (its own connection to the store).
    pub fn open(ws_dir: &Path, cfg: SchedulerConfig) -> Result<Scheduler, ServiceError> {
        Ok(Scheduler {
            store: Store::open(&crate::compose::store_path(ws_dir))?,
            cfg,
        })
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.cfg
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// What the tools of a turn from `origin`, run by `agent`, may do: the user's jobs;
    /// jobs they create report to `origin` and run as `agent`. `unpriced_model` names the
    /// agent's model when the catalog has no prices for it: a job may then not ask for
    /// a money budget, which nothing could enforce.
    pub fn jobs_for(
        self: &Arc<Self>,
        origin: Origin,
        agent: &str,
        unpriced_model: Option<String>,
    ) -> Arc<dyn Jobs> {
        Arc::new(TurnJobs {
            sched: self.clone(),
            origin,
            agent: agent.to_string(),
            unpriced_model,
        })
    }

    fn random_id(prefix: &str) -> Result<String, String> {
        oxydra_agent::ids::random_hex(5).map(|h| format!("{prefix}-{h}"))
    }

    fn get(&self, id: &str) -> Result<JobRow, String> {
        match self.store.job(id.trim()) {
            Ok(Some(j)) => Ok(j),
            Ok(None) => Err(format!(
                "schedule_id: there is no job `{}`; schedule_search lists the jobs",
                id.trim()
            )),
            Err(e) => Err(e.to_string()),
        }
    }

    /// A per-run budget asked for: at most the `[scheduler]` cap, the cap by default.
    fn budget<T: PartialOrd + Copy + std::fmt::Display + Default>(
        field: &str,
        asked: Option<T>,
        cap: T,
    ) -> Result<T, String> {
        match asked {
            None => Ok(cap),
            Some(v) if v <= T::default() => Err(format!("{field}: must be above 0, got {v}")),
            Some(v) if v > cap => Err(format!(
                "{field}: {v} is over the limit of {cap} ([scheduler] {field})"
            )),
            Some(v) => Ok(v),
        }
    }

    /// Create a job (the checks of `schedule_create`).
    pub fn create(&self, job: NewJob, origin: &Origin, agent: &str) -> Result<Job, String> {
        let cfg = &self.cfg;
        let goal = job.goal.trim();
        if goal.is_empty() {
            return Err("goal: must not be empty; say what each run should do".into());
        }
        if goal.chars().count() > MAX_GOAL_CHARS {
            return Err(format!(
                "goal: at most {MAX_GOAL_CHARS} characters; put long material in a file and name it"
            ));
        }
        let name = match job.name.as_deref().map(str::trim) {
            Some(n) if !n.is_empty() => {
                if n.chars().count() > MAX_NAME_CHARS {
                    return Err(format!("name: at most {MAX_NAME_CHARS} characters"));
                }
                n.to_string()
            }
            _ => {
                let words: Vec<&str> = goal.split_whitespace().take(6).collect();
                first_chars(&words.join(" "), 48).to_string()
            }
        };
        let timezone = job
            .timezone
            .as_deref()
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .unwrap_or(&cfg.default_timezone)
            .to_string();
        cadence::zone(&timezone).map_err(refused)?;
        let now = now_ms();
        let kind = kind_of(job.cadence_kind);
        let c = Cadence::parse(
            kind,
            &job.cadence_value,
            &timezone,
            Duration::from_secs(cfg.min_interval_secs),
            now,
            now,
        )
        .map_err(refused)?;
        let row = JobRow {
            id: Scheduler::random_id("job")?,
            name,
            goal: goal.to_string(),
            agent: agent.to_string(),
            cadence_kind: kind.as_str().into(),
            cadence_value: job.cadence_value.trim().to_string(),
            timezone,
            notify: notify_str(job.notify.unwrap_or(Notify::Always)).into(),
            status: "active".into(),
            status_detail: String::new(),
            origin: origin.to_json(),
            max_turns: Scheduler::budget("max_turns", job.max_turns, cfg.max_turns)?,
            max_cost: Some(Scheduler::budget("max_cost", job.max_cost, cfg.max_cost)?),
            max_wall_secs: Scheduler::budget(
                "max_wall_secs",
                job.max_wall_secs,
                cfg.max_wall_secs,
            )?,
            next_run_ms: c.next_after(now),
            consecutive_failures: 0,
            session: None,
            created_ms: now,
            updated_ms: now,
        };
        match self.store.insert_job(&row, cfg.max_jobs_per_user) {
            Ok(true) => Ok(job_view(&row)),
            Ok(false) => Err(format!(
                "too many jobs: this user has {} ([scheduler] max_jobs_per_user); delete one with schedule_delete first",
                cfg.max_jobs_per_user
            )),
            Err(e) => Err(e.to_string()),
        }
    }

    pub fn search(&self, q: Query) -> Result<Page, String> {
        if q.limit == 0 || q.limit > 50 {
            return Err(format!("limit: between 1 and 50, got {}", q.limit));
        }
        let name = q.name.as_deref().map(|n| n.trim().to_lowercase());
        let all = self.store.jobs().map_err(|e| e.to_string())?;
        let matching: Vec<&JobRow> = all
            .iter()
            .filter(|j| {
                name.as_ref()
                    .is_none_or(|n| j.name.to_lowercase().contains(n.as_str()))
                    && q.status.is_none_or(|s| status_of(&j.status) == s)
                    && q.cadence_kind
                        .is_none_or(|k| Kind::parse(&j.cadence_kind) == Some(kind_of(k)))
                    && q.notify.is_none_or(|n| notify_of(&j.notify) == n)
            })
            .collect();
        Ok(Page {
            total: u32::try_from(matching.len()).unwrap_or(u32::MAX),
            jobs: matching
                .into_iter()
                .skip(q.offset as usize)
                .take(q.limit as usize)
                .map(job_view)
                .collect(),
        })
    }

    /// Apply a partial change (the checks of `schedule_edit`).
    pub fn edit(&self, p: Patch) -> Result<Job, String> {
        let mut j = self.get(&p.id)?;
        let now = now_ms();
        if let Some(n) = p.name.as_deref().map(str::trim) {
            if n.is_empty() || n.chars().count() > MAX_NAME_CHARS {
                return Err(format!("name: 1 to {MAX_NAME_CHARS} characters"));
            }
            j.name = n.to_string();
        }
        if let Some(g) = p.goal.as_deref().map(str::trim) {
            if g.is_empty() || g.chars().count() > MAX_GOAL_CHARS {
                return Err(format!("goal: 1 to {MAX_GOAL_CHARS} characters"));
            }
            j.goal = g.to_string();
        }
        if let Some(n) = p.notify {
            j.notify = notify_str(n).into();
        }
        let mut replan = false;
        if let Some(tz) = p.timezone.as_deref().map(str::trim) {
            cadence::zone(tz).map_err(refused)?;
            j.timezone = tz.to_string();
            replan = true;
        }
        match (p.cadence_kind, p.cadence_value.as_deref()) {
            (Some(k), Some(v)) => {
                Cadence::parse(
                    kind_of(k),
                    v,
                    &j.timezone,
                    Duration::from_secs(self.cfg.min_interval_secs),
                    now,
                    now,
                )
                .map_err(refused)?;
                j.cadence_kind = kind_of(k).as_str().into();
                j.cadence_value = v.trim().to_string();
                // Interval counting restarts now.
                j.created_ms = now;
                replan = true;
                if j.status == "finished" {
                    j.status = "active".into();
                }
            }
            (None, None) => {}
            (Some(_), None) => {
                return Err("cadence_value: required with cadence_type".into());
            }
            (None, Some(_)) => {
                return Err("cadence_type: required with cadence_value".into());
            }
        }
        match p.status {
            Some(JobStatus::Paused) if j.status == "active" => {
                j.status = "paused".into();
                j.status_detail = "paused by the user".into();
                j.next_run_ms = None;
                replan = false;
            }
            Some(JobStatus::Active) if j.status == "paused" => {
                j.status = "active".into();
                j.status_detail = String::new();
                j.consecutive_failures = 0;
                replan = true;
            }
            Some(JobStatus::Active) if j.status == "finished" && !replan => {
                return Err(
                    "status: this one-off job has run; give a new cadence_type and cadence_value to run it again".into(),
                );
            }
            Some(JobStatus::Finished) => {
                return Err("status: active or paused".into());
            }
            _ => {}
        }
        if replan && j.status == "active" {
            // Ticks that passed while paused are not missed ones: the next is after now.
            let c = Cadence::stored(
                Kind::parse(&j.cadence_kind).unwrap_or(Kind::Once),
                &j.cadence_value,
                &j.timezone,
                j.created_ms,
            )
            .map_err(refused)?;
            j.next_run_ms = c.next_after(now);
            if j.next_run_ms.is_none() {
                return Err(
                    "cadence_value: that time is past; give a future one to run this job again"
                        .into(),
                );
            }
        }
        self.store.update_job(&j).map_err(|e| e.to_string())?;
        Ok(job_view(&j))
    }

    pub fn delete(&self, id: &str) -> Result<(), String> {
        match self.store.delete_job(id.trim()) {
            Ok(true) => Ok(()),
            Ok(false) => Err(format!("schedule_id: there is no job `{}`", id.trim())),
            Err(e) => Err(e.to_string()),
        }
    }

    pub fn runs(&self, job: &str, limit: u32) -> Result<Vec<Run>, String> {
        if limit == 0 || limit > 20 {
            return Err(format!("limit: between 1 and 20, got {limit}"));
        }
        let j = self.get(job)?;
        Ok(self
            .store
            .runs(&j.id, limit)
            .map_err(|e| e.to_string())?
            .iter()
            .map(run_view)
            .collect())
    }

    pub fn run_output(&self, run: &str, offset: u32, max_chars: u32) -> Result<OutputPage, String> {
        if !(200..=8000).contains(&max_chars) {
            return Err(format!("max_chars: between 200 and 8000, got {max_chars}"));
        }
        let r = match self.store.run(run.trim()) {
            Ok(Some(r)) => r,
            Ok(None) => {
                return Err(format!(
                    "run_id: there is no run `{}`; schedule_runs lists a job's runs",
                    run.trim()
                ));
            }
            Err(e) => return Err(e.to_string()),
        };
        let total = r.output.chars().count();
        let text: String = r
            .output
            .chars()
            .skip(offset as usize)
            .take(max_chars as usize)
            .collect();
        Ok(OutputPage {
            run: r.id,
            text,
            offset,
            total_chars: u32::try_from(total).unwrap_or(u32::MAX),
        })
    }

    /// Pause or resume by id (the CLI).
    pub fn set_status(&self, id: &str, active: bool) -> Result<Job, String> {
        self.edit(Patch {
            id: id.to_string(),
            name: None,
            goal: None,
            cadence_kind: None,
            cadence_value: None,
            timezone: None,
            notify: None,
            status: Some(if active {
                JobStatus::Active
            } else {
                JobStatus::Paused
            }),
        })
    }
}

/// The jobs service of one turn: the user's jobs, new ones from the turn's origin.
struct TurnJobs {
    sched: Arc<Scheduler>,
    origin: Origin,
    agent: String,
    /// The agent's model, when the catalog does not price it.
    unpriced_model: Option<String>,
}

impl Jobs for TurnJobs {
    fn create(&self, job: NewJob) -> Result<Job, String> {
        // Asked for explicitly, a money budget that cannot apply is refused rather than
        // recorded as if it did. The `[scheduler] max_cost` default is still stored
        // (it applies if the agent's model gets prices); each run that cannot apply it
        // says so ([`executor::COST_UNKNOWN`]).
        if let (Some(c), Some(model)) = (job.max_cost, &self.unpriced_model) {
            return Err(format!(
                "max_cost: ${c} cannot be enforced: model `{model}` has no prices in the catalog, \
                 so a run's cost is unknown; leave max_cost out (runs are then bounded by max_turns \
                 and max_wall_secs only)"
            ));
        }
        self.sched.create(job, &self.origin, &self.agent)
    }
    fn search(&self, query: Query) -> Result<Page, String> {
        self.sched.search(query)
    }
    fn edit(&self, patch: Patch) -> Result<Job, String> {
        self.sched.edit(patch)
    }
    fn delete(&self, id: &str) -> Result<(), String> {
        self.sched.delete(id)
    }
    fn runs(&self, job: &str, limit: u32) -> Result<Vec<Run>, String> {
        self.sched.runs(job, limit)
    }
    fn run_output(&self, run: &str, offset: u32, max_chars: u32) -> Result<OutputPage, String> {
        self.sched.run_output(run, offset, max_chars)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sched(cfg: SchedulerConfig) -> (tempfile::TempDir, Scheduler) {
        let dir = tempfile::tempdir().unwrap();
        let s = Scheduler::open(dir.path(), cfg).unwrap();
        (dir, s)
    }

    fn new_job(kind: CadenceKind, value: &str) -> NewJob {
        NewJob {
            goal: "summarise /shared/inbox".into(),
            name: None,
            cadence_kind: kind,
            cadence_value: value.into(),
            timezone: None,
            notify: None,
            max_turns: None,
            max_cost: None,
            max_wall_secs: None,
        }
    }

    fn origin() -> Origin {
        Origin::Gateway {
            session: "s1".into(),
        }
    }

    #[test]
    fn first_chars_never_splits_a_character() {
        assert_eq!(first_chars("größe ✓✓", 7), "größe ✓");
        assert_eq!(first_chars("ab", 5), "ab");
    }

    #[test]
    fn a_job_takes_its_origin_from_the_turn_and_defaults_from_the_config() {
        let (_d, s) = sched(SchedulerConfig::default());
        let j = s
            .create(
                new_job(CadenceKind::Cron, "0 8 * * 1-5"),
                &origin(),
                "default",
            )
            .unwrap();
        assert_eq!(j.origin, "gateway session s1");
        assert_eq!(j.timezone, "UTC");
        assert_eq!(j.name, "summarise /shared/inbox");
        assert_eq!(
            (j.max_turns, j.max_cost, j.max_wall_secs),
            (10, Some(0.5), 600)
        );
        assert!(j.next_run.is_some());
        let page = s
            .search(Query {
                name: Some("SUMMARISE".into()),
                status: Some(JobStatus::Active),
                cadence_kind: None,
                notify: None,
                limit: 20,
                offset: 0,
            })
            .unwrap();
        assert_eq!(page.total, 1);
    }

    #[test]
    fn limits_and_bad_input_are_refused_naming_the_field() {
        let cfg = SchedulerConfig {
            max_jobs_per_user: 1,
            ..Default::default()
        };
        let (_d, s) = sched(cfg);
        let err = |j: NewJob| s.create(j, &origin(), "default").unwrap_err();
        let e = err(new_job(CadenceKind::Interval, "59"));
        assert!(
            e.starts_with("cadence_value: ") && e.contains("minimum of 60 s"),
            "{e}"
        );
        let e = err(new_job(CadenceKind::Cron, "0 25 * * *"));
        assert!(e.starts_with("cadence_value: "), "{e}");
        let e = err(NewJob {
            timezone: Some("Europe/Atlantis".into()),
            ..new_job(CadenceKind::Cron, "0 8 * * *")
        });
        assert!(e.starts_with("timezone: "), "{e}");
        let e = err(new_job(CadenceKind::Once, "2001-01-01T00:00:00Z"));
        assert!(
            e.starts_with("cadence_value: ") && e.contains("in the past"),
            "{e}"
        );
        let e = err(NewJob {
            max_turns: Some(11),
            ..new_job(CadenceKind::Interval, "60")
        });
        assert!(
            e.starts_with("max_turns: 11 is over the limit of 10"),
            "{e}"
        );
        s.create(new_job(CadenceKind::Interval, "60"), &origin(), "default")
            .unwrap();
        let e = err(new_job(CadenceKind::Interval, "60"));
        assert!(e.contains("max_jobs_per_user"), "{e}");
    }

    #[test]
    fn a_money_budget_is_refused_when_the_model_is_not_priced() {
        let (_d, s) = sched(SchedulerConfig::default());
        let s = Arc::new(s);
        let unpriced = s.jobs_for(origin(), "default", Some("local-llm".into()));
        let e = unpriced
            .create(NewJob {
                max_cost: Some(0.1),
                ..new_job(CadenceKind::Interval, "3600")
            })
            .unwrap_err();
        assert!(
            e.starts_with("max_cost: ")
                && e.contains("model `local-llm` has no prices")
                && e.contains("leave max_cost out"),
            "{e}"
        );
        // Without one it is made (the runs then say their cost is unknown); with a
        // priced model a money budget is taken.
        unpriced
            .create(new_job(CadenceKind::Interval, "3600"))
            .unwrap();
        let priced = s.jobs_for(origin(), "default", None);
        let j = priced
            .create(NewJob {
                max_cost: Some(0.1),
                ..new_job(CadenceKind::Interval, "3600")
            })
            .unwrap();
        assert_eq!(j.max_cost, Some(0.1));
    }

    #[test]
    fn pause_resume_and_output_pages_by_characters() {
        let (_d, s) = sched(SchedulerConfig::default());
        let j = s
            .create(new_job(CadenceKind::Interval, "3600"), &origin(), "default")
            .unwrap();
        let p = s.set_status(&j.id, false).unwrap();
        assert_eq!((p.status, p.next_run.clone()), (JobStatus::Paused, None));
        let a = s.set_status(&j.id, true).unwrap();
        assert_eq!(a.status, JobStatus::Active);
        assert!(a.next_run.is_some());
        let run = RunRow {
            id: "run-1".into(),
            job_id: j.id.clone(),
            scheduled_ms: 0,
            started_ms: 0,
            ended_ms: Some(1),
            status: "succeeded".into(),
            turns: 1,
            cost: None,
            output: "ä".repeat(300),
            detail: String::new(),
            delivered: String::new(),
        };
        s.store.record_run(&run).unwrap();
        let page = s.run_output("run-1", 250, 200).unwrap();
        assert_eq!((page.text.chars().count(), page.total_chars), (50, 300));
        assert_eq!(s.runs(&j.id, 5).unwrap()[0].output_chars, 300);
        assert!(
            s.run_output("run-1", 0, 10)
                .unwrap_err()
                .starts_with("max_chars")
        );
        s.delete(&j.id).unwrap();
        assert!(s.delete(&j.id).unwrap_err().starts_with("schedule_id"));
    }
}
