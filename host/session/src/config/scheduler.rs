//! `[scheduler]`: the durable scheduler's limits and defaults. Every key is read: by the
//! tools' jobs service (creation limits and per-run budget defaults), by the executor in
//! `serve` (polling, concurrency, missed ticks, pausing, history), and by tool assembly
//! (`enabled`).

use serde::{Deserialize, Serialize};

type KeyError = (String, String);

/// What a job does with ticks missed while no `serve` ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MissedTicks {
    /// One run for all of them, as soon as `serve` is back.
    RunOnce,
    /// None: one skipped run is recorded, and the job waits for its next tick.
    Skip,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerConfig {
    /// The schedule_* tools are offered and `serve` runs due jobs. Off: no tools, no runs
    /// (jobs stay stored).
    pub enabled: bool,
    /// How often `serve` looks for due jobs and finished runs.
    pub poll_interval_secs: u64,
    /// Runs in flight at once, over all jobs (each job has at most one).
    pub max_concurrent: u32,
    /// Jobs a user may have.
    pub max_jobs_per_user: u32,
    /// The smallest interval of an `interval` job.
    pub min_interval_secs: u64,
    /// The time zone of a cron job that names none.
    pub default_timezone: String,
    /// Per-run budgets: defaults and caps (a job may ask for less, never more).
    pub max_turns: u32,
    /// US dollars; enforced only when the catalog prices the agent's model (otherwise
    /// an explicit `max_cost` is refused at creation, and runs note that their cost is
    /// unknown).
    pub max_cost: f64,
    pub max_wall_secs: u64,
    /// Runs kept per job, and skipped ticks kept per job counted apart (a burst of
    /// skipped ticks never pushes real runs out); older ones are pruned.
    pub max_run_history: u32,
    /// Consecutive failed runs after which a job is paused (and its origin told).
    pub pause_after_failures: u32,
    pub missed_ticks: MissedTicks,
    /// A tick this late (because no `serve` ran, or it was busy) counts as missed.
    pub missed_grace_secs: u64,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            enabled: true,
            poll_interval_secs: 5,
            max_concurrent: 2,
            max_jobs_per_user: 50,
            min_interval_secs: 60,
            default_timezone: "UTC".into(),
            max_turns: 10,
            max_cost: 0.5,
            max_wall_secs: 600,
            max_run_history: 20,
            pause_after_failures: 5,
            missed_ticks: MissedTicks::RunOnce,
            missed_grace_secs: 120,
        }
    }
}

impl SchedulerConfig {
    pub fn validate(&self) -> Result<(), KeyError> {
        let at_least_1 = [
            ("scheduler.poll_interval_secs", self.poll_interval_secs),
            ("scheduler.max_concurrent", u64::from(self.max_concurrent)),
            (
                "scheduler.max_jobs_per_user",
                u64::from(self.max_jobs_per_user),
            ),
            ("scheduler.min_interval_secs", self.min_interval_secs),
            ("scheduler.max_turns", u64::from(self.max_turns)),
            ("scheduler.max_wall_secs", self.max_wall_secs),
            ("scheduler.max_run_history", u64::from(self.max_run_history)),
            (
                "scheduler.pause_after_failures",
                u64::from(self.pause_after_failures),
            ),
        ];
        for (key, v) in at_least_1 {
            if v == 0 {
                return Err((key.into(), "must be at least 1".into()));
            }
        }
        if self.poll_interval_secs > 3600 {
            return Err((
                "scheduler.poll_interval_secs".into(),
                "must be at most 3600".into(),
            ));
        }
        if !(self.max_cost.is_finite() && self.max_cost > 0.0) {
            return Err((
                "scheduler.max_cost".into(),
                format!(
                    "must be a positive amount of money (e.g. 0.50), got {}",
                    self.max_cost
                ),
            ));
        }
        if let Err(r) = crate::scheduler::cadence::zone(&self.default_timezone) {
            return Err(("scheduler.default_timezone".into(), r.message));
        }
        if self.missed_grace_secs < self.poll_interval_secs {
            return Err((
                "scheduler.missed_grace_secs".into(),
                format!(
                    "must be at least scheduler.poll_interval_secs ({}): a tick is found only at a poll",
                    self.poll_interval_secs
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::AgentConfig;

    fn key_of(toml_text: &str) -> String {
        let cfg: AgentConfig = toml::from_str(toml_text).unwrap();
        cfg.validate().unwrap_err().0
    }

    #[test]
    fn keys_are_checked_and_unknown_ones_refused() {
        let cfg: AgentConfig = toml::from_str("[scheduler]\nmissed_ticks = \"skip\"\n").unwrap();
        assert_eq!(cfg.scheduler.missed_ticks, MissedTicks::Skip);
        assert!(SchedulerConfig::default().validate().is_ok());
        assert_eq!(
            key_of("[scheduler]\npoll_interval_secs = 0\n"),
            "scheduler.poll_interval_secs"
        );
        assert_eq!(
            key_of("[scheduler]\ndefault_timezone = \"Nowhere/Else\"\n"),
            "scheduler.default_timezone"
        );
        assert_eq!(
            key_of("[scheduler]\nmax_cost = -1.0\n"),
            "scheduler.max_cost"
        );
        assert_eq!(
            key_of("[scheduler]\npoll_interval_secs = 30\nmissed_grace_secs = 10\n"),
            "scheduler.missed_grace_secs"
        );
        let e = toml::from_str::<AgentConfig>("[scheduler]\nbogus = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("bogus"), "{e}");
        let e = toml::from_str::<AgentConfig>("[scheduler]\nmissed_ticks = \"sometimes\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("run_once") && e.contains("skip"), "{e}");
    }
}
