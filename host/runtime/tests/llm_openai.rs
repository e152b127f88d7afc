//! `openai-chat` against a loopback server speaking Chat Completions SSE byte for byte
//! as OpenAI's API reference shows it, including the awkward cases.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;
#[path = "common/server.rs"]
mod server;

use oxydra_runtime::llm::types::{
    LlmEvent, LlmFailure, LlmRequest, Message, Role, StopReason, ToolDefinition, Usage,
};
use oxydra_runtime::llm::{ProviderSpec, RetryPolicy};
use oxydra_runtime::{ComponentHost, Limits};
use server::{Piece, Reply, Server};
use std::time::{Duration, Instant};

const KEY: &str = "sk-test-oxydra-7d1f3a9c";

fn spec(base_url: &str) -> ProviderSpec {
    ProviderSpec {
        name: "openai".into(),
        wasm: common::wasm("oxydra-provider-openai-chat"),
        expected_sha256: None,
        base_url: Some(base_url.to_string()),
        api_key: Some(KEY.into()),
        api_key_env: Some("OPENAI_API_KEY".into()),
        extra_headers: vec![],
        limits: Limits {
            deadline_ms: 30_000,
            ..Limits::default()
        },
        retry: RetryPolicy {
            backoff_base: Duration::from_millis(20),
            backoff_max: Duration::from_millis(100),
            ..RetryPolicy::default()
        },
    }
}

fn request() -> LlmRequest {
    LlmRequest {
        model: "gpt-4o-mini".into(),
        messages: vec![
            Message::text(Role::System, "be brief"),
            Message::text(Role::User, "hi"),
        ],
        max_output_tokens: Some(256),
        ..Default::default()
    }
}

fn run(
    host: &ComponentHost,
    server: &Server,
    req: &LlmRequest,
) -> Result<Vec<Result<LlmEvent, LlmFailure>>, LlmFailure> {
    let p = host
        .load_provider(spec(&format!("{}/v1", server.url)))
        .unwrap();
    let c = host.complete(&p, req)?;
    Ok(c.collect())
}

fn text(events: &[Result<LlmEvent, LlmFailure>]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            Ok(LlmEvent::TextDelta(t)) => Some(t.as_str()),
            _ => None,
        })
        .collect()
}

fn chunk(content: &str) -> String {
    format!(
        "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":{}}},\"finish_reason\":null}}]}}\n\n",
        serde_json::to_string(content).unwrap()
    )
}

const FINISH_STOP: &str = "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n";
const USAGE: &str = "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":19,\"completion_tokens\":10,\"total_tokens\":29,\"prompt_tokens_details\":{\"cached_tokens\":3},\"completion_tokens_details\":{\"reasoning_tokens\":0}}}\n\n";

#[test]
fn streams_text_split_anywhere_with_crlf_comments_and_usage_last() {
    // One stream, CRLF line endings, a keep-alive comment, an event split in the middle of
    // a UTF-8 character and another in the middle of its JSON.
    let first = chunk("Hello").replace('\n', "\r\n");
    let second = chunk(" wörld ☃").replace('\n', "\r\n");
    let sb = second.as_bytes();
    let cut_utf8 = second.find('ö').unwrap() + 1; // inside the two bytes of ö
    let cut_json = second.find("\"delta\"").unwrap() + 3;
    let pieces: Vec<Vec<u8>> = vec![
        b": keep-alive\r\n\r\n".to_vec(),
        first.as_bytes()[..10].to_vec(),
        first.as_bytes()[10..].to_vec(),
        sb[..cut_json].to_vec(),
        sb[cut_json..cut_utf8].to_vec(),
        sb[cut_utf8..].to_vec(),
        FINISH_STOP.replace('\n', "\r\n").into_bytes(),
        USAGE.replace('\n', "\r\n").into_bytes(),
        b"data: [DONE]\r\n\r\n".to_vec(),
    ];
    let server = Server::start(vec![Reply::sse_bytes(pieces)]);
    let host = common::host();
    let events = run(&host, &server, &request()).unwrap();
    assert_eq!(text(&events), "Hello wörld ☃");
    let tail: Vec<LlmEvent> = events
        .iter()
        .rev()
        .take(2)
        .rev()
        .map(|e| e.clone().unwrap())
        .collect();
    assert_eq!(
        tail,
        vec![
            LlmEvent::Usage(Usage {
                input_tokens: 19,
                output_tokens: 10,
                cached_tokens: 3,
                reasoning_tokens: 0
            }),
            LlmEvent::Stop(StopReason::EndTurn)
        ]
    );
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    let r = &reqs[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/v1/chat/completions")
    );
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {KEY}").as_str()),
        "the host added the key"
    );
    let body = r.json();
    assert_eq!(body["model"], "gpt-4o-mini");
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"]["include_usage"], true);
    assert_eq!(body["max_completion_tokens"], 256);
    assert_eq!(
        body["messages"],
        serde_json::json!([{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}])
    );
    assert!(!r.body.contains(KEY));
}

