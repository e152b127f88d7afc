//! The awkward cases, for every protocol: comment keep-alives, CRLF, a cut connection,
//! 401, 429 with Retry-After then success, 500 then success, and several tool calls in one
//! answer. Each adapter gets its own wire format from a small table below.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;
#[path = "common/llm.rs"]
mod llm;
#[path = "common/server.rs"]
mod server;

use oxydra_runtime::llm::types::*;
use serde_json::json;
use server::{Piece, Reply, Server};
use std::time::{Duration, Instant};

struct Protocol {
    krate: &'static str,
    env: &'static str,
    /// Base URL for a server root.
    base: fn(&str) -> String,
    model: &'static str,
    /// One SSE event carrying a text delta.
    text: fn(&str) -> String,
    /// The events that end a successful answer.
    end: fn() -> Vec<String>,
    /// An answer with two tool calls (name, arguments JSON).
    two_calls: fn() -> Vec<String>,
}

fn sse(kind: Option<&str>, data: serde_json::Value) -> String {
    match kind {
        Some(k) => format!("event: {k}\ndata: {data}\n\n"),
        None => format!("data: {data}\n\n"),
    }
}

const PROTOCOLS: &[Protocol] = &[
    Protocol {
        krate: "oxydra-provider-openai-chat",
        env: "OPENAI_API_KEY",
        base: |u| format!("{u}/v1"),
        model: "gpt-4o-mini",
        text: |t| {
            sse(
                None,
                json!({"choices": [{"index": 0, "delta": {"content": t}, "finish_reason": null}]}),
            )
        },
        end: || {
            vec![
                sse(
                    None,
                    json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
                ),
                "data: [DONE]\n\n".into(),
            ]
        },
        two_calls: || {
            vec![
                sse(
                    None,
                    json!({"choices": [{"index": 0, "delta": {"tool_calls": [
                    {"index": 0, "id": "a", "type": "function", "function": {"name": "file_read", "arguments": "{\"path\":\"/shared/x\"}"}},
                    {"index": 1, "id": "b", "type": "function", "function": {"name": "file_list", "arguments": "{}"}}
                ]}, "finish_reason": "tool_calls"}]}),
                ),
                "data: [DONE]\n\n".into(),
            ]
        },
    },
    Protocol {
        krate: "oxydra-provider-openai-responses",
        env: "OPENAI_API_KEY",
        base: |u| format!("{u}/v1"),
        model: "gpt-4.1",
        text: |t| {
            sse(
                Some("response.output_text.delta"),
                json!({"type": "response.output_text.delta", "output_index": 0, "delta": t}),
            )
        },
        end: || {
            vec![sse(
                Some("response.completed"),
                json!({"type": "response.completed", "response": {"usage": {"input_tokens": 1, "output_tokens": 1}}}),
            )]
        },
        two_calls: || {
            let added = |i: u32, id: &str, name: &str| {
                sse(
                    Some("response.output_item.added"),
                    json!({"type": "response.output_item.added", "output_index": i, "item": {"type": "function_call", "call_id": id, "name": name, "arguments": ""}}),
                )
            };
            let done = |i: u32, id: &str, name: &str, args: &str| {
                sse(
                    Some("response.output_item.done"),
                    json!({"type": "response.output_item.done", "output_index": i, "item": {"type": "function_call", "call_id": id, "name": name, "arguments": args}}),
                )
            };
            vec![
                added(0, "a", "file_read"),
                added(1, "b", "file_list"),
                done(0, "a", "file_read", "{\"path\":\"/shared/x\"}"),
                done(1, "b", "file_list", "{}"),
                sse(
                    Some("response.completed"),
                    json!({"type": "response.completed", "response": {"usage": {}}}),
                ),
            ]
        },
    },
    Protocol {
        krate: "oxydra-provider-anthropic",
        env: "ANTHROPIC_API_KEY",
        base: |u| u.to_string(),
        model: "claude-sonnet-4-5",
        text: |t| {
            sse(
                Some("content_block_delta"),
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": t}}),
            )
        },
        end: || {
            vec![
                sse(
                    Some("message_delta"),
                    json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 3}}),
                ),
                sse(Some("message_stop"), json!({"type": "message_stop"})),
            ]
        },
        two_calls: || {
            let start = |i: u32, id: &str, name: &str| {
                sse(
                    Some("content_block_start"),
                    json!({"type": "content_block_start", "index": i, "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}}}),
                )
            };
            let delta = |i: u32, p: &str| {
                sse(
                    Some("content_block_delta"),
                    json!({"type": "content_block_delta", "index": i, "delta": {"type": "input_json_delta", "partial_json": p}}),
                )
            };
            let stop = |i: u32| {
                sse(
                    Some("content_block_stop"),
                    json!({"type": "content_block_stop", "index": i}),
                )
            };
            vec![
                sse(
                    Some("message_start"),
                    json!({"type": "message_start", "message": {"usage": {"input_tokens": 9}}}),
                ),
                start(0, "a", "file_read"),
                delta(0, "{\"path\":"),
                delta(0, "\"/shared/x\"}"),
                stop(0),
                start(1, "b", "file_list"),
                stop(1),
                sse(
                    Some("message_delta"),
                    json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 20}}),
                ),
                sse(Some("message_stop"), json!({"type": "message_stop"})),
            ]
        },
    },
    Protocol {
        krate: "oxydra-provider-gemini",
        env: "GEMINI_API_KEY",
        base: |u| u.to_string(),
        model: "gemini-2.5-flash",
        text: |t| {
            sse(
                None,
                json!({"candidates": [{"content": {"parts": [{"text": t}], "role": "model"}}]}),
            )
        },
        end: || {
            vec![sse(
                None,
                json!({"candidates": [{"content": {"parts": [], "role": "model"}, "finishReason": "STOP"}], "usageMetadata": {"promptTokenCount": 1, "candidatesTokenCount": 1}}),
            )]
        },
        two_calls: || {
            vec![sse(
                None,
                json!({"candidates": [{"content": {"parts": [
                {"functionCall": {"name": "file_read", "args": {"path": "/shared/x"}}},
                {"functionCall": {"name": "file_list", "args": {}}}
            ], "role": "model"}, "finishReason": "STOP"}]}),
            )]
        },
    },
];

