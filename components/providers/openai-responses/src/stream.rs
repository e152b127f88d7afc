//! Responses API SSE → `oxydra:llm` events. Function calls are keyed by `output_index`.

use oxydra_sdk::llm::sse::SseEvent;
use oxydra_sdk::llm::stream::SseHandler;
use oxydra_sdk::llm::types::{Event, LlmError, StopReason, ToolCallStart, Usage};
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};

#[derive(Default)]
pub struct ResponsesStream {
    /// output_index → arguments streamed so far (for a `done` event that carries them whole)
    calls: BTreeMap<u32, String>,
    saw_call: bool,
}

fn n(v: &Value, k: &str) -> u64 {
    v.get(k).and_then(Value::as_u64).unwrap_or(0)
}

fn usage(u: &Value) -> Usage {
    Usage {
        input_tokens: n(u, "input_tokens"),
        output_tokens: n(u, "output_tokens"),
        cached_tokens: n(&u["input_tokens_details"], "cached_tokens"),
        reasoning_tokens: n(&u["output_tokens_details"], "reasoning_tokens"),
    }
}

impl ResponsesStream {
    fn end_call(&mut self, index: u32, args: Option<&str>, out: &mut VecDeque<Event>) {
        if let Some(streamed) = self.calls.remove(&index) {
            if streamed.is_empty() {
                // Arguments that came whole in the `done` item (or none at all).
                out.push_back(Event::ToolCallArguments((
                    index,
                    args.filter(|a| !a.is_empty()).unwrap_or("{}").to_string(),
                )));
            }
            out.push_back(Event::ToolCallEnd((index, None)));
        }
    }
}

impl SseHandler for ResponsesStream {
    fn on_event(&mut self, sse: SseEvent, out: &mut VecDeque<Event>) -> Result<bool, LlmError> {
        let v = sse.json()?;
        let kind = v
            .get("type")
            .and_then(Value::as_str)
            .or(sse.event.as_deref())
            .unwrap_or("");
        let index = n(&v, "output_index") as u32;
        match kind {
            "response.output_text.delta" => out.push_back(Event::TextDelta(
                v["delta"].as_str().unwrap_or_default().to_string(),
            )),
            "response.reasoning_summary_text.delta" | "response.reasoning_text.delta" => out
                .push_back(Event::ReasoningDelta(
                    v["delta"].as_str().unwrap_or_default().to_string(),
                )),
            "response.output_item.added" => {
                let item = &v["item"];
                if item["type"] == "function_call" {
                    self.saw_call = true;
                    self.calls.insert(index, String::new());
                    out.push_back(Event::ToolCallStart(ToolCallStart {
                        index,
                        id: item["call_id"].as_str().unwrap_or_default().to_string(),
                        name: item["name"].as_str().unwrap_or_default().to_string(),
                    }));
                }
            }
            "response.function_call_arguments.delta" => {
                let d = v["delta"].as_str().unwrap_or_default();
                if let Some(acc) = self.calls.get_mut(&index)
                    && !d.is_empty()
                {
                    acc.push_str(d);
                    out.push_back(Event::ToolCallArguments((index, d.to_string())));
                }
            }
            "response.output_item.done" => {
                let item = &v["item"];
                if item["type"] == "function_call" {
                    self.end_call(index, item["arguments"].as_str(), out);
                }
            }
            "response.completed" | "response.incomplete" => {
                let r = &v["response"];
                for i in self.calls.keys().copied().collect::<Vec<_>>() {
                    self.end_call(i, None, out);
                }
                out.push_back(Event::Usage(usage(&r["usage"])));
                let stop = if kind == "response.incomplete" {
                    match r["incomplete_details"]["reason"].as_str() {
                        Some("max_output_tokens") => StopReason::MaxTokens,
                        Some("content_filter") => StopReason::ContentFilter,
                        Some(other) => StopReason::Other(other.to_string()),
                        None => StopReason::Other("incomplete".into()),
                    }
                } else if self.saw_call {
                    StopReason::ToolCalls
                } else {
                    StopReason::EndTurn
                };
                out.push_back(Event::Stop(stop));
                return Ok(true);
            }
            "response.failed" => {
                let e = &v["response"]["error"];
                let msg = e["message"].as_str().unwrap_or("the response failed");
                let code = e["code"].as_str().unwrap_or("failed");
                return Err(LlmError::Provider(format!("{code}: {msg}")));
            }
            "error" => {
                let msg = v["message"]
                    .as_str()
                    .or(v["error"]["message"].as_str())
                    .unwrap_or("unknown error");
                let code = v["code"]
                    .as_str()
                    .or(v["error"]["code"].as_str())
                    .unwrap_or("error");
                return Err(LlmError::Provider(format!("{code}: {msg}")));
            }
            _ => {} // created, in_progress, content_part.*, *.done we do not need
        }
        Ok(false)
    }

    fn on_end(&mut self, _clean: bool, _out: &mut VecDeque<Event>) -> Result<(), LlmError> {
        Err(LlmError::Transport(
            "the connection closed before response.completed".into(),
        ))
    }
}
