//! Scheduled jobs and their runs. The store keeps rows; what a cadence, a status or an
//! origin means is the scheduler's (host/session). Every read-then-write is one
//! `BEGIN IMMEDIATE` transaction or one statement, so two processes never start the
//! same tick twice.

use super::{Fail, Liveness, ProcessId, Store, StoreError, immediate, now_ms};
use libsql::{Connection, Row, params};

/// A job as stored. `status` is `active`, `paused` or `finished` (a one-off that ran);
/// `origin` is the scheduler's JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    pub id: String,
    pub name: String,
    pub goal: String,
    /// The agent its runs use.
    pub agent: String,
    pub cadence_kind: String,
    pub cadence_value: String,
    pub timezone: String,
    pub notify: String,
    pub status: String,
    /// Why it is paused (by whom, after which failures); empty otherwise.
    pub status_detail: String,
    pub origin: String,
    pub max_turns: u32,
    pub max_cost: Option<f64>,
    pub max_wall_secs: u64,
    /// The tick it is due at next (Unix ms); `None` when none is planned.
    pub next_run_ms: Option<i64>,
    pub consecutive_failures: u32,
    /// The session its runs use, once it has run.
    pub session: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// One run of a job (or one tick that was skipped). `status`: `running`, `succeeded`,
/// `failed`, `budget`, `skipped`, `interrupted`.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRow {
    pub id: String,
    pub job_id: String,
    /// The tick it is for.
    pub scheduled_ms: i64,
    pub started_ms: i64,
    pub ended_ms: Option<i64>,
    pub status: String,
    pub turns: u32,
    pub cost: Option<f64>,
    /// The full output (the answer, or what was said before it stopped).
    pub output: String,
    pub detail: String,
    /// Where the result went (`gateway: 1 client`, `telegram`, or why it stayed here).
    pub delivered: String,
}

pub(crate) const JOB_TABLES: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    goal TEXT NOT NULL,
    agent TEXT NOT NULL,
    cadence_kind TEXT NOT NULL,
    cadence_value TEXT NOT NULL,
    timezone TEXT NOT NULL,
    notify TEXT NOT NULL,
    status TEXT NOT NULL,
    status_detail TEXT NOT NULL DEFAULT '',
    origin TEXT NOT NULL,
    max_turns INTEGER NOT NULL,
    max_cost REAL,
    max_wall_secs INTEGER NOT NULL,
    next_run_ms INTEGER,
    consecutive_failures INTEGER NOT NULL DEFAULT 0,
    session TEXT,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_due ON jobs (status, next_run_ms);