#[test]
fn parallel_tool_calls_accumulate_by_index() {
    let call = |index: u32, id: Option<&str>, name: Option<&str>, args: &str| {
        let mut c = serde_json::json!({"index": index, "function": {"arguments": args}});
        if let Some(id) = id {
            c["id"] = id.into();
            c["type"] = "function".into();
        }
        if let Some(name) = name {
            c["function"]["name"] = name.into();
        }
        format!(
            "data: {}\n\n",
            serde_json::json!({"id": "c", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"tool_calls": [c]}, "finish_reason": null}]})
        )
    };
    let server = Server::start(vec![Reply::sse(&[
        &call(0, Some("call_a"), Some("file_read"), ""),
        &call(1, Some("call_b"), Some("file_list"), ""),
        &call(0, None, None, "{\"pa"),
        &call(1, None, None, "{\"path\":"),
        &call(0, None, None, "th\":\"/shared/é.txt\"}"),
        &call(1, None, None, "\"/tmp\"}"),
        "data: {\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
        "data: [DONE]\n\n",
    ])]);
    let host = common::host();
    let mut req = request();
    req.tools = vec![ToolDefinition {
        name: "file_read".into(),
        description: "read".into(),
        parameters_schema: "{\"type\":\"object\"}".into(),
    }];
    let events: Vec<LlmEvent> = run(&host, &server, &req)
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let mut args = [String::new(), String::new()];
    for e in &events {
        if let LlmEvent::ToolCallArguments { index, fragment } = e {
            args[*index as usize].push_str(fragment);
        }
    }
    assert_eq!(args[0], "{\"path\":\"/shared/é.txt\"}");
    assert_eq!(args[1], "{\"path\":\"/tmp\"}");
    assert_eq!(
        events[0],
        LlmEvent::ToolCallStart {
            index: 0,
            id: "call_a".into(),
            name: "file_read".into()
        }
    );
    assert_eq!(
        events[1],
        LlmEvent::ToolCallStart {
            index: 1,
            id: "call_b".into(),
            name: "file_list".into()
        }
    );
    assert!(events.contains(&LlmEvent::ToolCallEnd {
        index: 0,
        provider_data: None
    }));
    assert!(events.contains(&LlmEvent::ToolCallEnd {
        index: 1,
        provider_data: None
    }));
    assert_eq!(events.last(), Some(&LlmEvent::Stop(StopReason::ToolCalls)));
    let sent = server.requests()[0].json();
    assert_eq!(sent["tools"][0]["function"]["name"], "file_read");
    assert_eq!(sent["tools"][0]["type"], "function");
}

#[test]
fn compatible_servers_whole_call_in_one_chunk_no_usage_unknown_finish_no_done() {
    // Ollama/llama.cpp style: the whole call at once, no usage, no [DONE], an odd reason.
    let server = Server::start(vec![Reply::sse(&[
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"id\":\"x1\",\"type\":\"function\",\"function\":{\"name\":\"file_list\",\"arguments\":\"{}\"}}]},\"finish_reason\":null}],\"system_fingerprint\":\"fp\",\"x_extra\":{\"a\":1}}\n\n",
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"eos_token\"}]}\n\n",
    ])]);
    let host = common::host();
    let events: Vec<LlmEvent> = run(&host, &server, &request())
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        events,
        vec![
            LlmEvent::ToolCallStart {
                index: 0,
                id: "x1".into(),
                name: "file_list".into()
            },
            LlmEvent::ToolCallArguments {
                index: 0,
                fragment: "{}".into()
            },
            LlmEvent::ToolCallEnd {
                index: 0,
                provider_data: None
            },
            LlmEvent::Stop(StopReason::Other("eos_token".into())),
        ]
    );
}

