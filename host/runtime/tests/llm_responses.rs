//! `openai-responses` against a loopback server speaking the Responses streaming format
//! (typed `event:` lines) as OpenAI's API reference shows it.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;
#[path = "common/llm.rs"]
mod llm;
#[path = "common/server.rs"]
mod server;

use llm::{args, ok, run, split_at, text};
use oxydra_runtime::llm::types::*;
use server::{Reply, Server};

const KEY: &str = "sk-proj-responses-test-41";

fn spec(server: &Server) -> oxydra_runtime::llm::ProviderSpec {
    llm::spec(
        "openai",
        "oxydra-provider-openai-responses",
        &format!("{}/v1", server.url),
        KEY,
        "OPENAI_API_KEY",
    )
}

fn ev(kind: &str, data: serde_json::Value) -> String {
    let mut d = data;
    d["type"] = kind.into();
    format!("event: {kind}\ndata: {d}\n\n")
}

fn request() -> LlmRequest {
    LlmRequest {
        model: "gpt-4.1".into(),
        messages: vec![
            Message::text(Role::System, "Be brief."),
            Message::text(Role::User, "Weather in Paris and Bogotá?"),
        ],
        max_output_tokens: Some(1000),
        reasoning_effort: Some("low".into()),
        ..Default::default()
    }
}

fn completed(usage: serde_json::Value) -> String {
    ev(
        "response.completed",
        serde_json::json!({"sequence_number": 99, "response": {"id": "resp_1", "object": "response", "status": "completed", "usage": usage}}),
    )
}

#[test]
fn text_and_two_function_calls_split_anywhere() {
    use serde_json::json;
    let stream = [
        ev("response.created", json!({"sequence_number": 0, "response": {"id": "resp_1", "status": "in_progress"}})),
        ev("response.output_item.added", json!({"output_index": 0, "item": {"type": "message", "id": "msg_1", "role": "assistant", "content": []}})),
        ev("response.output_text.delta", json!({"item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": "Checking Bogotá "})),
        ev("response.output_text.delta", json!({"item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": "and Paris."})),
        ev("response.output_item.added", json!({"output_index": 1, "item": {"type": "function_call", "id": "fc_1", "call_id": "call_P", "name": "get_weather", "arguments": ""}})),
        ev("response.output_item.added", json!({"output_index": 2, "item": {"type": "function_call", "id": "fc_2", "call_id": "call_B", "name": "get_weather", "arguments": ""}})),
        ev("response.function_call_arguments.delta", json!({"item_id": "fc_1", "output_index": 1, "delta": "{\"city\":"})),
        ev("response.function_call_arguments.delta", json!({"item_id": "fc_2", "output_index": 2, "delta": "{\"city\":\"Bogotá\"}"})),
        ev("response.function_call_arguments.delta", json!({"item_id": "fc_1", "output_index": 1, "delta": "\"Paris\"}"})),
        ev("response.function_call_arguments.done", json!({"item_id": "fc_1", "output_index": 1, "arguments": "{\"city\":\"Paris\"}"})),
        ev("response.output_item.done", json!({"output_index": 1, "item": {"type": "function_call", "id": "fc_1", "call_id": "call_P", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}})),
        ev("response.output_item.done", json!({"output_index": 2, "item": {"type": "function_call", "id": "fc_2", "call_id": "call_B", "name": "get_weather", "arguments": "{\"city\":\"Bogotá\"}"}})),
        completed(json!({"input_tokens": 36, "input_tokens_details": {"cached_tokens": 4}, "output_tokens": 87, "output_tokens_details": {"reasoning_tokens": 64}, "total_tokens": 123})),
    ]
    .concat()
    .replace('\n', "\r\n");
    let cut_utf8 = stream.find("Bogot").unwrap() + 6; // inside the two bytes of á
    let cut_json = stream.find("\"delta\":\"{").unwrap() + 9;
    let server = Server::start(vec![Reply::sse_bytes(split_at(
        &stream,
        &[cut_utf8, cut_json],
    ))]);
    let host = common::host();
    let events = ok(run(&host, spec(&server), &request()).unwrap());
    assert_eq!(text(&events), "Checking Bogotá and Paris.");
    assert_eq!(args(&events, 1), "{\"city\":\"Paris\"}");
    assert_eq!(args(&events, 2), "{\"city\":\"Bogotá\"}");
    assert!(events.contains(&LlmEvent::ToolCallStart {
        index: 1,
        id: "call_P".into(),
        name: "get_weather".into()
    }));
    assert!(events.contains(&LlmEvent::ToolCallEnd {
        index: 2,
        provider_data: None
    }));
    let n = events.len();
    assert_eq!(
        events[n - 2],
        LlmEvent::Usage(Usage {
            input_tokens: 36,
            output_tokens: 87,
            cached_tokens: 4,
            reasoning_tokens: 64
        })
    );
    assert_eq!(events[n - 1], LlmEvent::Stop(StopReason::ToolCalls));

    let r = &server.requests()[0];
    assert_eq!(r.path, "/v1/responses");
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    let body = r.json();
    assert_eq!(body["store"], false);
    assert!(
        body.get("previous_response_id").is_none(),
        "no state shared between sessions"
    );
    assert_eq!(body["reasoning"]["effort"], "low");
    assert_eq!(body["max_output_tokens"], 1000);
    assert_eq!(
        body["input"][0],
        serde_json::json!({"role": "system", "content": "Be brief."})
    );
}