CREATE TABLE IF NOT EXISTS job_runs (
    id TEXT PRIMARY KEY,
    job_id TEXT NOT NULL,
    scheduled_ms INTEGER NOT NULL,
    started_ms INTEGER NOT NULL,
    ended_ms INTEGER,
    status TEXT NOT NULL,
    turns INTEGER NOT NULL DEFAULT 0,
    cost REAL,
    output TEXT NOT NULL DEFAULT '',
    detail TEXT NOT NULL DEFAULT '',
    delivered TEXT NOT NULL DEFAULT '',
    pid INTEGER NOT NULL DEFAULT 0,
    pid_ns TEXT NOT NULL DEFAULT '',
    pid_start TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS job_runs_by_job ON job_runs (job_id, started_ms);
";

const JOB_COLUMNS: &str = "id, name, goal, agent, cadence_kind, cadence_value, timezone, notify, status, \
status_detail, origin, max_turns, max_cost, max_wall_secs, next_run_ms, consecutive_failures, session, \
created_ms, updated_ms";

const RUN_COLUMNS: &str = "id, job_id, scheduled_ms, started_ms, ended_ms, status, turns, cost, output, detail, delivered";

fn u32_of(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}

/// A job from a row of `SELECT {JOB_COLUMNS}` (the one place the column order is read).
fn job_row(r: &Row) -> Result<JobRow, libsql::Error> {
    Ok(JobRow {
        id: r.get(0)?,
        name: r.get(1)?,
        goal: r.get(2)?,
        agent: r.get(3)?,
        cadence_kind: r.get(4)?,
        cadence_value: r.get(5)?,
        timezone: r.get(6)?,
        notify: r.get(7)?,
        status: r.get(8)?,
        status_detail: r.get(9)?,
        origin: r.get(10)?,
        max_turns: u32_of(r.get(11)?),
        max_cost: r.get(12)?,
        max_wall_secs: u64::try_from(r.get::<i64>(13)?.max(0)).unwrap_or(0),
        next_run_ms: r.get(14)?,
        consecutive_failures: u32_of(r.get(15)?),
        session: r.get(16)?,
        created_ms: r.get(17)?,
        updated_ms: r.get(18)?,
    })
}

fn run_of(r: &Row) -> Result<RunRow, libsql::Error> {
    Ok(RunRow {
        id: r.get(0)?,
        job_id: r.get(1)?,
        scheduled_ms: r.get(2)?,
        started_ms: r.get(3)?,
        ended_ms: r.get(4)?,
        status: r.get(5)?,
        turns: u32_of(r.get(6)?),
        cost: r.get(7)?,
        output: r.get(8)?,
        detail: r.get(9)?,
        delivered: r.get(10)?,
    })
}

async fn jobs_where(
    c: &Connection,
    clause: &str,
    p: impl libsql::params::IntoParams,
) -> Result<Vec<JobRow>, Fail> {
    let mut rows = c
        .query(&format!("SELECT {JOB_COLUMNS} FROM jobs {clause}"), p)
        .await?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().await? {
        out.push(job_row(&r)?);
    }
    Ok(out)
}

async fn runs_where(
    c: &Connection,
    clause: &str,
    p: impl libsql::params::IntoParams,
) -> Result<Vec<RunRow>, Fail> {
    let mut rows = c
        .query(&format!("SELECT {RUN_COLUMNS} FROM job_runs {clause}"), p)
        .await?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().await? {
        out.push(run_of(&r)?);
    }
    Ok(out)
}

async fn insert_run(c: &Connection, run: &RunRow, me: &ProcessId) -> Result<(), Fail> {
    c.execute(
        "INSERT INTO job_runs (id, job_id, scheduled_ms, started_ms, ended_ms, status, turns, cost, output, detail, delivered, pid, pid_ns, pid_start) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        params![
            run.id.as_str(),
            run.job_id.as_str(),
            run.scheduled_ms,
            run.started_ms,
            run.ended_ms,
            run.status.as_str(),
            i64::from(run.turns),
            run.cost,
            run.output.as_str(),
            run.detail.as_str(),
            run.delivered.as_str(),
            i64::from(me.pid),
            me.ns.as_str(),
            me.start.as_str()
        ],
    )
    .await?;
    Ok(())
}

/// The job's next tick, as [`Store::claim_tick`] is told it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextTick {
    At(i64),
    /// No further tick: a one-off job is finished.
    Finished,
}

impl Store {
    /// Add a job unless the store already holds `max_jobs`; false when it is full.
    pub fn insert_job(&self, job: &JobRow, max_jobs: u32) -> Result<bool, StoreError> {
        self.exec(async |c| {
            immediate(c, async |c| {
                let mut rows = c.query("SELECT COUNT(*) FROM jobs", ()).await?;
                let n: i64 = match rows.next().await? {
                    Some(r) => r.get(0)?,
                    None => 0,
                };
                drop(rows);
                if n >= i64::from(max_jobs) {
                    return Ok(false);
                }
                c.execute(
                    &format!(
                        "INSERT INTO jobs ({JOB_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)"
                    ),
                    params![
                        job.id.as_str(),
                        job.name.as_str(),
                        job.goal.as_str(),
                        job.agent.as_str(),
                        job.cadence_kind.as_str(),
                        job.cadence_value.as_str(),
                        job.timezone.as_str(),
                        job.notify.as_str(),
                        job.status.as_str(),
                        job.status_detail.as_str(),
                        job.origin.as_str(),
                        i64::from(job.max_turns),
                        job.max_cost,
                        i64::try_from(job.max_wall_secs).unwrap_or(i64::MAX),
                        job.next_run_ms,
                        i64::from(job.consecutive_failures),
                        job.session.clone(),
                        job.created_ms,
                        job.updated_ms
                    ],
                )
                .await?;
                Ok(true)
            })
            .await
        })
    }

