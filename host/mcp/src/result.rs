//! A `tools/call` result as the text the model reads: text blocks as they are, an
//! image or audio block as a line saying what it was, an embedded resource's text with
//! its URI, a resource link as its URI; structured content when there is nothing else.
//! Cut to the server's `max_result_bytes`, saying so.

use serde_json::Value;

/// The text of `result` (a `CallToolResult` as JSON) and whether it is an error.
pub fn text_of(result: &Value) -> (String, bool) {
    let is_error = result
        .get("isError")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut parts: Vec<String> = Vec::new();
    for block in result
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let kind = block.get("type").and_then(Value::as_str).unwrap_or("");
        let s = |k: &str| block.get(k).and_then(Value::as_str).unwrap_or("");
        match kind {
            "text" => parts.push(s("text").to_string()),
            "image" | "audio" => {
                let bytes = s("data").len() / 4 * 3;
                parts.push(format!(
                    "[{kind} ({}, about {bytes} bytes): not shown]",
                    s("mimeType")
                ));
            }
            "resource" => {
                let r = block.get("resource").cloned().unwrap_or_default();
                let uri = r.get("uri").and_then(Value::as_str).unwrap_or("");
                match r.get("text").and_then(Value::as_str) {
                    Some(t) => parts.push(format!("[resource {uri}]\n{t}")),
                    None => parts.push(format!("[resource {uri}: binary, not shown]")),
                }
            }
            "resource_link" => parts.push(format!("[resource link {}]", s("uri"))),
            other => parts.push(format!("[{other} content: not shown]")),
        }
    }
    if parts.is_empty()
        && let Some(v) = result.get("structuredContent")
    {
        parts.push(v.to_string());
    }
    (parts.join("\n"), is_error)
}

/// `text` cut to at most `max` bytes (on a character boundary), with a line that says
/// how long it was and which key bounds it.
pub fn capped(text: String, max: usize, key: &str) -> String {
    if text.len() <= max {
        return text;
    }
    let note = format!(
        "\n[cut: the result was {} bytes; {key} is {max}]",
        text.len()
    );
    let mut end = max.saturating_sub(note.len());
    while end > 0 && !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{note}", &text[..end])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    #[test]
    fn every_content_kind_becomes_text() {
        let r = json!({"content": [
            {"type": "text", "text": "hello"},
            {"type": "image", "data": "aGVsbG8h", "mimeType": "image/png"},
            {"type": "resource", "resource": {"uri": "file:///a.txt", "text": "body"}},
            {"type": "resource_link", "uri": "file:///b", "name": "b"}
        ]});
        let (t, err) = text_of(&r);
        assert!(!err);
        assert_eq!(
            t,
            "hello\n[image (image/png, about 6 bytes): not shown]\n[resource file:///a.txt]\nbody\n[resource link file:///b]"
        );
        let (t, err) =
            text_of(&json!({"content": [], "structuredContent": {"n": 1}, "isError": true}));
        assert!(err);
        assert_eq!(t, r#"{"n":1}"#);
    }

    #[test]
    fn a_long_result_is_cut_and_says_so() {
        let t = capped("é".repeat(1000), 500, "mcp.servers.x.max_result_bytes");
        assert!(t.len() <= 500, "{}", t.len());
        assert!(
            t.ends_with("[cut: the result was 2000 bytes; mcp.servers.x.max_result_bytes is 500]")
        );
        assert_eq!(capped("short".into(), 500, "k"), "short");
    }
}
