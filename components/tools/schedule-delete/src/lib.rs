//! `schedule_delete` (profile scheduler): delete a job and its run history.

use oxydra_sdk::scheduler;
use oxydra_sdk::{ToolError, tool};

/// Delete a scheduled job and its whole run history. To stop it for a while instead,
/// pause it with schedule_edit.
#[tool(tier = "side-effecting")]
fn schedule_delete(
    /// The job's id
    #[arg(min_length = 1, max_length = 64)]
    schedule_id: String,
) -> Result<String, ToolError> {
    scheduler::delete(&schedule_id).map_err(ToolError::NotFound)?;
    Ok(serde_json::json!({"deleted": schedule_id.trim()}).to_string())
}

oxydra_sdk::export_tool!(ScheduleDelete);