    pub fn job(&self, id: &str) -> Result<Option<JobRow>, StoreError> {
        self.exec(async |c| Ok(jobs_where(c, "WHERE id = ?1", params![id]).await?.pop()))
    }

    /// Every job, oldest first.
    pub fn jobs(&self) -> Result<Vec<JobRow>, StoreError> {
        self.exec(async |c| jobs_where(c, "ORDER BY created_ms, id", ()).await)
    }

    /// Active jobs whose next tick is at or before `now_ms`, earliest first.
    pub fn due_jobs(&self, now_ms: i64) -> Result<Vec<JobRow>, StoreError> {
        self.exec(async |c| {
            jobs_where(
                c,
                "WHERE status = 'active' AND next_run_ms IS NOT NULL AND next_run_ms <= ?1 ORDER BY next_run_ms, id",
                params![now_ms],
            )
            .await
        })
    }

    /// Write a job's editable fields (everything but its failure count, session and
    /// creation time).
    pub fn update_job(&self, job: &JobRow) -> Result<bool, StoreError> {
        let now = now_ms();
        self.exec(async |c| {
            let n = c
                .execute(
                    "UPDATE jobs SET name = ?2, goal = ?3, cadence_kind = ?4, cadence_value = ?5, timezone = ?6, \
                     notify = ?7, status = ?8, status_detail = ?9, next_run_ms = ?10, consecutive_failures = ?11, \
                     updated_ms = ?12 WHERE id = ?1",
                    params![
                        job.id.as_str(),
                        job.name.as_str(),
                        job.goal.as_str(),
                        job.cadence_kind.as_str(),
                        job.cadence_value.as_str(),
                        job.timezone.as_str(),
                        job.notify.as_str(),
                        job.status.as_str(),
                        job.status_detail.as_str(),
                        job.next_run_ms,
                        i64::from(job.consecutive_failures),
                        now
                    ],
                )
                .await?;
            Ok(n > 0)
        })
    }

    pub fn set_job_session(&self, id: &str, session: &str) -> Result<(), StoreError> {
        self.exec(async |c| {
            c.execute(
                "UPDATE jobs SET session = ?2 WHERE id = ?1",
                params![id, session],
            )
            .await?;
            Ok(())
        })
    }

    /// Delete a job and its runs; false if there was none.
    pub fn delete_job(&self, id: &str) -> Result<bool, StoreError> {
        self.exec(async |c| {
            immediate(c, async |c| {
                c.execute("DELETE FROM job_runs WHERE job_id = ?1", params![id])
                    .await?;
                Ok(c.execute("DELETE FROM jobs WHERE id = ?1", params![id])
                    .await?
                    > 0)
            })
            .await
        })
    }

    /// Take the tick a job is due at: if it is still active and still due at
    /// `run.scheduled_ms`'s tick `due_ms`, record `run` (running, or a skipped tick with
    /// its end set) and move the job to `next`, in one transaction. False when another
    /// process (or an edit) moved the job first: nothing is recorded.
    pub fn claim_tick(
        &self,
        due_ms: i64,
        run: &RunRow,
        next: NextTick,
    ) -> Result<bool, StoreError> {
        let now = now_ms();
        self.exec(async |c| {
            immediate(c, async |c| {
                let (next_ms, status_sql) = match next {
                    NextTick::At(t) => (Some(t), "status"),
                    NextTick::Finished => (None, "'finished'"),
                };
                let n = c
                    .execute(
                        &format!(
                            "UPDATE jobs SET next_run_ms = ?3, status = {status_sql}, updated_ms = ?4 \
                             WHERE id = ?1 AND status = 'active' AND next_run_ms = ?2"
                        ),
                        params![run.job_id.as_str(), due_ms, next_ms, now],
                    )
                    .await?;
                if n == 0 {
                    return Ok(false);
                }
                insert_run(c, run, &self.me).await?;
                Ok(true)
            })
            .await
        })
    }

