//! The provider components against a real model (SmolLM2 under llama.cpp's llama-server),
//! behind `OXYDRA_REAL_LLM_URL`; `scripts/real-llm.sh` sets it up and runs these with
//! `--ignored`. They are ignored in the normal suite, where the scripted loopback servers
//! are the proof. A 135M model's answers are poor, so they check the protocol, not the
//! content.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;
#[path = "common/llm.rs"]
mod llm;
#[path = "common/server.rs"]
mod server;

use oxydra_runtime::llm::types::{LlmEvent, LlmRequest, Message, Role, StopReason};

fn real_url() -> String {
    std::env::var("OXYDRA_REAL_LLM_URL").unwrap_or_else(|_| {
        panic!("OXYDRA_REAL_LLM_URL is not set: run these with scripts/real-llm.sh")
    })
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
#[ignore = "needs a real model server: scripts/real-llm.sh"]
fn openai_chat_against_llama_server() {
    check("oxydra-provider-openai-chat", format!("{}/v1", real_url()));
}

#[test]
#[ignore = "needs a real model server: scripts/real-llm.sh"]
fn openai_responses_against_llama_server() {
    check(
        "oxydra-provider-openai-responses",
        format!("{}/v1", real_url()),
    );
}

#[test]
#[ignore = "needs a real model server: scripts/real-llm.sh"]
fn anthropic_against_llama_server() {
    check("oxydra-provider-anthropic", real_url());
}
