//! `oxydra:llm` request → `GenerateContentRequest` JSON.

use crate::schema::sanitize;
use oxydra_sdk::llm::types::{ContentPart, LlmError, Message, Request, Role, ToolChoice};
use oxydra_sdk::llm::{base64, merge_options};
use serde_json::{Map, Value, json};

fn thinking_budget(effort: &str) -> Option<i64> {
    match effort {
        "minimal" => Some(0),
        "low" => Some(1024),
        "medium" => Some(8192),
        "high" => Some(24576),
        _ => None,
    }
}

fn parts(m: &Message) -> Vec<Value> {
    let mut out = Vec::new();
    for c in &m.content {
        match c {
            ContentPart::Text(t) if t.is_empty() => {}
            ContentPart::Text(t) => out.push(json!({"text": t})),
            ContentPart::Image(img) => {
                out.push(json!({"inlineData": {"mimeType": img.mime_type, "data": base64::encode(&img.data)}}))
            }
        }
    }
    for call in &m.tool_calls {
        let args: Value = serde_json::from_str(&call.arguments).unwrap_or_else(|_| json!({}));
        let mut part = json!({"functionCall": {"name": call.name, "args": args}});
        if let Some(sig) = &call.provider_data {
            part["thoughtSignature"] = json!(sig);
        }
        out.push(part);
    }
    out
}

pub fn build(r: &Request) -> Result<String, LlmError> {
    let mut contents: Vec<Value> = Vec::new();
    let mut system = Vec::new();
    for m in &r.messages {
        let (role, p) = match m.role {
            Role::System => {
                system.extend(parts(m));
                continue;
            }
            Role::User => ("user", parts(m)),
            Role::Assistant => ("model", parts(m)),
            Role::Tool => {
                let name = m.tool_name.as_ref().ok_or_else(|| {
                    LlmError::InvalidRequest(
                        "Gemini needs the tool's name on a tool result message".into(),
                    )
                })?;
                let text: String = m
                    .content
                    .iter()
                    .filter_map(|c| {
                        if let ContentPart::Text(t) = c {
                            Some(t.as_str())
                        } else {
                            None
                        }
                    })
                    .collect();
                (
                    "user",
                    vec![
                        json!({"functionResponse": {"name": name, "response": {"content": text}}}),
                    ],
                )
            }
        };
        if p.is_empty() {
            continue;
        }
        match contents.last_mut() {
            Some(last) if last["role"] == role => {
                if let Some(a) = last["parts"].as_array_mut() {
                    a.extend(p);
                }
            }
            _ => contents.push(json!({"role": role, "parts": p})),
        }
    }
    let mut body = Map::new();
    body.insert("contents".into(), Value::Array(contents));
    if !system.is_empty() {
        body.insert("systemInstruction".into(), json!({"parts": system}));
    }
    if !r.tools.is_empty() {
        let decls: Vec<Value> = r
            .tools
            .iter()
            .map(|t| {
                let schema: Value = serde_json::from_str(&t.parameters_schema)
                    .unwrap_or_else(|_| json!({"type": "object"}));
                let mut d = json!({"name": t.name, "description": t.description});
                let s = sanitize(&schema);
                // Gemini rejects an object schema without properties.
                if s.get("properties")
                    .and_then(Value::as_object)
                    .is_some_and(|p| !p.is_empty())
                {
                    d["parameters"] = s;
                }
                d
            })
            .collect();
        body.insert("tools".into(), json!([{"functionDeclarations": decls}]));
    }
    if let Some(choice) = &r.tool_choice {
        let cfg = match choice {
            ToolChoice::Auto => json!({"mode": "AUTO"}),
            ToolChoice::None => json!({"mode": "NONE"}),
            ToolChoice::Required => json!({"mode": "ANY"}),
            ToolChoice::Named(n) => json!({"mode": "ANY", "allowedFunctionNames": [n]}),
        };
        body.insert("toolConfig".into(), json!({"functionCallingConfig": cfg}));
    }
    let mut generation = Map::new();
    if let Some(n) = r.max_output_tokens {
        generation.insert("maxOutputTokens".into(), json!(n));
    }
    if let Some(t) = r.temperature {
        generation.insert("temperature".into(), json!(t));
    }
    if let Some(b) = r.reasoning_effort.as_deref().and_then(thinking_budget) {
        generation.insert(
            "thinkingConfig".into(),
            json!({"thinkingBudget": b, "includeThoughts": true}),
        );
    }
    if !generation.is_empty() {
        body.insert("generationConfig".into(), Value::Object(generation));
    }
    merge_options(&mut body, &r.options)?;
    Ok(Value::Object(body).to_string())
}
