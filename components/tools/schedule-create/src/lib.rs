//! `schedule_create` (profile scheduler): schedule a goal to run later. The host keeps
//! the job for the calling user; its results go to where this turn came from.

use oxydra_sdk::scheduler::{self, CadenceType, NewJob, Notification};
use oxydra_sdk::{ToolError, tool};

/// Schedule work for later: `goal` is run as a new turn of its own at each time of the
/// cadence, while `oxydra-host serve` runs, and its answer is sent to where this
/// conversation is (this chat or session). Cadences: `cron` with a 5-field expression
/// (minute hour day-of-month month day-of-week, e.g. `0 8 * * 1-5` = 08:00 on weekdays)
/// in `timezone`; `interval` in seconds (e.g. `3600`); `once` at an RFC 3339 time with
/// its offset (e.g. `2026-05-01T09:00:00+02:00`). `notification`: `always` (default),
/// `conditional` (sent only when the run's answer starts with [NOTIFY]) or `never`
/// (kept in the job's history). Failures are announced unless `never`. Returns the job.
// Each argument is one of the tool's parameters (its JSON Schema is derived from them).
#[allow(clippy::too_many_arguments)]
#[tool(tier = "side-effecting")]
fn schedule_create(
    /// What each run should do, stated completely (the run does not see this
    /// conversation)
    #[arg(min_length = 1, max_length = 8000)]
    goal: String,
    /// cron, once or interval
    cadence_type: CadenceType,
    /// The cron expression, the RFC 3339 time, or the interval in seconds
    #[arg(min_length = 1, max_length = 200)]
    cadence_value: String,
    /// A short name (default: the goal's first words)
    #[arg(max_length = 80)]
    name: Option<String>,
    /// IANA time zone of a cron expression, e.g. Europe/Berlin (default: the operator's)
    #[arg(max_length = 64)]
    timezone: Option<String>,
    /// always, conditional or never
    notification: Option<Notification>,
    /// At most this many model calls per run (default and cap: the operator's)
    #[arg(minimum = 1)]
    max_turns: Option<u32>,
    /// At most this much money per run, in US dollars (default and cap: the operator's)
    #[arg(minimum = 0)]
    max_cost: Option<f64>,
    /// At most this many seconds per run (default and cap: the operator's)
    #[arg(minimum = 1)]
    max_wall_secs: Option<u64>,
) -> Result<String, ToolError> {
    let job = NewJob {
        goal,
        name,
        cadence_kind: cadence_type.into(),
        cadence_value,
        timezone,
        notify: notification.map(Into::into),
        max_turns,
        max_cost,
        max_wall_secs,
    };
    let j = scheduler::create(&job).map_err(ToolError::InvalidArguments)?;
    Ok(serde_json::json!({"created": scheduler::job_json(&j)}).to_string())
}

oxydra_sdk::export_tool!(ScheduleCreate);
