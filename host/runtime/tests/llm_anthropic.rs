//! `anthropic` against a loopback server speaking the Messages streaming format byte for
//! byte as Anthropic's documentation shows it.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;
#[path = "common/llm.rs"]
mod llm;
#[path = "common/server.rs"]
mod server;

use llm::{args, ok, run, split_at, text};
use oxydra_runtime::llm::types::*;
use server::{Reply, Server};

const KEY: &str = "sk-ant-api03-test-b6f2";

fn spec(server: &Server) -> oxydra_runtime::llm::ProviderSpec {
    llm::spec(
        "anthropic",
        "oxydra-provider-anthropic",
        &server.url,
        KEY,
        "ANTHROPIC_API_KEY",
    )
}

fn request() -> LlmRequest {
    LlmRequest {
        model: "claude-sonnet-4-5".into(),
        messages: vec![Message::text(Role::System, "You are terse."), Message::text(Role::User, "What's the weather in SF?")],
        tools: vec![ToolDefinition {
            name: "get_weather".into(),
            description: "Get the current weather".into(),
            parameters_schema: r#"{"type":"object","properties":{"location":{"type":"string"}},"required":["location"]}"#.into(),
        }],
        max_output_tokens: Some(8192),
        ..Default::default()
    }
}

/// The stream from Anthropic's "streaming with tool use" example, with thinking, a
/// ping, and Anthropic's own `event:` lines.
const STREAM: &str = "event: message_start\n\
data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_014p7gG3wDgGV9EUtLvnow3U\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5\",\"stop_sequence\":null,\"usage\":{\"input_tokens\":472,\"output_tokens\":2,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":100},\"content\":[],\"stop_reason\":null}}\n\n\
event: content_block_start\n\
data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\"}}\n\n\
event: ping\n\
data: {\"type\": \"ping\"}\n\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"The user wants weather. \"}}\n\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds\"}}\n\n\
event: content_block_stop\n\
data: {\"type\":\"content_block_stop\",\"index\":0}\n\n\
event: content_block_start\n\
data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"Okay, let's check the weather for San Francisco, CA — \"}}\n\n\
event: content_block_stop\n\
data: {\"type\":\"content_block_stop\",\"index\":1}\n\n\
event: content_block_start\n\
data: {\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_01T1x1fJ34qAmk2tNTrN7Up6\",\"name\":\"get_weather\",\"input\":{}}}\n\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\"}}\n\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"location\\\":\"}}\n\n\
event: content_block_delta\n\
data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\" \\\"San Francisco, CA\\\"}\"}}\n\n\
event: content_block_stop\n\
data: {\"type\":\"content_block_stop\",\"index\":2}\n\n\
event: message_delta\n\
data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":89}}\n\n\
event: message_stop\n\
data: {\"type\":\"message_stop\"}\n\n";

#[test]
fn thinking_text_and_tool_use_split_anywhere() {
    let crlf = STREAM.replace('\n', "\r\n");
    let dash = crlf.find('—').unwrap() + 1; // inside the 3-byte em dash
    let json = crlf.find("partial_json\":\"{").unwrap() + 5;
    let server = Server::start(vec![Reply::sse_bytes(split_at(&crlf, &[40, dash, json]))]);
    let host = common::host();
    let events = ok(run(&host, spec(&server), &request()).unwrap());
    assert_eq!(
        events[0],
        LlmEvent::ReasoningDelta("The user wants weather. ".into())
    );
    assert_eq!(
        events[1],
        LlmEvent::ReasoningSignature(
            "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds".into()
        )
    );
    assert_eq!(
        text(&events),
        "Okay, let's check the weather for San Francisco, CA — "
    );
    assert!(events.contains(&LlmEvent::ToolCallStart {
        index: 2,
        id: "toolu_01T1x1fJ34qAmk2tNTrN7Up6".into(),
        name: "get_weather".into()
    }));
    assert_eq!(args(&events, 2), "{\"location\": \"San Francisco, CA\"}");
    let n = events.len();
    assert_eq!(
        events[n - 3],
        LlmEvent::ToolCallEnd {
            index: 2,
            provider_data: None
        }
    );
    assert_eq!(
        events[n - 2],
        LlmEvent::Usage(Usage {
            input_tokens: 572,
            output_tokens: 89,
            cached_tokens: 100,
            reasoning_tokens: 0
        })
    );
    assert_eq!(events[n - 1], LlmEvent::Stop(StopReason::ToolCalls));

    let r = &server.requests()[0];
    assert_eq!(r.path, "/v1/messages");
    assert_eq!(r.header("x-api-key"), Some(KEY));
    assert_eq!(r.header("anthropic-version"), Some("2023-06-01"));
    assert!(r.header("authorization").is_none());
    let body = r.json();
    assert_eq!(
        body["max_tokens"], 8192,
        "from the request, never hard-coded"
    );
    assert_eq!(body["stream"], true);
    assert_eq!(body["system"][0]["text"], "You are terse.");
    assert_eq!(body["system"][0]["cache_control"]["type"], "ephemeral");
    assert_eq!(body["tools"][0]["cache_control"]["type"], "ephemeral");
    assert_eq!(body["tools"][0]["input_schema"]["required"][0], "location");
    assert_eq!(
        body["messages"],
        serde_json::json!([{"role": "user", "content": [{"type": "text", "text": "What's the weather in SF?"}]}])
    );
}

