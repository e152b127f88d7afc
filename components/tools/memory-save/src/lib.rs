//! `memory_save` (profile memory): save a note for the calling user.

use oxydra_sdk::memory::{self, Tag};
use oxydra_sdk::{ToolError, tool};

/// Save a note to your long-term memory of this user: it persists across sessions and
/// memory_search finds it later. Save durable facts, preferences and decisions, one per
/// note, written to make sense on their own; not what only matters for this session
/// (keep that on the scratchpad). content is 1 to 8000 characters; tags at most 16,
/// each 1 to 40 characters of letters, digits, `-`, `_`, `.` or `:`. Returns the new
/// note's id.
#[tool(tier = "side-effecting")]
fn memory_save(
    /// The note (1 to 8000 characters)
    #[arg(min_length = 1, max_length = 8000)]
    content: String,
    /// Tags to find it by (at most 16, each 1 to 40 characters)
    #[arg(max_items = 16)]
    tags: Option<Vec<Tag>>,
) -> Result<String, ToolError> {
    let tags = tags.map(memory::strings).unwrap_or_default();
    let note = memory::save(&content, &tags).map_err(memory::tool_error)?;
    Ok(serde_json::json!({"id": note.id, "saved": true, "tags": note.tags}).to_string())
}

oxydra_sdk::export_tool!(MemorySave);
