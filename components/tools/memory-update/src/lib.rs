//! `memory_update` (profile memory): replace a note's content, and its tags when given.

use oxydra_sdk::memory::{self, Tag};
use oxydra_sdk::{ToolError, tool};

/// Replace the content of a saved note (its id stays the same), for a fact that changed
/// or a note to correct. tags, when given, replace the note's tags (an empty list
/// removes them); without it the tags stay. content is 1 to 8000 characters; tags at
/// most 16, each 1 to 40 characters of letters, digits, `-`, `_`, `.` or `:`. Find the
/// id with memory_search. Returns the updated note.
#[tool(tier = "side-effecting")]
fn memory_update(
    /// The note's id (`note-…`, from memory_search)
    #[arg(min_length = 1, max_length = 64)]
    note_id: String,
    /// The new content (1 to 8000 characters)
    #[arg(min_length = 1, max_length = 8000)]
    content: String,
    /// The new tags (at most 16, each 1 to 40 characters); omit to keep the current ones
    #[arg(max_items = 16)]
    tags: Option<Vec<Tag>>,
) -> Result<String, ToolError> {
    let tags = tags.map(memory::strings);
    let note =
        memory::update(note_id.trim(), &content, tags.as_deref()).map_err(memory::tool_error)?;
    Ok(memory::note_json(&note).to_string())
}

oxydra_sdk::export_tool!(MemoryUpdate);
