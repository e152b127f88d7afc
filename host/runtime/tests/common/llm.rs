//! Shared helpers for provider tests.
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use crate::server::Server;
use oxydra_runtime::llm::types::{LlmEvent, LlmFailure, LlmRequest};
use oxydra_runtime::llm::{ProviderSpec, RetryPolicy};
use oxydra_runtime::{ComponentHost, Limits};
use std::time::Duration;

pub fn spec(name: &str, krate: &str, base_url: &str, key: &str, env: &str) -> ProviderSpec {
    ProviderSpec {
        name: name.into(),
        wasm: crate::common::wasm(krate),
        expected_sha256: None,
        base_url: Some(base_url.to_string()),
        api_key: Some(key.into()),
        api_key_env: Some(env.into()),
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

pub fn run(
    host: &ComponentHost,
    spec: ProviderSpec,
    req: &LlmRequest,
) -> Result<Vec<Result<LlmEvent, LlmFailure>>, LlmFailure> {
    let p = host.load_provider(spec).unwrap();
    Ok(host.complete(&p, req)?.collect())
}

pub fn ok(events: Vec<Result<LlmEvent, LlmFailure>>) -> Vec<LlmEvent> {
    events
        .into_iter()
        .map(|e| e.unwrap_or_else(|e| panic!("unexpected error: {e}")))
        .collect()
}

pub fn text(events: &[LlmEvent]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            LlmEvent::TextDelta(t) => Some(t.as_str()),
            _ => None,
        })
        .collect()
}

/// The arguments of tool call `index`, reassembled.
pub fn args(events: &[LlmEvent], index: u32) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            LlmEvent::ToolCallArguments { index: i, fragment } if *i == index => {
                Some(fragment.as_str())
            }
            _ => None,
        })
        .collect()
}

/// Split a string into pieces at the given byte offsets (each piece is one TCP write).
pub fn split_at(s: &str, cuts: &[usize]) -> Vec<Vec<u8>> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut last = 0;
    for &c in cuts {
        out.push(b[last..c].to_vec());
        last = c;
    }
    out.push(b[last..].to_vec());
    out
}

pub fn unused(_: &Server) {}
