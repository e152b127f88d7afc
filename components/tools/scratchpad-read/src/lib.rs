//! `scratchpad_read` (profile memory): the calling session's scratchpad.

use oxydra_sdk::memory;
use oxydra_sdk::{ToolError, tool};

/// Read the scratchpad: your working list for the current session only (plans, open
/// steps, things to check), gone when the session ends. Returns its items in order;
/// an empty list when nothing was written.
#[tool(tier = "read-only")]
fn scratchpad_read() -> Result<String, ToolError> {
    let items = memory::scratchpad_read().map_err(memory::tool_error)?;
    let mut out = serde_json::json!({"items": items});
    if items.is_empty() {
        out["note"] = "the scratchpad is empty".into();
    }
    Ok(out.to_string())
}

oxydra_sdk::export_tool!(ScratchpadRead);
