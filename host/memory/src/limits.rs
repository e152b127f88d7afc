//! The limits of what memory accepts, checked for every caller (tools, CLI, the session
//! layer). Each error names the field and the limit, so a model can correct itself.

use crate::MemoryError;

pub const MAX_NOTE_CHARS: usize = 8_000;
pub const MAX_QUERY_CHARS: usize = 1_000;
pub const MAX_TAGS: usize = 16;
pub const MAX_TAG_CHARS: usize = 40;
pub const MAX_TOP_K: u32 = 20;
pub const MAX_SCRATCHPAD_ITEMS: usize = 32;
pub const MAX_SCRATCHPAD_ITEM_CHARS: usize = 240;

fn invalid(m: String) -> MemoryError {
    MemoryError::Invalid(m)
}

/// A note's content: trimmed, 1–8,000 characters.
pub fn note(content: &str) -> Result<String, MemoryError> {
    let c = content.trim();
    let n = c.chars().count();
    if n == 0 {
        return Err(invalid("content: empty; give the text to remember".into()));
    }
    if n > MAX_NOTE_CHARS {
        return Err(invalid(format!(
            "content: {n} characters, over the limit of {MAX_NOTE_CHARS}; save a shorter note, or split it"
        )));
    }
    Ok(c.to_string())
}

/// A search query: trimmed, 1–1,000 characters.
pub fn query(text: &str) -> Result<String, MemoryError> {
    let t = text.trim();
    let n = t.chars().count();
    if n == 0 {
        return Err(invalid("query: empty; say what to look for".into()));
    }
    if n > MAX_QUERY_CHARS {
        return Err(invalid(format!(
            "query: {n} characters, over the limit of {MAX_QUERY_CHARS}"
        )));
    }
    Ok(t.to_string())
}

/// Tags: at most 16, each 1–40 characters of letters, digits, `-`, `_`, `.` or `:`,
/// lower-cased, duplicates dropped.
pub fn tags(tags: &[String]) -> Result<Vec<String>, MemoryError> {
    if tags.len() > MAX_TAGS {
        return Err(invalid(format!(
            "tags: {} given, over the limit of {MAX_TAGS}",
            tags.len()
        )));
    }
    let mut out: Vec<String> = Vec::new();
    for t in tags {
        let t = t.trim().to_lowercase();
        let n = t.chars().count();
        if n == 0 || n > MAX_TAG_CHARS {
            return Err(invalid(format!(
                "tags: `{t}` must be 1–{MAX_TAG_CHARS} characters"
            )));
        }
        if let Some(c) = t
            .chars()
            .find(|c| !(c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')))
        {
            return Err(invalid(format!(
                "tags: `{t}` contains `{c}`; use letters, digits, `-`, `_`, `.` or `:`"
            )));
        }
        if !out.contains(&t) {
            out.push(t);
        }
    }
    Ok(out)
}

pub fn top_k(k: u32) -> Result<u32, MemoryError> {
    if k == 0 || k > MAX_TOP_K {
        return Err(invalid(format!("top_k: {k}; use 1–{MAX_TOP_K}")));
    }
    Ok(k)
}

/// A scratchpad: 1–32 items of at most 240 characters, none empty.
pub fn scratchpad(items: &[String]) -> Result<Vec<String>, MemoryError> {
    if items.is_empty() || items.len() > MAX_SCRATCHPAD_ITEMS {
        return Err(invalid(format!(
            "items: {} given; write 1–{MAX_SCRATCHPAD_ITEMS} items (scratchpad_clear empties it)",
            items.len()
        )));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let s = s.trim();
            let n = s.chars().count();
            if n == 0 {
                Err(invalid(format!("items[{i}]: empty")))
            } else if n > MAX_SCRATCHPAD_ITEM_CHARS {
                Err(invalid(format!(
                    "items[{i}]: {n} characters, over the limit of {MAX_SCRATCHPAD_ITEM_CHARS}"
                )))
            } else {
                Ok(s.to_string())
            }
        })
        .collect()
}

/// At most [`MAX_NOTE_CHARS`] characters of `text` (for documents the host writes).
pub fn clip(text: &str) -> String {
    text.chars().take(MAX_NOTE_CHARS).collect()
}
