//! The provider components against a real model (SmolLM2 under llama.cpp's llama-server),
//! behind `OXYDRA_REAL_LLM_URL`; `scripts/real-llm.sh` sets it up. Without the variable
//! these tests say so and pass: the scripted loopback suites are the always-on proof.
//! A 135M model's answers are poor, so they check the protocol, not the content.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;
#[path = "common/llm.rs"]
mod llm;
#[path = "common/server.rs"]
mod server;

use oxydra_runtime::llm::types::{LlmEvent, LlmRequest, Message, Role, StopReason};

fn real_url() -> Option<String> {
    let url = std::env::var("OXYDRA_REAL_LLM_URL").ok();
    if url.is_none() {
        eprintln!(
            "OXYDRA_REAL_LLM_URL is not set: skipping the real-model run (scripts/real-llm.sh runs it)"
        );
    }
    url
}

fn check(krate: &str, base: String) {
    let host = common::host();
    let req = LlmRequest {
        model: "smollm2".into(),
        messages: vec![
            Message::text(Role::System, "You are helpful."),
            Message::text(Role::User, "Say hello in five words."),
        ],
        max_output_tokens: Some(48),
        temperature: Some(0.0),
        ..Default::default()
    };
    let events =
        llm::ok(llm::run(&host, llm::spec("local", krate, &base, "", "NO_KEY"), &req).unwrap());
    let text = llm::text(&events);
    eprintln!("{krate}: {} events, text {text:?}", events.len());
    assert!(!text.trim().is_empty(), "{krate}: no text");
    assert!(
        events
            .iter()
            .filter(|e| matches!(e, LlmEvent::TextDelta(_)))
            .count()
            > 1,
        "{krate}: streamed in pieces"
    );
    assert!(
        matches!(
            events.last(),
            Some(LlmEvent::Stop(StopReason::EndTurn | StopReason::MaxTokens))
        ),
        "{krate}: {:?}",
        events.last()
    );
}

#[test]
fn openai_chat_against_llama_server() {
    if let Some(url) = real_url() {
        check("oxydra-provider-openai-chat", format!("{url}/v1"));
    }
}

#[test]
fn openai_responses_against_llama_server() {
    if let Some(url) = real_url() {
        check("oxydra-provider-openai-responses", format!("{url}/v1"));
    }
}

#[test]
fn anthropic_against_llama_server() {
    if let Some(url) = real_url() {
        check("oxydra-provider-anthropic", url);
    }
}