#[test]
fn thinking_blocks_and_tool_results_go_back_intact() {
    let server = Server::start(vec![Reply::sse(&[
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"It is 15°C.\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":7}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    ])]);
    let mut req = request();
    req.reasoning_effort = Some("medium".into());
    req.messages.push(Message {
        role: Role::Assistant,
        content: vec![ContentPart::Text("Checking.".into())],
        tool_calls: vec![ToolCall {
            id: "toolu_1".into(),
            name: "get_weather".into(),
            arguments: "{\"location\":\"SF\"}".into(),
            provider_data: None,
        }],
        tool_call_id: None,
        tool_name: None,
        reasoning: vec![Reasoning {
            text: "Need the tool.".into(),
            signature: Some("sig-abc".into()),
            redacted: None,
        }],
    });
    req.messages.push(Message {
        role: Role::Tool,
        tool_call_id: Some("toolu_1".into()),
        tool_name: Some("get_weather".into()),
        ..Message::text(Role::Tool, "15°C, sunny")
    });
    let host = common::host();
    let events = ok(run(&host, spec(&server), &req).unwrap());
    assert_eq!(text(&events), "It is 15°C.");
    assert_eq!(events.last(), Some(&LlmEvent::Stop(StopReason::EndTurn)));
    let body = server.requests()[0].json();
    assert_eq!(
        body["thinking"],
        serde_json::json!({"type": "enabled", "budget_tokens": 4096})
    );
    assert_eq!(
        body["messages"][1],
        serde_json::json!({"role": "assistant", "content": [
            {"type": "thinking", "thinking": "Need the tool.", "signature": "sig-abc"},
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"location": "SF"}}
        ]})
    );
    assert_eq!(
        body["messages"][2],
        serde_json::json!({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "15°C, sunny"}]})
    );
}

#[test]
fn an_error_event_mid_stream() {
    let server = Server::start(vec![Reply::sse(&[
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hel\"}}\n\n",
        "event: error\ndata: {\"type\": \"error\", \"error\": {\"type\": \"overloaded_error\", \"message\": \"Overloaded\"}}\n\n",
    ])]);
    let host = common::host();
    let events = run(&host, spec(&server), &request()).unwrap();
    assert_eq!(
        events,
        vec![
            Ok(LlmEvent::TextDelta("Hel".into())),
            Err(LlmFailure::Provider("overloaded_error: Overloaded".into()))
        ]
    );
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn a_cut_stream_and_http_errors() {
    let host = common::host();
    // Cut before any event: retried. Cut after a delta: reported, never replayed.
    let start =
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{}}}\n\n";
    let delta = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"partial\"}}\n\n";
    let server = Server::start(vec![Reply::sse(&[start]), Reply::sse(&[start, delta])]);
    let events = run(&host, spec(&server), &request()).unwrap();
    assert_eq!(
        events,
        vec![
            Ok(LlmEvent::TextDelta("partial".into())),
            Err(LlmFailure::Transport(
                "the connection closed before message_stop".into()
            ))
        ]
    );
    assert_eq!(server.requests().len(), 2);

    let server = Server::start(vec![Reply::status(
        401,
        "{\"type\":\"error\",\"error\":{\"type\":\"authentication_error\",\"message\":\"invalid x-api-key\"}}",
    )]);
    let err = run(&host, spec(&server), &request())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("invalid x-api-key") && err.contains("ANTHROPIC_API_KEY"),
        "{err}"
    );

    // 529 (overloaded) is a 5xx: retried, then success.
    let server = Server::start(vec![
        Reply::status(
            529,
            "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}",
        ),
        Reply::sse(&[
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":1}}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        ]),
    ]);
    let events = ok(run(&host, spec(&server), &request()).unwrap());
    assert_eq!(events.last(), Some(&LlmEvent::Stop(StopReason::EndTurn)));
    assert_eq!(server.requests().len(), 2);

    // Without max_output_tokens the adapter refuses rather than guessing.
    let mut req = request();
    req.max_output_tokens = None;
    let server = Server::start(vec![]);
    let err = run(&host, spec(&server), &req).unwrap_err().to_string();
    assert!(err.contains("Anthropic needs max_tokens"), "{err}");
    assert!(server.requests().is_empty());
}
