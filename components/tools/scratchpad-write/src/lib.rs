//! `scratchpad_write` (profile memory): replace the calling session's scratchpad.

use oxydra_sdk::memory::{self, Item};
use oxydra_sdk::{ToolError, tool};

/// Write the scratchpad: your working list for the current session only (plans, open
/// steps, things to check), gone when the session ends; for what should outlast it, use
/// memory_save. This replaces the whole list: send every item to keep. 1 to 32 items,
/// each at most 240 characters.
#[tool(tier = "side-effecting")]
fn scratchpad_write(
    /// The whole list, in order (1 to 32 items, each at most 240 characters)
    #[arg(min_items = 1, max_items = 32)]
    items: Vec<Item>,
) -> Result<String, ToolError> {
    let items = memory::strings(items);
    memory::scratchpad_write(&items).map_err(memory::tool_error)?;
    Ok(serde_json::json!({"saved": true, "count": items.len()}).to_string())
}

oxydra_sdk::export_tool!(ScratchpadWrite);
