//! The calling user's memory through `oxydra:memory/store`: calling any of these makes
//! the component import it, so it needs the `memory` profile. The host scopes every call
//! to the user of the turn (and the scratchpad to its session); a tool cannot name
//! another user or session. Every `Err` is a message for the model that names the field
//! and the limit it hit ([`tool_error`] turns it into a [`ToolError`]).

use crate::bindings::memory::oxydra::memory::store;
use crate::{ArgSchema, ToolError};
use serde_json::{Value, json};

pub use store::{Hit, Note, Query, Source};

/// Search the user's notes (and, with `include_conversation`, earlier conversations and
/// archived-session summaries); best first.
pub fn search(query: &Query) -> Result<Vec<Hit>, String> {
    store::search(query)
}

/// Save a new note; durable before it returns.
pub fn save(content: &str, tags: &[String]) -> Result<Note, String> {
    store::save(content, tags)
}

/// Replace a note's content, and its tags when `tags` is given.
pub fn update(id: &str, content: &str, tags: Option<&[String]>) -> Result<Note, String> {
    store::update(id, content, tags)
}

pub fn delete(id: &str) -> Result<(), String> {
    store::delete(id)
}

/// The calling session's scratchpad (empty when never written).
pub fn scratchpad_read() -> Result<Vec<String>, String> {
    store::scratchpad_read()
}

/// Replace the whole scratchpad.
pub fn scratchpad_write(items: &[String]) -> Result<(), String> {
    store::scratchpad_write(items)
}

pub fn scratchpad_clear() -> Result<(), String> {
    store::scratchpad_clear()
}

/// A host refusal as the tool's error: an unknown note is `NotFound`, memory switched
/// off for this call is `Denied`, anything else (a field over its limit) is
/// `InvalidArguments`.
pub fn tool_error(message: String) -> ToolError {
    if message.starts_with("no note") {
        ToolError::NotFound(message)
    } else if message.starts_with("memory is not available") {
        ToolError::Denied(message)
    } else {
        ToolError::InvalidArguments(message)
    }
}

/// A tag as a tool argument: 1 to 40 characters in the schema the model reads (the host
/// also checks the characters: letters, digits, `-`, `_`, `.`, `:`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Tag(pub String);

impl ArgSchema for Tag {
    fn schema() -> Value {
        json!({"type": "string", "minLength": 1, "maxLength": 40})
    }
}

/// One scratchpad item as a tool argument: at most 240 characters.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Item(pub String);

impl ArgSchema for Item {
    fn schema() -> Value {
        json!({"type": "string", "maxLength": 240})
    }
}

/// The strings of tags or items, for the host calls.
pub fn strings<T: Into<String>>(values: Vec<T>) -> Vec<String> {
    values.into_iter().map(Into::into).collect()
}

impl From<Tag> for String {
    fn from(t: Tag) -> String {
        t.0
    }
}

impl From<Item> for String {
    fn from(i: Item) -> String {
        i.0
    }
}

pub fn source_str(s: Source) -> &'static str {
    match s {
        Source::Note => "note",
        Source::Conversation => "conversation",
        Source::Summary => "summary",
    }
}

/// A note as the JSON the memory tools answer with.
pub fn note_json(n: &Note) -> Value {
    json!({
        "id": n.id,
        "content": n.content,
        "tags": n.tags,
        "created": n.created,
        "updated": n.updated,
    })
}

/// A search hit as JSON, compact: no `tags` when it has none, no `session` for a note,
/// the score rounded to 4 decimals.
pub fn hit_json(h: &Hit) -> Value {
    let mut o = json!({
        "id": h.id,
        "source": source_str(h.source),
        "content": h.content,
        "score": (h.score * 10_000.0).round() / 10_000.0,
        "when": h.when,
    });
    if !h.tags.is_empty() {
        o["tags"] = json!(h.tags);
    }
    if let Some(s) = &h.session {
        o["session"] = json!(s);
    }
    o
}