#[test]
fn textual_tool_calls_are_parsed_when_asked_for() {
    let server = Server::start(vec![Reply::sse(&[
        &chunk("I'll check.\n<tool_"),
        &chunk(
            "call>{\"name\": \"file_read\", \"arguments\": {\"path\": \"/shared/a\"}}</tool_call>",
        ),
        FINISH_STOP,
        "data: [DONE]\n\n",
    ])]);
    let host = common::host();
    let mut req = request();
    req.options = vec![("oxydra.textual_tool_calls".into(), "true".into())];
    let events: Vec<LlmEvent> = run(&host, &server, &req)
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        events,
        vec![
            LlmEvent::TextDelta("I'll check.\n".into()),
            LlmEvent::ToolCallStart {
                index: 0,
                id: "call_0".into(),
                name: "file_read".into()
            },
            LlmEvent::ToolCallArguments {
                index: 0,
                fragment: "{\"path\":\"/shared/a\"}".into()
            },
            LlmEvent::ToolCallEnd {
                index: 0,
                provider_data: None
            },
            LlmEvent::Stop(StopReason::ToolCalls),
        ]
    );
    assert!(
        server.requests()[0]
            .json()
            .get("oxydra.textual_tool_calls")
            .is_none(),
        "our options stay ours"
    );
}

#[test]
fn an_error_event_mid_stream_ends_the_stream_without_replay() {
    let server = Server::start(vec![
        Reply::sse(&[
            &chunk("partial "),
            "data: {\"error\":{\"message\":\"The server is overloaded\",\"type\":\"server_error\"}}\n\n",
        ]),
        Reply::sse(&[
            &chunk("SHOULD NOT BE SEEN"),
            FINISH_STOP,
            "data: [DONE]\n\n",
        ]),
    ]);
    let host = common::host();
    let events = run(&host, &server, &request()).unwrap();
    assert_eq!(events[0], Ok(LlmEvent::TextDelta("partial ".into())));
    assert_eq!(
        events[1],
        Err(LlmFailure::Provider("The server is overloaded".into()))
    );
    assert_eq!(events.len(), 2);
    assert_eq!(
        server.requests().len(),
        1,
        "nothing is replayed after the first delta"
    );
}

#[test]
fn a_cut_connection_is_a_clear_error() {
    let mut reply = Reply::sse(&[&chunk("Hel"), &chunk("lo")]);
    reply.body.push(Piece::Bytes(
        b"data: {\"choices\":[{\"index\":0,\"del".to_vec(),
    ));
    reply.body.push(Piece::Cut);
    let server = Server::start(vec![reply]);
    let host = common::host();
    let events = run(&host, &server, &request()).unwrap();
    assert_eq!(text(&events), "Hello");
    let last = events.last().unwrap().clone().unwrap_err();
    assert!(matches!(last, LlmFailure::Transport(_)), "{last:?}");
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn unauthorized_names_the_variable_and_is_not_retried() {
    let server = Server::start(vec![Reply::status(
        401,
        "{\"error\":{\"message\":\"Incorrect API key provided\",\"type\":\"invalid_request_error\",\"code\":\"invalid_api_key\"}}",
    )]);
    let host = common::host();
    let err = run(&host, &server, &request()).unwrap_err().to_string();
    assert!(
        err.starts_with("provider `openai` rejected the credentials (HTTP 401/403: "),
        "{err}"
    );
    assert!(err.contains("Incorrect API key provided"), "{err}");
    assert!(
        err.ends_with(
            "check the key in OPENAI_API_KEY (named by api_key_env in [providers.registry.openai])"
        ),
        "{err}"
    );
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn rate_limited_with_retry_after_then_success() {
    let server = Server::start(vec![
        Reply::status(429, "{\"error\":{\"message\":\"Rate limit reached\"}}")
            .header("retry-after", "1"),
        Reply::sse(&[&chunk("ok"), FINISH_STOP, "data: [DONE]\n\n"]),
    ]);
    let host = common::host();
    let started = Instant::now();
    let events = run(&host, &server, &request()).unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "Retry-After: 1 was honoured ({:?})",
        started.elapsed()
    );
    assert_eq!(text(&events), "ok");
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn server_error_then_success_and_persistent_failure() {
    let server = Server::start(vec![
        Reply::status(500, "{\"error\":{\"message\":\"internal\"}}"),
        Reply::sse(&[&chunk("recovered"), FINISH_STOP, "data: [DONE]\n\n"]),
    ]);
    let host = common::host();
    assert_eq!(text(&run(&host, &server, &request()).unwrap()), "recovered");
    assert_eq!(server.requests().len(), 2);

    let server = Server::start(vec![
        Reply::status(503, "busy"),
        Reply::status(502, "bad gateway"),
        Reply::status(500, "still down"),
    ]);
    let err = run(&host, &server, &request()).unwrap_err().to_string();
    assert_eq!(
        err,
        "provider `openai` failed after 3 attempts; the last: the provider answered HTTP 500: still down"
    );
    assert_eq!(server.requests().len(), 3);
}
