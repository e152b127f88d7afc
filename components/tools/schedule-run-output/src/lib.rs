//! `schedule_run_output` (profile scheduler): page through a run's full output.

use oxydra_sdk::scheduler;
use oxydra_sdk::{ToolError, tool};

/// A page of a scheduled run's full output (its answer, or what it said before it
/// stopped), `max_chars` characters from `offset`. The answer says how many characters
/// there are in all and where the next page starts.
#[tool(tier = "read-only")]
fn schedule_run_output(
    /// The run's id (from schedule_runs)
    #[arg(min_length = 1, max_length = 64)]
    run_id: String,
    /// Characters to skip
    #[arg(minimum = 0, default = 0)]
    offset: u32,
    /// Characters to return, 200 to 8000
    #[arg(minimum = 200, maximum = 8000, default = 4000)]
    max_chars: u32,
) -> Result<String, ToolError> {
    let p =
        scheduler::run_output(&run_id, offset, max_chars).map_err(ToolError::InvalidArguments)?;
    let next = offset.saturating_add(p.text.chars().count() as u32);
    let mut out = serde_json::json!({
        "run_id": p.run,
        "offset": p.offset,
        "total_chars": p.total_chars,
        "text": p.text,
    });
    if next < p.total_chars {
        out["next_offset"] = next.into();
    }
    Ok(out.to_string())
}

oxydra_sdk::export_tool!(ScheduleRunOutput);
