//! `gemini` against a loopback server speaking `streamGenerateContent?alt=sse` as the
//! Gemini API reference shows it.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;
#[path = "common/llm.rs"]
mod llm;
#[path = "common/server.rs"]
mod server;

use llm::{args, ok, run, split_at, text};
use oxydra_runtime::llm::types::*;
use serde_json::json;
use server::{Reply, Server};

const KEY: &str = "AIzaSy-gemini-test-key-9";

fn spec(server: &Server) -> oxydra_runtime::llm::ProviderSpec {
    llm::spec(
        "gemini",
        "oxydra-provider-gemini",
        &server.url,
        KEY,
        "GEMINI_API_KEY",
    )
}

fn data(v: serde_json::Value) -> String {
    format!("data: {v}\r\n\r\n")
}

fn request() -> LlmRequest {
    LlmRequest {
        model: "gemini-2.5-flash".into(),
        messages: vec![Message::text(Role::System, "Be brief."), Message::text(Role::User, "List /shared and read notes")],
        tools: vec![ToolDefinition {
            name: "file_list".into(),
            description: "List a directory".into(),
            parameters_schema: r#"{"type":"object","properties":{"path":{"type":"string","default":"/shared"}},"required":[],"additionalProperties":false}"#.into(),
        }],
        max_output_tokens: Some(2048),
        ..Default::default()
    }
}