    /// Record a skipped tick that moved no job (the job was already past it).
    pub fn record_run(&self, run: &RunRow) -> Result<(), StoreError> {
        self.exec(async |c| insert_run(c, run, &self.me).await)
    }

    /// End a run; then count it in the job's consecutive failures (`Some(true)`), reset
    /// them (`Some(false)`) or leave them (`None`: it was interrupted), and return the
    /// count.
    pub fn finish_run(&self, run: &RunRow, failed: Option<bool>) -> Result<u32, StoreError> {
        let now = now_ms();
        self.exec(async |c| {
            immediate(c, async |c| {
                c.execute(
                    "UPDATE job_runs SET ended_ms = ?2, status = ?3, turns = ?4, cost = ?5, output = ?6, detail = ?7 WHERE id = ?1",
                    params![
                        run.id.as_str(),
                        run.ended_ms.unwrap_or(now),
                        run.status.as_str(),
                        i64::from(run.turns),
                        run.cost,
                        run.output.as_str(),
                        run.detail.as_str()
                    ],
                )
                .await?;
                let mut rows = c
                    .query(
                        "UPDATE jobs SET consecutive_failures = CASE WHEN ?2 IS NULL THEN consecutive_failures \
                         WHEN ?2 THEN consecutive_failures + 1 ELSE 0 END, \
                         updated_ms = ?3 WHERE id = ?1 RETURNING consecutive_failures",
                        params![run.job_id.as_str(), failed, now],
                    )
                    .await?;
                Ok(match rows.next().await? {
                    Some(r) => u32_of(r.get(0)?),
                    None => 0,
                })
            })
            .await
        })
    }

    /// Pause an active job, saying why; false if it was not active.
    pub fn pause_job(&self, id: &str, why: &str) -> Result<bool, StoreError> {
        let now = now_ms();
        self.exec(async |c| {
            Ok(c.execute(
                "UPDATE jobs SET status = 'paused', status_detail = ?2, updated_ms = ?3 WHERE id = ?1 AND status = 'active'",
                params![id, why, now],
            )
            .await?
                > 0)
        })
    }

    pub fn set_run_delivered(&self, run: &str, delivered: &str) -> Result<(), StoreError> {
        self.exec(async |c| {
            c.execute(
                "UPDATE job_runs SET delivered = ?2 WHERE id = ?1",
                params![run, delivered],
            )
            .await?;
            Ok(())
        })
    }

    /// A job's latest runs, newest first.
    pub fn runs(&self, job: &str, limit: u32) -> Result<Vec<RunRow>, StoreError> {
        self.exec(async |c| {
            runs_where(
                c,
                "WHERE job_id = ?1 ORDER BY started_ms DESC, rowid DESC LIMIT ?2",
                params![job, i64::from(limit)],
            )
            .await
        })
    }

    /// The job's newest run still marked running (by this process or another), if any.
    /// Not simply the newest run: a tick skipped while it runs is newer.
    pub fn running_run(&self, job: &str) -> Result<Option<RunRow>, StoreError> {
        self.exec(async |c| {
            Ok(runs_where(
                c,
                "WHERE job_id = ?1 AND status = 'running' ORDER BY started_ms DESC, rowid DESC LIMIT 1",
                params![job],
            )
            .await?
            .pop())
        })
    }

    pub fn run(&self, id: &str) -> Result<Option<RunRow>, StoreError> {
        self.exec(async |c| Ok(runs_where(c, "WHERE id = ?1", params![id]).await?.pop()))
    }

    /// Keep a job's newest `keep` runs and, counted apart, its newest `keep` skipped
    /// ticks (runs still running are never pruned); returns how many went. Apart, so
    /// that a burst of skipped ticks (a slow run, a long downtime with `skip`) never
    /// pushes the real runs out of the history.
    pub fn prune_runs(&self, job: &str, keep: u32) -> Result<u64, StoreError> {
        self.exec(async |c| {
            Ok(c.execute(
                "DELETE FROM job_runs WHERE job_id = ?1 AND status != 'running' AND ( \
                 (status = 'skipped' AND id NOT IN (SELECT id FROM job_runs WHERE job_id = ?1 \
                   AND status = 'skipped' ORDER BY started_ms DESC, rowid DESC LIMIT ?2)) \
                 OR (status != 'skipped' AND id NOT IN (SELECT id FROM job_runs WHERE job_id = ?1 \
                   AND status != 'skipped' ORDER BY started_ms DESC, rowid DESC LIMIT ?2)))",
                params![job, i64::from(keep)],
            )
            .await?)
        })
    }