fn spec(p: &Protocol, server: &Server) -> oxydra_runtime::llm::ProviderSpec {
    llm::spec("prov", p.krate, &(p.base)(&server.url), "k-123", p.env)
}

fn request(p: &Protocol) -> LlmRequest {
    LlmRequest {
        model: p.model.into(),
        messages: vec![Message::text(Role::User, "hi")],
        max_output_tokens: Some(100),
        ..Default::default()
    }
}

fn ok_stream(p: &Protocol, texts: &[&str], crlf: bool) -> Reply {
    let mut pieces = vec![":\n\n".to_string(), ": keep-alive\n\n".to_string()];
    if p.krate.contains("anthropic") {
        pieces.push(sse(
            Some("message_start"),
            json!({"type": "message_start", "message": {"usage": {"input_tokens": 2}}}),
        ));
        pieces.push(sse(Some("content_block_start"), json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})));
    }
    for t in texts {
        pieces.push((p.text)(t));
        pieces.push(": ping\n\n".into());
    }
    pieces.extend((p.end)());
    let pieces: Vec<Vec<u8>> = pieces
        .into_iter()
        .map(|s| if crlf { s.replace('\n', "\r\n") } else { s }.into_bytes())
        .collect();
    Reply::sse_bytes(pieces)
}

#[test]
fn keep_alives_and_crlf_for_every_protocol() {
    let host = common::host();
    for p in PROTOCOLS {
        for crlf in [false, true] {
            let server = Server::start(vec![ok_stream(p, &["Hé", "llo"], crlf)]);
            let events = llm::ok(llm::run(&host, spec(p, &server), &request(p)).unwrap());
            assert_eq!(llm::text(&events), "Héllo", "{} crlf={crlf}", p.krate);
            assert_eq!(
                events.last(),
                Some(&LlmEvent::Stop(StopReason::EndTurn)),
                "{}",
                p.krate
            );
        }
    }
}