#[test]
fn text_thoughts_and_parallel_calls_with_signatures() {
    let stream = [
        data(json!({"candidates": [{"content": {"parts": [{"text": "Planning…", "thought": true}], "role": "model"}, "index": 0}], "modelVersion": "gemini-2.5-flash"})),
        data(json!({"candidates": [{"content": {"parts": [{"text": "I'll look — "}], "role": "model"}, "index": 0}]})),
        data(json!({"candidates": [{"content": {"parts": [
            {"functionCall": {"name": "file_list", "args": {"path": "/shared"}}, "thoughtSignature": "CiQB0e2Kb7sig"},
            {"functionCall": {"name": "file_read", "args": {"path": "/shared/notes.md"}}}
        ], "role": "model"}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 120, "candidatesTokenCount": 30, "totalTokenCount": 180, "cachedContentTokenCount": 20, "thoughtsTokenCount": 30}})),
    ]
    .concat();
    let dash = stream.find('—').unwrap() + 2; // inside the em dash
    let server = Server::start(vec![Reply::sse_bytes(split_at(
        &stream,
        &[dash, dash + 30],
    ))]);
    let host = common::host();
    let events = ok(run(&host, spec(&server), &request()).unwrap());
    assert_eq!(events[0], LlmEvent::ReasoningDelta("Planning…".into()));
    assert_eq!(text(&events), "I'll look — ");
    assert_eq!(args(&events, 0), "{\"path\":\"/shared\"}");
    assert_eq!(args(&events, 1), "{\"path\":\"/shared/notes.md\"}");
    assert!(events.contains(&LlmEvent::ToolCallEnd {
        index: 0,
        provider_data: Some("CiQB0e2Kb7sig".into())
    }));
    assert!(events.contains(&LlmEvent::ToolCallEnd {
        index: 1,
        provider_data: None
    }));
    let n = events.len();
    assert_eq!(
        events[n - 2],
        LlmEvent::Usage(Usage {
            input_tokens: 120,
            output_tokens: 60,
            cached_tokens: 20,
            reasoning_tokens: 30
        })
    );
    assert_eq!(events[n - 1], LlmEvent::Stop(StopReason::ToolCalls));

    let r = &server.requests()[0];
    assert_eq!(
        r.path,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    );
    assert_eq!(r.header("x-goog-api-key"), Some(KEY));
    assert!(!r.path.contains(KEY), "the key is a header, not in the URL");
    let body = r.json();
    assert_eq!(
        body["systemInstruction"],
        json!({"parts": [{"text": "Be brief."}]})
    );
    let decl = &body["tools"][0]["functionDeclarations"][0];
    assert!(
        decl["parameters"].get("additionalProperties").is_none(),
        "{decl}"
    );
    assert_eq!(
        decl["parameters"]["properties"]["path"],
        json!({"type": "string", "default": "/shared"})
    );
    assert_eq!(body["generationConfig"]["maxOutputTokens"], 2048);
}

#[test]
fn signatures_and_function_responses_go_back() {
    let server = Server::start(vec![Reply::sse(&[&data(
        json!({"candidates": [{"content": {"parts": [{"text": "Done."}], "role": "model"}, "finishReason": "STOP"}]}),
    )])]);
    let mut req = request();
    req.messages.push(Message {
        tool_calls: vec![ToolCall {
            id: "call_0".into(),
            name: "file_list".into(),
            arguments: "{\"path\":\"/shared\"}".into(),
            provider_data: Some("sig-1".into()),
        }],
        ..Message::text(Role::Assistant, "")
    });
    req.messages.push(Message {
        tool_call_id: Some("call_0".into()),
        tool_name: Some("file_list".into()),
        ..Message::text(Role::Tool, "notes.md (12 bytes)")
    });
    let host = common::host();
    let events = ok(run(&host, spec(&server), &req).unwrap());
    assert_eq!(
        events,
        vec![
            LlmEvent::TextDelta("Done.".into()),
            LlmEvent::Stop(StopReason::EndTurn)
        ]
    );
    let body = server.requests()[0].json();
    assert_eq!(
        body["contents"][1],
        json!({"role": "model", "parts": [{"functionCall": {"name": "file_list", "args": {"path": "/shared"}}, "thoughtSignature": "sig-1"}]})
    );
    assert_eq!(
        body["contents"][2],
        json!({"role": "user", "parts": [{"functionResponse": {"name": "file_list", "response": {"content": "notes.md (12 bytes)"}}}]})
    );
}

#[test]
fn errors_mid_stream_cuts_and_http() {
    let host = common::host();
    let server = Server::start(vec![Reply::sse(&[
        &data(json!({"candidates": [{"content": {"parts": [{"text": "Hi"}], "role": "model"}}]})),
        &data(
            json!({"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}),
        ),
    ])]);
    let events = run(&host, spec(&server), &request()).unwrap();
    assert_eq!(
        events,
        vec![
            Ok(LlmEvent::TextDelta("Hi".into())),
            Err(LlmFailure::Provider(
                "UNAVAILABLE: The model is overloaded.".into()
            ))
        ]
    );

    // The body ends before any finishReason: not a complete response.
    let server = Server::start(vec![Reply::sse(&[&data(
        json!({"candidates": [{"content": {"parts": [{"text": "Hal"}], "role": "model"}}]}),
    )])]);
    let events = run(&host, spec(&server), &request()).unwrap();
    assert!(
        matches!(events.last(), Some(Err(LlmFailure::Transport(_)))),
        "{events:?}"
    );

    let server = Server::start(vec![Reply::status(
        400,
        "{\"error\":{\"code\":400,\"message\":\"API key not valid. Please pass a valid API key.\",\"status\":\"INVALID_ARGUMENT\"}}",
    )]);
    let err = run(&host, spec(&server), &request())
        .unwrap_err()
        .to_string();
    assert!(err.contains("API key not valid"), "{err}");
    assert_eq!(server.requests().len(), 1, "400 is not retried");

    let server = Server::start(vec![
        Reply::status(503, "{\"error\":{\"status\":\"UNAVAILABLE\"}}"),
        Reply::sse(&[&data(
            json!({"candidates": [{"content": {"parts": [{"text": "ok"}]}, "finishReason": "MAX_TOKENS"}]}),
        )]),
    ]);
    let events = ok(run(&host, spec(&server), &request()).unwrap());
    assert_eq!(
        events,
        vec![
            LlmEvent::TextDelta("ok".into()),
            LlmEvent::Stop(StopReason::MaxTokens)
        ]
    );
}
