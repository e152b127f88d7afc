//! `schedule_search` (profile scheduler): the calling user's jobs, filtered and paged.

use oxydra_sdk::scheduler::{self, CadenceType, JobStatus, Notification, Query};
use oxydra_sdk::{ToolEnum, ToolError, tool};

#[derive(ToolEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Active,
    Paused,
    Finished,
}

/// List the user's scheduled jobs, newest last, optionally filtered by name (substring,
/// any case), status, cadence type or notification policy. Returns `total` matching
/// jobs, this page of them, and how many `remaining` after it (page with `offset`).
#[tool(tier = "read-only")]
fn schedule_search(
    /// Jobs whose name contains this
    #[arg(max_length = 80)]
    name: Option<String>,
    /// active, paused or finished (a one-off that ran)
    status: Option<Status>,
    /// cron, once or interval
    cadence_type: Option<CadenceType>,
    /// always, conditional or never
    notification: Option<Notification>,
    /// Jobs per page, 1 to 50
    #[arg(minimum = 1, maximum = 50, default = 20)]
    limit: u32,
    /// Jobs to skip
    #[arg(minimum = 0, default = 0)]
    offset: u32,
) -> Result<String, ToolError> {
    let q = Query {
        name,
        status: status.map(|s| match s {
            Status::Active => JobStatus::Active,
            Status::Paused => JobStatus::Paused,
            Status::Finished => JobStatus::Finished,
        }),
        cadence_kind: cadence_type.map(Into::into),
        notify: notification.map(Into::into),
        limit,
        offset,
    };
    let page = scheduler::search(&q).map_err(ToolError::InvalidArguments)?;
    let shown = page.jobs.len() as u32;
    let remaining = page.total.saturating_sub(offset.saturating_add(shown));
    let mut out = serde_json::json!({
        "total": page.total,
        "remaining": remaining,
        "jobs": page.jobs.iter().map(scheduler::job_json).collect::<Vec<_>>(),
    });
    if remaining > 0 {
        out["hint"] = format!(
            "{remaining} more: call again with offset {}",
            offset + shown
        )
        .into();
    }
    Ok(out.to_string())
}

oxydra_sdk::export_tool!(ScheduleSearch);