#[test]
fn tool_results_and_history_are_sent_whole_every_time() {
    let server = Server::start(vec![Reply::sse(&[
        &ev(
            "response.output_text.delta",
            serde_json::json!({"output_index": 0, "delta": "Sunny."}),
        ),
        &completed(serde_json::json!({"input_tokens": 1, "output_tokens": 1})),
    ])]);
    let mut req = request();
    req.messages.push(Message {
        tool_calls: vec![ToolCall {
            id: "call_P".into(),
            name: "get_weather".into(),
            arguments: "{\"city\":\"Paris\"}".into(),
            provider_data: None,
        }],
        ..Message::text(Role::Assistant, "")
    });
    req.messages.push(Message {
        tool_call_id: Some("call_P".into()),
        ..Message::text(Role::Tool, "18C")
    });
    let host = common::host();
    let events = ok(run(&host, spec(&server), &req).unwrap());
    assert_eq!(events.last(), Some(&LlmEvent::Stop(StopReason::EndTurn)));
    let body = server.requests()[0].json();
    assert_eq!(
        body["input"][2],
        serde_json::json!({"type": "function_call", "call_id": "call_P", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"})
    );
    assert_eq!(
        body["input"][3],
        serde_json::json!({"type": "function_call_output", "call_id": "call_P", "output": "18C"})
    );
    let mut req = request();
    req.options = vec![("previous_response_id".into(), "\"resp_0\"".into())];
    let err = run(&host, spec(&server), &req).unwrap_err().to_string();
    assert!(
        err.contains("previous_response_id is not supported"),
        "{err}"
    );
}

#[test]
fn failed_error_incomplete_and_http_errors() {
    let host = common::host();
    let server = Server::start(vec![Reply::sse(&[
        &ev(
            "response.output_text.delta",
            serde_json::json!({"output_index": 0, "delta": "Hi"}),
        ),
        &ev(
            "response.failed",
            serde_json::json!({"response": {"status": "failed", "error": {"code": "server_error", "message": "The model failed"}}}),
        ),
    ])]);
    let events = run(&host, spec(&server), &request()).unwrap();
    assert_eq!(
        events,
        vec![
            Ok(LlmEvent::TextDelta("Hi".into())),
            Err(LlmFailure::Provider(
                "server_error: The model failed".into()
            ))
        ]
    );

    let server = Server::start(vec![Reply::sse(&[
        &ev(
            "response.output_text.delta",
            serde_json::json!({"output_index": 0, "delta": "Hi"}),
        ),
        &ev(
            "error",
            serde_json::json!({"code": "rate_limit_exceeded", "message": "Slow down", "param": null}),
        ),
    ])]);
    let events = run(&host, spec(&server), &request()).unwrap();
    assert_eq!(
        events[1],
        Err(LlmFailure::Provider(
            "rate_limit_exceeded: Slow down".into()
        ))
    );

    let server = Server::start(vec![Reply::sse(&[
        &ev(
            "response.output_text.delta",
            serde_json::json!({"output_index": 0, "delta": "Long"}),
        ),
        &ev(
            "response.incomplete",
            serde_json::json!({"response": {"status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}, "usage": {"input_tokens": 3, "output_tokens": 1000}}}),
        ),
    ])]);
    let events = ok(run(&host, spec(&server), &request()).unwrap());
    assert_eq!(events.last(), Some(&LlmEvent::Stop(StopReason::MaxTokens)));

    let server = Server::start(vec![
        Reply::status(429, "{\"error\":{\"message\":\"Rate limit\"}}").header("retry-after", "0.2"),
        Reply::status(500, "{\"error\":{\"message\":\"oops\"}}"),
        Reply::sse(&[
            &ev(
                "response.output_text.delta",
                serde_json::json!({"output_index": 0, "delta": "ok"}),
            ),
            &completed(serde_json::json!({})),
        ]),
    ]);
    assert_eq!(
        text(&ok(run(&host, spec(&server), &request()).unwrap())),
        "ok"
    );
    assert_eq!(server.requests().len(), 3);
}
