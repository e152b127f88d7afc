//! `scratchpad_clear` (profile memory): empty the calling session's scratchpad.

use oxydra_sdk::memory;
use oxydra_sdk::{ToolError, tool};

/// Clear the scratchpad, your working list for the current session, when its work is
/// done. Notes saved with memory_save are not touched.
#[tool(tier = "side-effecting")]
fn scratchpad_clear() -> Result<String, ToolError> {
    memory::scratchpad_clear().map_err(memory::tool_error)?;
    Ok(serde_json::json!({"cleared": true}).to_string())
}

oxydra_sdk::export_tool!(ScratchpadClear);
