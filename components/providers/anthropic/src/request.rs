//! `oxydra:llm` request → Messages API JSON.

use oxydra_sdk::llm::types::{ContentPart, LlmError, Message, Request, Role, ToolChoice};
use oxydra_sdk::llm::{base64, merge_options, text_of};
use serde_json::{Map, Value, json};

/// Thinking budget per reasoning effort (tokens; Anthropic's minimum is 1024).
fn thinking_budget(effort: &str) -> Option<u32> {
    match effort {
        "low" | "minimal" => Some(1024),
        "medium" => Some(4096),
        "high" => Some(16384),
        _ => None,
    }
}

fn blocks_of(m: &Message) -> Vec<Value> {
    let mut out = Vec::new();
    for r in &m.reasoning {
        match &r.redacted {
            Some(data) => out.push(json!({"type": "redacted_thinking", "data": data})),
            None => {
                let mut b = json!({"type": "thinking", "thinking": r.text});
                if let Some(sig) = &r.signature {
                    b["signature"] = json!(sig);
                }
                out.push(b);
            }
        }
    }
    for c in &m.content {
        match c {
            ContentPart::Text(t) if t.is_empty() => {}
            ContentPart::Text(t) => out.push(json!({"type": "text", "text": t})),
            ContentPart::Image(img) => out.push(json!({
                "type": "image",
                "source": {"type": "base64", "media_type": img.mime_type, "data": base64::encode(&img.data)}
            })),
        }
    }
    for call in &m.tool_calls {
        let input: Value = serde_json::from_str(&call.arguments).unwrap_or_else(|_| json!({}));
        out.push(json!({"type": "tool_use", "id": call.id, "name": call.name, "input": input}));
    }
    out
}

pub fn build(r: &Request) -> Result<String, LlmError> {
    let max_tokens = r.max_output_tokens.ok_or_else(|| {
        LlmError::InvalidRequest(
            "Anthropic needs max_tokens: set max_output_tokens (the host takes it from the model catalog or \
             [providers.registry.<name>] max_output_tokens)"
                .into(),
        )
    })?;
    let mut body = Map::new();
    body.insert("model".into(), json!(r.model));
    body.insert("max_tokens".into(), json!(max_tokens));
    body.insert("stream".into(), json!(true));

    let system: Vec<String> = r
        .messages
        .iter()
        .filter(|m| m.role == Role::System)
        .map(text_of)
        .collect();
    if !system.is_empty() {
        // cache_control on the system prompt: it is the same on every turn.
        body.insert(
            "system".into(),
            json!([{"type": "text", "text": system.join("\n\n"), "cache_control": {"type": "ephemeral"}}]),
        );
    }
    // Roles alternate; consecutive same-role messages (tool results in particular) merge.
    let mut messages: Vec<Value> = Vec::new();
    for m in r.messages.iter().filter(|m| m.role != Role::System) {
        let (role, blocks) = match m.role {
            Role::User => ("user", blocks_of(m)),
            Role::Assistant => ("assistant", blocks_of(m)),
            Role::Tool => {
                let id = m.tool_call_id.as_ref().ok_or_else(|| {
                    LlmError::InvalidRequest(
                        "a tool message needs the id of the call it answers".into(),
                    )
                })?;
                (
                    "user",
                    vec![json!({"type": "tool_result", "tool_use_id": id, "content": text_of(m)})],
                )
            }
            Role::System => continue,
        };
        if blocks.is_empty() {
            continue;
        }
        match messages.last_mut() {
            Some(last) if last["role"] == role => {
                if let Some(arr) = last["content"].as_array_mut() {
                    arr.extend(blocks);
                }
            }
            _ => messages.push(json!({"role": role, "content": blocks})),
        }
    }
    body.insert("messages".into(), Value::Array(messages));
    if !r.tools.is_empty() {
        let n = r.tools.len();
        let tools: Vec<Value> = r
            .tools
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let schema: Value = serde_json::from_str(&t.parameters_schema)
                    .unwrap_or_else(|_| json!({"type": "object"}));
                let mut tool =
                    json!({"name": t.name, "description": t.description, "input_schema": schema});
                if i + 1 == n {
                    // cache_control on the last tool caches the whole tool list.
                    tool["cache_control"] = json!({"type": "ephemeral"});
                }
                tool
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = &r.tool_choice {
        body.insert(
            "tool_choice".into(),
            match choice {
                ToolChoice::Auto => json!({"type": "auto"}),
                ToolChoice::None => json!({"type": "none"}),
                ToolChoice::Required => json!({"type": "any"}),
                ToolChoice::Named(n) => json!({"type": "tool", "name": n}),
            },
        );
    }
    if let Some(t) = r.temperature {
        body.insert("temperature".into(), json!(t));
    }
    if let Some(budget) = r.reasoning_effort.as_deref().and_then(thinking_budget) {
        if budget >= max_tokens {
            return Err(LlmError::InvalidRequest(format!(
                "reasoning effort needs a thinking budget of {budget} tokens, which must be below max_tokens ({max_tokens}); raise max_output_tokens"
            )));
        }
        body.insert(
            "thinking".into(),
            json!({"type": "enabled", "budget_tokens": budget}),
        );
    }
    merge_options(&mut body, &r.options)?;
    Ok(Value::Object(body).to_string())
}
