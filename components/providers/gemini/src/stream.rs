//! `streamGenerateContent` SSE (one `GenerateContentResponse` per event, no `[DONE]`;
//! the body ends after the last) → `oxydra:llm` events.

use oxydra_sdk::llm::sse::SseEvent;
use oxydra_sdk::llm::stream::SseHandler;
use oxydra_sdk::llm::types::{Event, LlmError, StopReason, ToolCallStart, Usage};
use serde_json::Value;
use std::collections::VecDeque;

#[derive(Default)]
pub struct GeminiStream {
    calls: u32,
    finish: Option<StopReason>,
    usage: Option<Value>,
}

fn n(v: &Value, k: &str) -> u64 {
    v.get(k).and_then(Value::as_u64).unwrap_or(0)
}

fn finish_reason(s: &str) -> StopReason {
    match s {
        "STOP" => StopReason::EndTurn,
        "MAX_TOKENS" => StopReason::MaxTokens,
        "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY" => {
            StopReason::ContentFilter
        }
        other => StopReason::Other(other.to_string()),
    }
}

impl SseHandler for GeminiStream {
    fn on_event(&mut self, sse: SseEvent, out: &mut VecDeque<Event>) -> Result<bool, LlmError> {
        let v = sse.json()?;
        if let Some(err) = v.get("error") {
            let msg = err["message"].as_str().unwrap_or("unknown error");
            let status = err["status"].as_str().unwrap_or("ERROR");
            return Err(LlmError::Provider(format!("{status}: {msg}")));
        }
        if let Some(reason) = v["promptFeedback"]["blockReason"].as_str() {
            return Err(LlmError::Provider(format!(
                "the prompt was blocked: {reason}"
            )));
        }
        if let Some(u) = v.get("usageMetadata") {
            self.usage = Some(u.clone());
        }
        let Some(cand) = v["candidates"].as_array().and_then(|c| c.first()) else {
            return Ok(false);
        };
        for part in cand["content"]["parts"].as_array().into_iter().flatten() {
            if let Some(call) = part.get("functionCall") {
                let index = self.calls;
                self.calls += 1;
                let id = call["id"]
                    .as_str()
                    .map_or_else(|| format!("call_{index}"), str::to_string);
                out.push_back(Event::ToolCallStart(ToolCallStart {
                    index,
                    id,
                    name: call["name"].as_str().unwrap_or_default().to_string(),
                }));
                let args = call
                    .get("args")
                    .cloned()
                    .unwrap_or_else(|| Value::Object(Default::default()));
                out.push_back(Event::ToolCallArguments((index, args.to_string())));
                let signature = part["thoughtSignature"].as_str().map(str::to_string);
                out.push_back(Event::ToolCallEnd((index, signature)));
            } else if let Some(t) = part["text"].as_str() {
                if t.is_empty() {
                    continue;
                }
                if part["thought"].as_bool() == Some(true) {
                    out.push_back(Event::ReasoningDelta(t.to_string()));
                } else {
                    out.push_back(Event::TextDelta(t.to_string()));
                }
            }
        }
        if let Some(r) = cand["finishReason"].as_str() {
            self.finish = Some(finish_reason(r));
        }
        Ok(false)
    }

    fn on_end(&mut self, clean: bool, out: &mut VecDeque<Event>) -> Result<(), LlmError> {
        let Some(finish) = self.finish.take().filter(|_| clean) else {
            return Err(LlmError::Transport(
                "the connection closed before the response was complete".into(),
            ));
        };
        if let Some(u) = &self.usage {
            let thoughts = n(u, "thoughtsTokenCount");
            out.push_back(Event::Usage(Usage {
                input_tokens: n(u, "promptTokenCount"),
                output_tokens: n(u, "candidatesTokenCount") + thoughts,
                cached_tokens: n(u, "cachedContentTokenCount"),
                reasoning_tokens: thoughts,
            }));
        }
        let stop = match finish {
            StopReason::EndTurn if self.calls > 0 => StopReason::ToolCalls,
            other => other,
        };
        out.push_back(Event::Stop(stop));
        Ok(())
    }
}
