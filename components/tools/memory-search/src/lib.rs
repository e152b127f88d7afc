//! `memory_search` (profile memory): the calling user's notes, best first; optionally
//! their earlier conversations and archived-session summaries too.

use oxydra_sdk::memory::{self, Query, Tag};
use oxydra_sdk::{ToolError, tool};

/// Search your long-term memory of this user: the notes saved with memory_save, which
/// persist across sessions. With include_conversation, also earlier conversations with
/// this user and the summaries of archived sessions. Returns up to top_k results, best
/// first, each with its id (a note's id is what memory_update and memory_delete take),
/// source (note, conversation or summary), content, tags, score (comparable within one
/// search only), session (for conversation and summary results) and when (RFC 3339).
/// Search before asking the user something they may have told you already.
#[tool(tier = "read-only")]
fn memory_search(
    /// What to look for, in words (1 to 1000 characters)
    #[arg(min_length = 1, max_length = 1000)]
    query: String,
    /// How many results, 1 to 20
    #[arg(minimum = 1, maximum = 20, default = 5)]
    top_k: u32,
    /// Also search earlier conversations and archived-session summaries
    #[arg(default = false)]
    include_conversation: bool,
    /// Only notes carrying every one of these tags (at most 16, each 1 to 40 characters)
    #[arg(max_items = 16)]
    tags: Option<Vec<Tag>>,
) -> Result<String, ToolError> {
    let hits = memory::search(&Query {
        text: query,
        top_k,
        include_conversation,
        tags: tags.map(memory::strings).unwrap_or_default(),
    })
    .map_err(memory::tool_error)?;
    Ok(serde_json::json!({
        "count": hits.len(),
        "results": hits.iter().map(memory::hit_json).collect::<Vec<_>>(),
    })
    .to_string())
}

oxydra_sdk::export_tool!(MemorySearch);