#[test]
fn a_cut_connection_for_every_protocol() {
    let host = common::host();
    for p in PROTOCOLS {
        let mut reply = ok_stream(p, &["one"], false);
        reply
            .body
            .truncate(if p.krate.contains("anthropic") { 5 } else { 3 }); // through the first text event
        reply.body.push(Piece::Bytes(b"data: {\"partial".to_vec()));
        reply.body.push(Piece::Cut);
        let server = Server::start(vec![reply]);
        let events = llm::run(&host, spec(p, &server), &request(p)).unwrap();
        assert_eq!(
            events.first(),
            Some(&Ok(LlmEvent::TextDelta("one".into()))),
            "{}",
            p.krate
        );
        assert!(
            matches!(events.last(), Some(Err(LlmFailure::Transport(_)))),
            "{}: {events:?}",
            p.krate
        );
        assert_eq!(server.requests().len(), 1, "{}: no replay", p.krate);
    }
}

#[test]
fn unauthorized_for_every_protocol() {
    let host = common::host();
    for p in PROTOCOLS {
        let server = Server::start(vec![Reply::status(
            401,
            "{\"error\":{\"message\":\"bad key\"}}",
        )]);
        let err = llm::run(&host, spec(p, &server), &request(p))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("rejected the credentials") && err.contains(p.env),
            "{}: {err}",
            p.krate
        );
        assert_eq!(server.requests().len(), 1, "{}", p.krate);
    }
}

#[test]
fn rate_limit_with_retry_after_and_server_error_then_success_for_every_protocol() {
    let host = common::host();
    for p in PROTOCOLS {
        let server = Server::start(vec![
            Reply::status(429, "{\"error\":{\"message\":\"slow down\"}}")
                .header("retry-after", "1"),
            Reply::status(500, "{\"error\":{\"message\":\"oops\"}}"),
            ok_stream(p, &["fine"], false),
        ]);
        let started = Instant::now();
        let events = llm::ok(llm::run(&host, spec(p, &server), &request(p)).unwrap());
        assert!(
            started.elapsed() >= Duration::from_secs(1),
            "{}: Retry-After honoured",
            p.krate
        );
        assert_eq!(llm::text(&events), "fine", "{}", p.krate);
        assert_eq!(server.requests().len(), 3, "{}", p.krate);
    }
}

#[test]
fn several_tool_calls_for_every_protocol() {
    let host = common::host();
    for p in PROTOCOLS {
        let pieces = (p.two_calls)();
        let server = Server::start(vec![Reply::sse(
            &pieces.iter().map(String::as_str).collect::<Vec<_>>(),
        )]);
        let events = llm::ok(llm::run(&host, spec(p, &server), &request(p)).unwrap());
        let starts: Vec<(u32, String)> = events
            .iter()
            .filter_map(|e| match e {
                LlmEvent::ToolCallStart { index, name, .. } => Some((*index, name.clone())),
                _ => None,
            })
            .collect();
        assert_eq!(starts.len(), 2, "{}: {events:?}", p.krate);
        assert_eq!(starts[0].1, "file_read", "{}", p.krate);
        assert_eq!(starts[1].1, "file_list", "{}", p.krate);
        let read_args: serde_json::Value =
            serde_json::from_str(&llm::args(&events, starts[0].0)).unwrap();
        assert_eq!(read_args, json!({"path": "/shared/x"}), "{}", p.krate);
        let list_args: serde_json::Value =
            serde_json::from_str(&llm::args(&events, starts[1].0)).unwrap();
        assert_eq!(list_args, json!({}), "{}", p.krate);
        let ends = events
            .iter()
            .filter(|e| matches!(e, LlmEvent::ToolCallEnd { .. }))
            .count();
        assert_eq!(ends, 2, "{}", p.krate);
        assert_eq!(
            events.last(),
            Some(&LlmEvent::Stop(StopReason::ToolCalls)),
            "{}",
            p.krate
        );
    }
}
