//! Messages API SSE → `oxydra:llm` events.

use oxydra_sdk::llm::sse::SseEvent;
use oxydra_sdk::llm::stream::SseHandler;
use oxydra_sdk::llm::types::{Event, LlmError, StopReason, ToolCallStart, Usage};
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};

pub struct MessagesStream {
    usage: Usage,
    stop: Option<StopReason>,
    /// Content-block index → whether it is a tool_use block that got arguments.
    tool_blocks: BTreeMap<u32, bool>,
    saw_tool: bool,
}

impl Default for MessagesStream {
    fn default() -> Self {
        MessagesStream {
            usage: Usage {
                input_tokens: 0,
                output_tokens: 0,
                cached_tokens: 0,
                reasoning_tokens: 0,
            },
            stop: None,
            tool_blocks: BTreeMap::new(),
            saw_tool: false,
        }
    }
}

fn n(v: &Value, k: &str) -> u64 {
    v.get(k).and_then(Value::as_u64).unwrap_or(0)
}

fn stop_reason(s: &str) -> StopReason {
    match s {
        "end_turn" | "stop_sequence" => StopReason::EndTurn,
        "tool_use" => StopReason::ToolCalls,
        "max_tokens" => StopReason::MaxTokens,
        "refusal" => StopReason::ContentFilter,
        other => StopReason::Other(other.to_string()),
    }
}

impl SseHandler for MessagesStream {
    fn on_event(&mut self, sse: SseEvent, out: &mut VecDeque<Event>) -> Result<bool, LlmError> {
        let v = sse.json()?;
        let kind = v
            .get("type")
            .and_then(Value::as_str)
            .or(sse.event.as_deref())
            .unwrap_or("");
        match kind {
            "message_start" => {
                let u = &v["message"]["usage"];
                let cached = n(u, "cache_read_input_tokens");
                self.usage.input_tokens =
                    n(u, "input_tokens") + cached + n(u, "cache_creation_input_tokens");
                self.usage.cached_tokens = cached;
                self.usage.output_tokens = n(u, "output_tokens");
            }
            "content_block_start" => {
                let index = n(&v, "index") as u32;
                let block = &v["content_block"];
                match block["type"].as_str() {
                    Some("tool_use") => {
                        self.saw_tool = true;
                        self.tool_blocks.insert(index, false);
                        out.push_back(Event::ToolCallStart(ToolCallStart {
                            index,
                            id: block["id"].as_str().unwrap_or_default().to_string(),
                            name: block["name"].as_str().unwrap_or_default().to_string(),
                        }));
                    }
                    Some("text") => {
                        if let Some(t) = block["text"].as_str().filter(|t| !t.is_empty()) {
                            out.push_back(Event::TextDelta(t.to_string()));
                        }
                    }
                    Some("thinking") => {
                        if let Some(t) = block["thinking"].as_str().filter(|t| !t.is_empty()) {
                            out.push_back(Event::ReasoningDelta(t.to_string()));
                        }
                    }
                    _ => {}
                }
            }
            "content_block_delta" => {
                let index = n(&v, "index") as u32;
                let d = &v["delta"];
                match d["type"].as_str() {
                    Some("text_delta") => out.push_back(Event::TextDelta(
                        d["text"].as_str().unwrap_or_default().to_string(),
                    )),
                    Some("input_json_delta") => {
                        let part = d["partial_json"].as_str().unwrap_or_default();
                        if !part.is_empty() {
                            self.tool_blocks.insert(index, true);
                            out.push_back(Event::ToolCallArguments((index, part.to_string())));
                        }
                    }
                    Some("thinking_delta") => out.push_back(Event::ReasoningDelta(
                        d["thinking"].as_str().unwrap_or_default().to_string(),
                    )),
                    Some("signature_delta") => out.push_back(Event::ReasoningSignature(
                        d["signature"].as_str().unwrap_or_default().to_string(),
                    )),
                    _ => {}
                }
            }
            "content_block_stop" => {
                let index = n(&v, "index") as u32;
                if let Some(had_args) = self.tool_blocks.remove(&index) {
                    if !had_args {
                        // A tool called with no input still needs a JSON object.
                        out.push_back(Event::ToolCallArguments((index, "{}".into())));
                    }
                    out.push_back(Event::ToolCallEnd((index, None)));
                }
            }
            "message_delta" => {
                if let Some(r) = v["delta"]["stop_reason"].as_str() {
                    self.stop = Some(stop_reason(r));
                }
                if let Some(o) = v["usage"]["output_tokens"].as_u64() {
                    self.usage.output_tokens = o;
                }
            }
            "message_stop" => {
                out.push_back(Event::Usage(self.usage));
                let stop = self.stop.take().unwrap_or(if self.saw_tool {
                    StopReason::ToolCalls
                } else {
                    StopReason::EndTurn
                });
                out.push_back(Event::Stop(stop));
                return Ok(true);
            }
            "error" => {
                let e = &v["error"];
                let msg = e["message"].as_str().unwrap_or("unknown error");
                let ty = e["type"].as_str().unwrap_or("error");
                return Err(LlmError::Provider(format!("{ty}: {msg}")));
            }
            _ => {} // ping and event types added later
        }
        Ok(false)
    }

    fn on_end(&mut self, _clean: bool, _out: &mut VecDeque<Event>) -> Result<(), LlmError> {
        Err(LlmError::Transport(
            "the connection closed before message_stop".into(),
        ))
    }
}
