//! `oxydra:llm` request → Chat Completions JSON.

use oxydra_sdk::llm::types::{ContentPart, LlmError, Message, Request, Role, ToolChoice};
use oxydra_sdk::llm::{base64, merge_options, text_of};
use serde_json::{Map, Value, json};

pub struct Built {
    pub body: String,
    pub textual_tool_calls: bool,
}

fn content(m: &Message) -> Value {
    if m.content.iter().all(|c| matches!(c, ContentPart::Text(_))) {
        return Value::String(text_of(m));
    }
    Value::Array(
        m.content
            .iter()
            .map(|c| match c {
                ContentPart::Text(t) => json!({"type": "text", "text": t}),
                ContentPart::Image(img) => json!({
                    "type": "image_url",
                    "image_url": {"url": format!("data:{};base64,{}", img.mime_type, base64::encode(&img.data))}
                }),
            })
            .collect(),
    )
}

fn message(m: &Message) -> Result<Value, LlmError> {
    Ok(match m.role {
        Role::System => json!({"role": "system", "content": text_of(m)}),
        Role::User => json!({"role": "user", "content": content(m)}),
        Role::Assistant => {
            let mut o = Map::new();
            o.insert("role".into(), json!("assistant"));
            let text = text_of(m);
            o.insert(
                "content".into(),
                if text.is_empty() && !m.tool_calls.is_empty() {
                    Value::Null
                } else {
                    json!(text)
                },
            );
            if !m.tool_calls.is_empty() {
                let calls: Vec<Value> = m
                    .tool_calls
                    .iter()
                    .map(|c| json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}))
                    .collect();
                o.insert("tool_calls".into(), Value::Array(calls));
            }
            Value::Object(o)
        }
        Role::Tool => {
            let id = m.tool_call_id.as_ref().ok_or_else(|| {
                LlmError::InvalidRequest(
                    "a tool message needs the id of the call it answers".into(),
                )
            })?;
            json!({"role": "tool", "tool_call_id": id, "content": text_of(m)})
        }
    })
}

pub fn build(r: &Request) -> Result<Built, LlmError> {
    let mut body = Map::new();
    body.insert("model".into(), json!(r.model));
    body.insert(
        "messages".into(),
        Value::Array(r.messages.iter().map(message).collect::<Result<_, _>>()?),
    );
    body.insert("stream".into(), json!(true));
    body.insert("stream_options".into(), json!({"include_usage": true}));
    if !r.tools.is_empty() {
        let tools: Vec<Value> = r
            .tools
            .iter()
            .map(|t| {
                let params: Value = serde_json::from_str(&t.parameters_schema).unwrap_or_else(|_| json!({"type": "object"}));
                json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": params}})
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = &r.tool_choice {
        body.insert(
            "tool_choice".into(),
            match choice {
                ToolChoice::Auto => json!("auto"),
                ToolChoice::None => json!("none"),
                ToolChoice::Required => json!("required"),
                ToolChoice::Named(n) => json!({"type": "function", "function": {"name": n}}),
            },
        );
    }
    if let Some(n) = r.max_output_tokens {
        body.insert("max_completion_tokens".into(), json!(n));
    }
    if let Some(t) = r.temperature {
        body.insert("temperature".into(), json!(t));
    }
    if let Some(e) = &r.reasoning_effort {
        body.insert("reasoning_effort".into(), json!(e));
    }
    let own = merge_options(&mut body, &r.options)?;
    let textual_tool_calls = own
        .get("oxydra.textual_tool_calls")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok(Built {
        body: Value::Object(body).to_string(),
        textual_tool_calls,
    })
}
