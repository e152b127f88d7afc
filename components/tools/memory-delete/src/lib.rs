//! `memory_delete` (profile memory): delete a note.

use oxydra_sdk::memory;
use oxydra_sdk::{ToolError, tool};

/// Delete a saved note from your long-term memory of this user, for a note that is wrong
/// or no longer wanted (to change one, use memory_update). Find the id with
/// memory_search. Conversations and session summaries cannot be deleted here.
#[tool(tier = "side-effecting")]
fn memory_delete(
    /// The note's id (`note-…`, from memory_search)
    #[arg(min_length = 1, max_length = 64)]
    note_id: String,
) -> Result<String, ToolError> {
    let id = note_id.trim();
    memory::delete(id).map_err(memory::tool_error)?;
    Ok(serde_json::json!({"deleted": id}).to_string())
}

oxydra_sdk::export_tool!(MemoryDelete);
