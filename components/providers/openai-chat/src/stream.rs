//! Chat Completions SSE → `oxydra:llm` events, one `next_event` at a time.

use crate::textual;
use oxydra_sdk::llm::sse::SseEvent;
use oxydra_sdk::llm::stream::SseHandler;
use oxydra_sdk::llm::types::{Event, LlmError, StopReason, ToolCallStart, Usage};
use serde_json::Value;
use std::collections::{BTreeMap, VecDeque};

#[derive(Default)]
struct Call {
    started: bool,
    id: String,
    name: String,
    /// Arguments that arrived before the call's name.
    pending: String,
}

pub struct ChatStream {
    queue: VecDeque<Event>,
    calls: BTreeMap<u32, Call>,
    finish: Option<StopReason>,
    usage: Option<Usage>,
    finished: bool,
    /// `Some` when textual tool calls are parsed: the text is held until the end.
    held_text: Option<String>,
}

fn stop_reason(s: &str) -> StopReason {
    match s {
        "stop" | "end_turn" | "eos" => StopReason::EndTurn,
        "tool_calls" | "function_call" => StopReason::ToolCalls,
        "length" | "max_tokens" => StopReason::MaxTokens,
        "content_filter" => StopReason::ContentFilter,
        other => StopReason::Other(other.to_string()),
    }
}

fn num(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

impl ChatStream {
    pub fn new(textual_tool_calls: bool) -> ChatStream {
        ChatStream {
            queue: VecDeque::new(),
            calls: BTreeMap::new(),
            finish: None,
            usage: None,
            finished: false,
            held_text: textual_tool_calls.then(String::new),
        }
    }

    fn handle(&mut self, sse: SseEvent) -> Result<(), LlmError> {
        let data = sse.data.trim();
        if data == "[DONE]" {
            self.finalize();
            return Ok(());
        }
        if data.is_empty() {
            return Ok(());
        }
        let v: Value = serde_json::from_str(data).map_err(|e| {
            LlmError::Protocol(format!("a stream event is not JSON ({e}): {}", clip(data)))
        })?;
        if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
            let msg = err
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| err.to_string());
            return Err(LlmError::Provider(msg));
        }
        if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
            let details = u
                .get("prompt_tokens_details")
                .cloned()
                .unwrap_or(Value::Null);
            let out_details = u
                .get("completion_tokens_details")
                .cloned()
                .unwrap_or(Value::Null);
            self.usage = Some(Usage {
                input_tokens: num(u, "prompt_tokens"),
                output_tokens: num(u, "completion_tokens"),
                cached_tokens: num(&details, "cached_tokens"),
                reasoning_tokens: num(&out_details, "reasoning_tokens"),
            });
        }
        let Some(choice) = v
            .get("choices")
            .and_then(Value::as_array)
            .and_then(|c| c.first())
        else {
            return Ok(());
        };
        let delta = choice
            .get("delta")
            .or_else(|| choice.get("message"))
            .cloned()
            .unwrap_or(Value::Null);
        for key in ["reasoning_content", "reasoning"] {
            if let Some(r) = delta
                .get(key)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
            {
                self.queue.push_back(Event::ReasoningDelta(r.to_string()));
            }
        }
        if let Some(text) = delta
            .get("content")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            match &mut self.held_text {
                Some(held) => held.push_str(text),
                None => self.queue.push_back(Event::TextDelta(text.to_string())),
            }
        }
        if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
            for (pos, c) in calls.iter().enumerate() {
                let index = c
                    .get("index")
                    .and_then(Value::as_u64)
                    .map_or(pos as u32, |i| i as u32);
                let f = c.get("function").cloned().unwrap_or(Value::Null);
                let call = self.calls.entry(index).or_default();
                if let Some(id) = c
                    .get("id")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                {
                    call.id = id.to_string();
                }
                if let Some(name) = f
                    .get("name")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty())
                {
                    call.name.push_str(name);
                }
                let args = f.get("arguments").map(|a| match a {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    // some servers send the arguments as an object
                    other => other.to_string(),
                });
                if !call.started && !call.name.is_empty() {
                    call.started = true;
                    if call.id.is_empty() {
                        call.id = format!("call_{index}");
                    }
                    self.queue.push_back(Event::ToolCallStart(ToolCallStart {
                        index,
                        id: call.id.clone(),
                        name: call.name.clone(),
                    }));
                    if !call.pending.is_empty() {
                        self.queue.push_back(Event::ToolCallArguments((
                            index,
                            std::mem::take(&mut call.pending),
                        )));
                    }
                }
                if let Some(args) = args.filter(|a| !a.is_empty()) {
                    if call.started {
                        self.queue
                            .push_back(Event::ToolCallArguments((index, args)));
                    } else {
                        call.pending.push_str(&args);
                    }
                }
            }
        }
        if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish = Some(stop_reason(reason));
        }
        Ok(())
    }

    /// The response is complete: close open calls, then usage, then the stop reason.
    fn finalize(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        if let Some(text) = self.held_text.take() {
            let (rest, found) = textual::extract(&text);
            if !rest.trim().is_empty() {
                self.queue.push_back(Event::TextDelta(rest));
            }
            let base = self.calls.keys().next_back().map_or(0, |k| k + 1);
            for (i, (name, args)) in found.into_iter().enumerate() {
                let index = base + i as u32;
                self.queue.push_back(Event::ToolCallStart(ToolCallStart {
                    index,
                    id: format!("call_{index}"),
                    name,
                }));
                self.queue
                    .push_back(Event::ToolCallArguments((index, args)));
                self.queue.push_back(Event::ToolCallEnd((index, None)));
                self.finish = Some(StopReason::ToolCalls);
            }
        }
        let any_calls = self.calls.values().any(|c| c.started);
        for (index, call) in &self.calls {
            if call.started {
                self.queue.push_back(Event::ToolCallEnd((*index, None)));
            }
        }
        if let Some(u) = self.usage {
            self.queue.push_back(Event::Usage(u));
        }
        let stop = match self.finish.take() {
            Some(StopReason::EndTurn) if any_calls => StopReason::ToolCalls,
            Some(s) => s,
            None if any_calls => StopReason::ToolCalls,
            None => StopReason::EndTurn,
        };
        self.queue.push_back(Event::Stop(stop));
    }
}

fn clip(s: &str) -> String {
    s.chars().take(200).collect()
}

impl SseHandler for ChatStream {
    fn on_event(&mut self, sse: SseEvent, out: &mut VecDeque<Event>) -> Result<bool, LlmError> {
        let r = self.handle(sse);
        out.extend(self.queue.drain(..));
        r.map(|()| self.finished)
    }

    fn on_end(&mut self, clean: bool, out: &mut VecDeque<Event>) -> Result<(), LlmError> {
        // Servers that end the body after the finish reason without `[DONE]` (some
        // compatible servers do) are complete; a body cut earlier is not.
        if !self.finished && self.finish.is_some() && clean {
            self.finalize();
        }
        out.extend(self.queue.drain(..));
        if self.finished {
            Ok(())
        } else {
            Err(LlmError::Transport(
                "the connection closed before the response was complete".into(),
            ))
        }
    }
}