    /// Runs still marked running whose process is gone (`kill -9`, a restart): marked
    /// interrupted, with their end. A run of a live process (this one, or another still
    /// running on this machine) is left alone. Returns the runs marked.
    pub fn mark_runs_interrupted(&self) -> Result<Vec<RunRow>, StoreError> {
        let now = now_ms();
        self.exec(async |c| {
            immediate(c, async |c| {
                let mut rows = c
                    .query(
                        &format!(
                            "SELECT {RUN_COLUMNS}, pid, pid_ns, pid_start FROM job_runs WHERE status = 'running'"
                        ),
                        (),
                    )
                    .await?;
                let mut gone = Vec::new();
                while let Some(r) = rows.next().await? {
                    let p = ProcessId {
                        pid: u32::try_from(r.get::<i64>(11)?).unwrap_or(0),
                        ns: r.get(12)?,
                        start: r.get(13)?,
                    };
                    let mine = p == self.me;
                    if !mine && p.liveness(&self.me) != Liveness::Alive {
                        gone.push(run_of(&r)?);
                    }
                }
                drop(rows);
                for run in &mut gone {
                    run.status = "interrupted".into();
                    run.ended_ms = Some(now);
                    run.detail = "interrupted: the process running it ended (restart or kill) before it finished".into();
                    c.execute(
                        "UPDATE job_runs SET status = ?2, ended_ms = ?3, detail = ?4 WHERE id = ?1",
                        params![run.id.as_str(), run.status.as_str(), now, run.detail.as_str()],
                    )
                    .await?;
                }
                Ok(gone)
            })
            .await
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn job(id: &str, next: Option<i64>) -> JobRow {
        JobRow {
            id: id.into(),
            name: "n".into(),
            goal: "g".into(),
            agent: "default".into(),
            cadence_kind: "interval".into(),
            cadence_value: "60".into(),
            timezone: "UTC".into(),
            notify: "always".into(),
            status: "active".into(),
            status_detail: String::new(),
            origin: "{}".into(),
            max_turns: 3,
            max_cost: Some(0.5),
            max_wall_secs: 60,
            next_run_ms: next,
            consecutive_failures: 0,
            session: None,
            created_ms: 1,
            updated_ms: 1,
        }
    }

    fn run(id: &str, job: &str, at: i64, status: &str) -> RunRow {
        RunRow {
            id: id.into(),
            job_id: job.into(),
            scheduled_ms: at,
            started_ms: at,
            ended_ms: None,
            status: status.into(),
            turns: 0,
            cost: None,
            output: String::new(),
            detail: String::new(),
            delivered: String::new(),
        }
    }

    #[test]
    fn jobs_survive_reopening_and_a_tick_is_claimed_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let s = Store::open(&path).unwrap();
        assert!(s.insert_job(&job("j1", Some(100)), 2).unwrap());
        assert!(s.insert_job(&job("j2", Some(500)), 2).unwrap());
        assert!(!s.insert_job(&job("j3", Some(100)), 2).unwrap(), "full");
        assert_eq!(s.due_jobs(200).unwrap().len(), 1);
        let other = Store::open(&path).unwrap();
        assert!(
            s.claim_tick(100, &run("r1", "j1", 100, "running"), NextTick::At(160))
                .unwrap()
        );
        // The same tick again (another process, a second loop): nothing recorded.
        assert!(
            !other
                .claim_tick(100, &run("r2", "j1", 100, "running"), NextTick::At(160))
                .unwrap()
        );
        assert_eq!(other.job("j1").unwrap().unwrap().next_run_ms, Some(160));
        let mut r = run("r1", "j1", 100, "failed");
        r.output = "ünïcode ✓".into();
        assert_eq!(s.finish_run(&r, Some(true)).unwrap(), 1);
        assert_eq!(s.finish_run(&r, Some(true)).unwrap(), 2);
        assert_eq!(s.finish_run(&r, None).unwrap(), 2);
        assert_eq!(s.finish_run(&r, Some(false)).unwrap(), 0);
        drop(s);
        let s = Store::open(&path).unwrap();
        assert_eq!(s.run("r1").unwrap().unwrap().output, "ünïcode ✓");
        assert!(
            s.claim_tick(500, &run("r3", "j2", 500, "running"), NextTick::Finished)
                .unwrap()
        );
        assert_eq!(s.job("j2").unwrap().unwrap().status, "finished");
        assert!(s.due_jobs(i64::MAX).unwrap().iter().all(|j| j.id != "j2"));
        assert!(s.delete_job("j1").unwrap());
        assert!(s.run("r1").unwrap().is_none(), "runs go with their job");
    }

    #[test]
    fn a_burst_of_skipped_ticks_never_pushes_real_runs_out_of_the_history() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("store.db")).unwrap();
        s.insert_job(&job("j", Some(0)), 10).unwrap();
        for (i, status) in ["succeeded", "failed", "budget", "interrupted"]
            .into_iter()
            .enumerate()
        {
            s.record_run(&run(&format!("real{i}"), "j", i as i64, status))
                .unwrap();
        }
        // A slow run: many ticks skipped after the real runs.
        for i in 0..30 {
            s.record_run(&run(&format!("skip{i:02}"), "j", 100 + i, "skipped"))
                .unwrap();
        }
        s.record_run(&run("now", "j", 200, "running")).unwrap();
        // 3 real runs and 3 skipped ticks are kept, counted apart: the oldest real run
        // (real0, real1: `now` is one of the 3) and 27 skipped ticks go.
        assert_eq!(s.prune_runs("j", 3).unwrap(), 2 + 27);
        let mut ids: Vec<String> = s.runs("j", 50).unwrap().into_iter().map(|r| r.id).collect();
        ids.sort();
        assert_eq!(
            ids,
            ["now", "real2", "real3", "skip27", "skip28", "skip29"],
            "the newest real runs survive the burst"
        );
    }

