//! `schedule_runs` (profile scheduler): a job's latest runs, as metadata.

use oxydra_sdk::scheduler;
use oxydra_sdk::{ToolError, tool};

/// The latest runs of a scheduled job, newest first: when each ran, how it ended
/// (succeeded, failed, budget, skipped, interrupted, running), the model calls and cost
/// it used, why it failed or was skipped, where its result went, and the length of its
/// output (read it with schedule_run_output).
#[tool(tier = "read-only")]
fn schedule_runs(
    /// The job's id
    #[arg(min_length = 1, max_length = 64)]
    schedule_id: String,
    /// Runs to show, 1 to 20
    #[arg(minimum = 1, maximum = 20, default = 5)]
    limit: u32,
) -> Result<String, ToolError> {
    let runs = scheduler::runs(&schedule_id, limit).map_err(ToolError::InvalidArguments)?;
    Ok(serde_json::json!({
        "schedule_id": schedule_id.trim(),
        "runs": runs.iter().map(scheduler::run_json).collect::<Vec<_>>(),
    })
    .to_string())
}

oxydra_sdk::export_tool!(ScheduleRuns);
