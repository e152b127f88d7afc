//! `oxydra:llm` request → Responses API JSON.

use oxydra_sdk::llm::types::{ContentPart, LlmError, Message, Request, Role, ToolChoice};
use oxydra_sdk::llm::{base64, merge_options, text_of};
use serde_json::{Map, Value, json};

fn items(m: &Message, out: &mut Vec<Value>) -> Result<(), LlmError> {
    match m.role {
        Role::System => out.push(json!({"role": "system", "content": text_of(m)})),
        Role::User => {
            let parts: Vec<Value> = m
                .content
                .iter()
                .map(|c| match c {
                    ContentPart::Text(t) => json!({"type": "input_text", "text": t}),
                    ContentPart::Image(img) => json!({
                        "type": "input_image",
                        "image_url": format!("data:{};base64,{}", img.mime_type, base64::encode(&img.data))
                    }),
                })
                .collect();
            out.push(json!({"role": "user", "content": parts}));
        }
        Role::Assistant => {
            let text = text_of(m);
            if !text.is_empty() {
                out.push(json!({"role": "assistant", "content": [{"type": "output_text", "text": text}]}));
            }
            for c in &m.tool_calls {
                out.push(json!({"type": "function_call", "call_id": c.id, "name": c.name, "arguments": c.arguments}));
            }
        }
        Role::Tool => {
            let id = m.tool_call_id.as_ref().ok_or_else(|| {
                LlmError::InvalidRequest(
                    "a tool message needs the id of the call it answers".into(),
                )
            })?;
            out.push(json!({"type": "function_call_output", "call_id": id, "output": text_of(m)}));
        }
    }
    Ok(())
}

pub fn build(r: &Request) -> Result<String, LlmError> {
    let mut input = Vec::new();
    for m in &r.messages {
        items(m, &mut input)?;
    }
    let mut body = Map::new();
    body.insert("model".into(), json!(r.model));
    body.insert("input".into(), Value::Array(input));
    body.insert("stream".into(), json!(true));
    // Stateless: the conversation is always sent whole, nothing is stored server-side.
    body.insert("store".into(), json!(false));
    if !r.tools.is_empty() {
        let tools: Vec<Value> = r
            .tools
            .iter()
            .map(|t| {
                let params: Value = serde_json::from_str(&t.parameters_schema).unwrap_or_else(|_| json!({"type": "object"}));
                json!({"type": "function", "name": t.name, "description": t.description, "parameters": params, "strict": false})
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
                ToolChoice::Named(n) => json!({"type": "function", "name": n}),
            },
        );
    }
    if let Some(n) = r.max_output_tokens {
        body.insert("max_output_tokens".into(), json!(n));
    }
    if let Some(t) = r.temperature {
        body.insert("temperature".into(), json!(t));
    }
    if let Some(e) = &r.reasoning_effort {
        body.insert("reasoning".into(), json!({"effort": e, "summary": "auto"}));
    }
    if r.options.iter().any(|(k, _)| k == "previous_response_id") {
        return Err(LlmError::InvalidRequest(
            "previous_response_id is not supported: Oxydra sends the whole conversation so no state is shared between sessions".into(),
        ));
    }
    merge_options(&mut body, &r.options)?;
    Ok(Value::Object(body).to_string())
}
