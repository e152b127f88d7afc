//! `schedule_edit` (profile scheduler): change a job; only the fields given change.

use oxydra_sdk::scheduler::{self, CadenceType, JobStatus, Notification, Patch};
use oxydra_sdk::{ToolEnum, ToolError, tool};

#[derive(ToolEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Active,
    Paused,
}

/// Change a scheduled job: only the fields given change. `status` paused stops its
/// runs; active resumes it (its next time is after now, and its failure count starts
/// again). `cadence_type` and `cadence_value` come together. Returns the job.
// Each argument is one of the tool's parameters (its JSON Schema is derived from them).
#[allow(clippy::too_many_arguments)]
#[tool(tier = "side-effecting")]
fn schedule_edit(
    /// The job's id (from schedule_create or schedule_search)
    #[arg(min_length = 1, max_length = 64)]
    schedule_id: String,
    #[arg(max_length = 80)] name: Option<String>,
    #[arg(max_length = 8000)] goal: Option<String>,
    /// cron, once or interval (with cadence_value)
    cadence_type: Option<CadenceType>,
    /// The cron expression, the RFC 3339 time, or the interval in seconds
    #[arg(max_length = 200)]
    cadence_value: Option<String>,
    /// IANA time zone, e.g. Europe/Berlin
    #[arg(max_length = 64)]
    timezone: Option<String>,
    /// always, conditional or never
    notification: Option<Notification>,
    /// active or paused
    status: Option<Status>,
) -> Result<String, ToolError> {
    let patch = Patch {
        id: schedule_id,
        name,
        goal,
        cadence_kind: cadence_type.map(Into::into),
        cadence_value,
        timezone,
        notify: notification.map(Into::into),
        status: status.map(|s| match s {
            Status::Active => JobStatus::Active,
            Status::Paused => JobStatus::Paused,
        }),
    };
    let j = scheduler::edit(&patch).map_err(ToolError::InvalidArguments)?;
    Ok(serde_json::json!({"updated": scheduler::job_json(&j)}).to_string())
}

oxydra_sdk::export_tool!(ScheduleEdit);
