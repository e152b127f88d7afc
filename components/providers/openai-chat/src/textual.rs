//! Tool calls written as text by models without native tool calling:
//! `<tool_call>{"name": …, "arguments": {…}}</tool_call>` (Hermes/Qwen style) and fenced
//! ```json blocks holding an object with `name` and `arguments` (or `parameters`).

use serde_json::Value;

/// (text with the calls removed, [(name, arguments JSON)])
pub fn extract(text: &str) -> (String, Vec<(String, String)>) {
    let mut rest = String::new();
    let mut calls = Vec::new();
    let mut s = text;
    loop {
        let tag = s.find("<tool_call>");
        let fence = s.find("```");
        let (start, open, close) = match (tag, fence) {
            (Some(t), Some(f)) if f < t => (f, "```", "```"),
            (Some(t), _) => (t, "<tool_call>", "</tool_call>"),
            (None, Some(f)) => (f, "```", "```"),
            (None, None) => break,
        };
        let after = &s[start + open.len()..];
        let Some(end) = after.find(close) else { break };
        let inner = after[..end].trim();
        let inner = inner.strip_prefix("json").unwrap_or(inner).trim();
        match call_of(inner) {
            Some(call) => {
                rest.push_str(&s[..start]);
                calls.push(call);
            }
            None => rest.push_str(&s[..start + open.len() + end + close.len()]),
        }
        s = &after[end + close.len()..];
    }
    rest.push_str(s);
    (rest, calls)
}

fn call_of(json: &str) -> Option<(String, String)> {
    let v: Value = serde_json::from_str(json).ok()?;
    let name = v.get("name")?.as_str()?.to_string();
    let args = v
        .get("arguments")
        .or_else(|| v.get("parameters"))
        .cloned()
        .unwrap_or(Value::Object(Default::default()));
    let args = match args {
        Value::String(s) => s,
        other => other.to_string(),
    };
    Some((name, args))
}

#[cfg(test)]
mod tests {
    use super::extract;

    #[test]
    fn tags_and_fences() {
        let (rest, calls) = extract(
            "Let me look.\n<tool_call>\n{\"name\": \"file_read\", \"arguments\": {\"path\": \"/shared/a\"}}\n</tool_call>",
        );
        assert_eq!(rest, "Let me look.\n");
        assert_eq!(
            calls,
            vec![("file_read".into(), "{\"path\":\"/shared/a\"}".into())]
        );
        let (rest, calls) = extract(
            "```json\n{\"name\": \"file_list\", \"parameters\": {}}\n```\nand ```rust\nfn x() {}\n```",
        );
        assert_eq!(calls, vec![("file_list".into(), "{}".into())]);
        assert_eq!(rest, "\nand ```rust\nfn x() {}\n```");
        assert_eq!(extract("no calls here").1, vec![]);
    }
}