    #[test]
    fn history_is_pruned_to_the_newest_and_dead_runs_are_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("store.db")).unwrap();
        s.insert_job(&job("j", Some(0)), 10).unwrap();
        for i in 0..5 {
            s.record_run(&run(&format!("r{i}"), "j", i, "skipped"))
                .unwrap();
        }
        assert_eq!(s.prune_runs("j", 2).unwrap(), 3);
        let ids: Vec<String> = s.runs("j", 10).unwrap().into_iter().map(|r| r.id).collect();
        assert_eq!(ids, ["r4", "r3"]);
        assert_eq!(s.prune_runs("j", 2).unwrap(), 0, "nothing more to prune");
        // A running run of this process stays; one recorded by a process that is gone
        // (pid 0 in this namespace never exists) is interrupted.
        s.record_run(&run("mine", "j", 10, "running")).unwrap();
        // A tick skipped while it runs is newer, yet the run is still found in flight.
        s.record_run(&run("later", "j", 12, "skipped")).unwrap();
        assert_eq!(s.runs("j", 1).unwrap()[0].id, "later");
        assert_eq!(s.running_run("j").unwrap().unwrap().id, "mine");
        s.exec(async |c| {
            c.execute(
                "INSERT INTO job_runs (id, job_id, scheduled_ms, started_ms, status, pid, pid_ns, pid_start) \
                 VALUES ('dead', 'j', 11, 11, 'running', 999999999, ?1, '1')",
                params![s.me.ns.as_str()],
            )
            .await?;
            Ok(())
        })
        .unwrap();
        let gone = s.mark_runs_interrupted().unwrap();
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].id, "dead");
        assert_eq!(s.run("dead").unwrap().unwrap().status, "interrupted");
        assert_eq!(s.run("mine").unwrap().unwrap().status, "running");
    }
}
