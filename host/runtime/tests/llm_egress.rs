//! The credential is added by the host at the boundary and never enters the provider
//! component; a provider reaches its configured origin and nothing else.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;
#[path = "common/server.rs"]
mod server;

use oxydra_runtime::Limits;
use oxydra_runtime::llm::types::{LlmEvent, LlmRequest, Message, Role};
use oxydra_runtime::llm::{ProviderSpec, RetryPolicy};
use server::{Reply, Server};

const KEY: &str = "sk-live-never-in-the-component-5e0c";

fn spy(base_url: &str) -> ProviderSpec {
    ProviderSpec {
        name: "spy".into(),
        wasm: common::wasm("fx-provider-spy"),
        expected_sha256: None,
        base_url: Some(base_url.into()),
        api_key: Some(KEY.into()),
        api_key_env: Some("SPY_KEY".into()),
        extra_headers: vec![("x-org".into(), "acme".into())],
        limits: Limits::default(),
        retry: RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        },
    }
}

fn request(options: Vec<(String, String)>) -> LlmRequest {
    LlmRequest {
        model: "m".into(),
        messages: vec![Message::text(Role::User, "hi")],
        options,
        ..Default::default()
    }
}

#[test]
fn the_api_key_never_enters_the_component() {
    let server = Server::start(vec![Reply::status(200, "plain response")]);
    let host = common::host();
    let p = host.load_provider(spy(&server.url)).unwrap();
    let events: Vec<LlmEvent> = host
        .complete(&p, &request(vec![]))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let LlmEvent::TextDelta(seen) = &events[0] else {
        panic!("{events:?}")
    };
    assert!(seen.contains("env=[]"), "no environment: {seen}");
    assert!(seen.contains("args=[]"), "no arguments: {seen}");
    assert!(!seen.contains(KEY), "the component saw the key: {seen}");
    assert!(!seen.contains("sk-live"), "{seen}");
    let req = &server.requests()[0];
    assert_eq!(
        req.header("authorization"),
        Some(format!("Bearer {KEY}").as_str()),
        "yet the server got it"
    );
    assert_eq!(
        req.header("x-org"),
        Some("acme"),
        "operator headers are added too"
    );
    assert_eq!(req.header("x-spy"), Some("1"));
}

#[test]
fn a_provider_reaches_only_its_configured_origin() {
    let granted = Server::start(vec![]);
    let other = Server::start(vec![Reply::status(200, "should never be reached")]);
    let host = common::host();
    let p = host.load_provider(spy(&granted.url)).unwrap();
    for target in [
        other.url.clone(),
        "http://169.254.169.254/latest".to_string(),
        granted.url.replace("127.0.0.1", "localhost"),
    ] {
        let err = host
            .complete(
                &p,
                &request(vec![("target".into(), format!("\"{target}\""))]),
            )
            .err()
            .expect("denied");
        let msg = err.to_string();
        assert!(
            msg.contains("is not its configured base URL; the request was refused"),
            "{target}: {msg}"
        );
    }
    assert!(
        other.requests().is_empty(),
        "nothing reached the other server"
    );
    assert!(granted.requests().is_empty());
}

#[test]
fn a_tool_profile_cannot_load_a_provider_and_providers_get_no_files() {
    let host = common::host();
    let s = common::spec(
        "spy",
        "fx-provider-spy",
        oxydra_runtime::Profile::FileReadOnly,
    );
    let err = host.load(&s).err().expect("refused").to_string();
    assert!(
        err.contains("`wasi:http/types@0.2.12`")
            || err.contains("`wasi:http/outgoing-handler@0.2.12`"),
        "{err}"
    );
    assert!(
        err.contains("which its grant `file-read-only` does not include"),
        "{err}"
    );
    let err = host
        .load_provider(ProviderSpec {
            wasm: common::wasm("fx-ro-writes"),
            ..spy("http://127.0.0.1:9")
        })
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("imports `oxydra:fs/read@0.1.0`, `oxydra:fs/write@0.1.0`, which its grant `llm-provider` does not include"), "{err}");
}
