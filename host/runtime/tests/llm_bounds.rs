//! Every wait of a provider call is bounded: by the caller's deadline, by the time to
//! first byte and between bytes, by the per-event deadline (`runtime.turn_timeout_secs`), and by the caller's
//! cancel flag; the response by a byte cap; a `Retry-After` past the cap is reported as
//! what it is. Each case is driven by a loopback server that misbehaves on purpose, and
//! each test is bounded: it fails (instead of hanging) if the call outlives a bound.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;
#[path = "common/llm.rs"]
mod llm;
#[path = "common/server.rs"]
mod server;

use oxydra_runtime::llm::types::{
    GiveUp, LlmEvent, LlmFailure, LlmRequest, Message, Role, TimeoutPhase,
};
use oxydra_runtime::llm::{CallOptions, HttpLimits, ProviderSpec};
use server::{Piece, Reply, Server};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Far longer than any bounded call here takes, far shorter than the old hard bounds
/// (300 s to first byte, 120 s between bytes).
const GUARD: Duration = Duration::from_secs(20);

fn spec(server_url: &str) -> ProviderSpec {
    llm::spec(
        "openai",
        "oxydra-provider-openai-chat",
        &format!("{server_url}/v1"),
        "sk-test",
        "OPENAI_API_KEY",
    )
}

fn request() -> LlmRequest {
    LlmRequest {
        model: "gpt-4o-mini".into(),
        messages: vec![Message::text(Role::User, "hi")],
        max_output_tokens: Some(64),
        ..Default::default()
    }
}

fn chunk(content: &str) -> String {
    format!(
        "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":{}}},\"finish_reason\":null}}]}}\n\n",
        serde_json::to_string(content).unwrap()
    )
}

/// What one bounded call gave: the error of `complete_with`, or the stream's events.
type Outcome = Result<Vec<Result<LlmEvent, LlmFailure>>, LlmFailure>;

/// Run a call on its own thread and fail the test if it is still running after [`GUARD`]
/// (before the fix these calls ran for minutes).
fn bounded(spec: ProviderSpec, http: HttpLimits, options: CallOptions) -> (Outcome, Duration) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let host = common::host();
        let p = host.load_provider_with(spec, http).unwrap();
        let started = Instant::now();
        let out = host
            .complete_with(&p, &request(), &options)
            .map(|c| c.collect::<Vec<_>>());
        let _ = tx.send((out, started.elapsed()));
    });
    rx.recv_timeout(GUARD)
        .unwrap_or_else(|_| panic!("the provider call was still running after {GUARD:?}"))
}

fn no_retries(mut s: ProviderSpec) -> ProviderSpec {
    s.retry.max_attempts = 1;
    s
}

#[test]
fn a_server_that_never_answers_is_stopped_by_the_callers_deadline() {
    let server = Server::start(vec![Reply::silent(Duration::from_secs(120))]);
    let options = CallOptions::until(
        Instant::now() + Duration::from_millis(800),
        "runtime.turn_timeout_secs",
    );
    let (out, took) = bounded(spec(&server.url), HttpLimits::default(), options);
    let err = out.expect_err("the call failed");
    match &err {
        LlmFailure::Timeout {
            phase: TimeoutPhase::Deadline,
            limit_key,
            after,
            limit,
        } => {
            assert_eq!(limit_key, "runtime.turn_timeout_secs");
            // Both count from the call's start (the deadline was set before loading).
            assert!(*after >= *limit, "{after:?} < {limit:?}");
        }
        other => panic!("not a deadline timeout: {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("runtime.turn_timeout_secs"), "{msg}");
    assert!(took < Duration::from_secs(5), "stopped after {took:?}");
    assert_eq!(server.requests().len(), 1, "a deadline is not retried");
}

#[test]
fn time_to_first_byte_is_configurable_and_named() {
    let server = Server::start(vec![Reply::silent(Duration::from_secs(120))]);
    let http = HttpLimits {
        first_byte_timeout: Duration::from_millis(400),
        ..HttpLimits::default()
    };
    let (out, took) = bounded(no_retries(spec(&server.url)), http, CallOptions::default());
    let err = out.expect_err("the call failed");
    let LlmFailure::GaveUp {
        attempts: 1, last, ..
    } = &err
    else {
        panic!("{err:?}")
    };
    match &**last {
        LlmFailure::Timeout {
            phase: TimeoutPhase::FirstByte,
            limit,
            limit_key,
            ..
        } => {
            assert_eq!(*limit, Duration::from_millis(400));
            assert_eq!(limit_key, "reliability.first_byte_timeout_secs");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string()
            .contains("reliability.first_byte_timeout_secs = 400 ms"),
        "{err}"
    );
    assert!(took < Duration::from_secs(5), "stopped after {took:?}");
}

fn stalls_after_hello() -> Reply {
    let mut r = Reply::sse(&[&chunk("Hel"), &chunk("lo")]);
    r.body.push(Piece::Pause(Duration::from_secs(120)));
    r
}

#[test]
fn a_stream_that_stalls_is_stopped_by_the_between_bytes_timeout() {
    let server = Server::start(vec![stalls_after_hello()]);
    let http = HttpLimits {
        between_bytes_timeout: Duration::from_millis(500),
        ..HttpLimits::default()
    };
    let (out, took) = bounded(spec(&server.url), http, CallOptions::default());
    let events = out.unwrap();
    assert_eq!(
        events[..2],
        [
            Ok(LlmEvent::TextDelta("Hel".into())),
            Ok(LlmEvent::TextDelta("lo".into()))
        ]
    );
    match events.last().unwrap() {
        Err(LlmFailure::Timeout {
            phase: TimeoutPhase::BetweenBytes,
            limit,
            limit_key,
            after,
        }) => {
            assert_eq!(*limit, Duration::from_millis(500));
            assert_eq!(limit_key, "reliability.between_bytes_timeout_secs");
            assert!(*after >= *limit, "{after:?}");
        }
        other => panic!("{other:?}"),
    }
    assert!(took < Duration::from_secs(5), "stopped after {took:?}");
}

#[test]
fn a_stream_that_stalls_is_stopped_by_the_callers_deadline() {
    let server = Server::start(vec![stalls_after_hello()]);
    let options = CallOptions::until(
        Instant::now() + Duration::from_millis(1200),
        "runtime.max_wall_secs",
    );
    let (out, took) = bounded(spec(&server.url), HttpLimits::default(), options);
    let events = out.unwrap();
    assert_eq!(events.len(), 3, "{events:?}");
    match events.last().unwrap() {
        Err(
            e @ LlmFailure::Timeout {
                phase: TimeoutPhase::Deadline,
                limit_key,
                ..
            },
        ) => {
            assert_eq!(limit_key, "runtime.max_wall_secs");
            assert!(e.to_string().contains("runtime.max_wall_secs"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert!(took < Duration::from_secs(5), "stopped after {took:?}");
}

/// The old entry point, as the agent calls it today: a stall is ended by the configured
/// per-event deadline, and the message names that deadline (it used to say 10000 ms
/// whatever was configured, after the 120 s between-bytes timeout).
#[test]
fn the_old_api_ends_a_stall_at_the_configured_event_deadline() {
    let server = Server::start(vec![stalls_after_hello()]);
    let mut s = spec(&server.url);
    s.limits.deadline_ms = 700;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let host = common::host();
        let p = host.load_provider(s).unwrap();
        let out: Vec<_> = host.complete(&p, &request()).unwrap().collect();
        let _ = tx.send(out);
    });
    let events = rx.recv_timeout(GUARD).expect("still running");
    let last = events.last().unwrap().clone().unwrap_err();
    assert!(
        matches!(
            &last,
            LlmFailure::Timeout {
                phase: TimeoutPhase::Event,
                limit,
                limit_key,
                ..
            } if *limit == Duration::from_millis(700) && limit_key == "runtime.turn_timeout_secs"
        ),
        "{last:?}"
    );
    assert!(last.to_string().contains("700 ms"), "{last}");
}

#[test]
fn cancelling_reaches_a_call_waiting_for_its_first_byte() {
    let server = Server::start(vec![Reply::silent(Duration::from_secs(120))]);
    let flag = Arc::new(AtomicBool::new(false));
    let options = CallOptions::until(Instant::now() + Duration::from_secs(60), "test")
        .cancelled_by(flag.clone());
    let setter = flag.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        setter.store(true, Ordering::SeqCst);
    });
    let (out, took) = bounded(spec(&server.url), HttpLimits::default(), options);
    assert_eq!(out.err(), Some(LlmFailure::Cancelled));
    assert!(took < Duration::from_secs(3), "stopped after {took:?}");
}

#[test]
fn cancelling_reaches_a_stalled_stream_at_once() {
    let server = Server::start(vec![stalls_after_hello()]);
    let flag = Arc::new(AtomicBool::new(false));
    let options = CallOptions::default().cancelled_by(flag.clone());
    let (tx, rx) = std::sync::mpsc::channel();
    let s = spec(&server.url);
    let setter = flag.clone();
    std::thread::spawn(move || {
        let host = common::host();
        let p = host.load_provider(s).unwrap();
        let mut c = host.complete_with(&p, &request(), &options).unwrap();
        let first = c.next_event();
        let second = c.next_event();
        // The third waits on the stalled body until the flag is set.
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            setter.store(true, Ordering::SeqCst);
        });
        let started = Instant::now();
        let third = c.next_event();
        let _ = tx.send((first, second, third, started.elapsed(), c.next_event()));
    });
    let (first, second, third, took, after) = rx.recv_timeout(GUARD).expect("still running");
    assert_eq!(first, Some(Ok(LlmEvent::TextDelta("Hel".into()))));
    assert_eq!(second, Some(Ok(LlmEvent::TextDelta("lo".into()))));
    assert_eq!(third, Some(Err(LlmFailure::Cancelled)));
    assert!(took < Duration::from_secs(3), "stopped after {took:?}");
    assert_eq!(after, None, "the stream is over");
}

#[test]
fn a_retry_after_of_an_hour_is_reported_as_such_after_one_attempt() {
    let server = Server::start(vec![
        Reply::status(429, "{\"error\":{\"message\":\"Rate limit reached\"}}")
            .header("retry-after", "3600"),
    ]);
    let (out, took) = bounded(
        spec(&server.url),
        HttpLimits::default(),
        CallOptions::default(),
    );
    let err = out.expect_err("the call failed");
    match &err {
        LlmFailure::GaveUp {
            attempts,
            why:
                GiveUp::RetryAfterTooLong {
                    asked,
                    cap,
                    cap_key,
                },
            last,
            ..
        } => {
            assert_eq!(*attempts, 1);
            assert_eq!(*asked, Duration::from_secs(3600));
            assert_eq!(*cap, Duration::from_secs(60));
            assert_eq!(cap_key, "reliability.backoff_max_ms");
            assert!(
                matches!(**last, LlmFailure::Http { status: 429, .. }),
                "{last:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.starts_with("provider `openai` failed after 1 attempt:"),
        "{msg}"
    );
    assert!(msg.contains("wait 1 h"), "{msg}");
    assert!(msg.contains("reliability.backoff_max_ms"), "{msg}");
    assert_eq!(server.requests().len(), 1);
    assert!(took < Duration::from_secs(5), "{took:?}");
}

#[test]
fn a_backoff_that_would_pass_the_deadline_is_not_waited_for() {
    let server = Server::start(vec![
        Reply::status(503, "busy").header("retry-after", "30"),
        Reply::status(503, "busy"),
    ]);
    let options = CallOptions::until(
        Instant::now() + Duration::from_secs(2),
        "runtime.turn_timeout_secs",
    );
    let (out, took) = bounded(spec(&server.url), HttpLimits::default(), options);
    let err = out.expect_err("the call failed");
    assert!(
        matches!(
            &err,
            LlmFailure::GaveUp {
                attempts: 1,
                why: GiveUp::PastDeadline { limit_key, .. },
                ..
            } if limit_key == "runtime.turn_timeout_secs"
        ),
        "{err:?}"
    );
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert_eq!(server.requests().len(), 1);
}

/// An answer of `n` pieces of `size` bytes of text each, from a server that ignores
/// `max_output_tokens`.
fn huge_answer(n: usize, size: usize) -> Reply {
    let piece = chunk(&"x".repeat(size)).into_bytes();
    Reply::sse_bytes(vec![piece; n])
}

#[test]
fn a_response_past_the_byte_cap_is_stopped_with_a_typed_error() {
    let server = Server::start(vec![huge_answer(64, 16 * 1024)]);
    let http = HttpLimits {
        max_response_bytes: 100_000,
        ..HttpLimits::default()
    };
    let (out, _) = bounded(spec(&server.url), http, CallOptions::default());
    let events = out.unwrap();
    let text: usize = events
        .iter()
        .filter_map(|e| match e {
            Ok(LlmEvent::TextDelta(t)) => Some(t.len()),
            _ => None,
        })
        .sum();
    assert!(text <= 100_000, "{text} bytes of text got through");
    assert_eq!(
        events.last().unwrap(),
        &Err(LlmFailure::ResponseTooLarge {
            limit_bytes: 100_000,
            limit_key: "reliability.max_response_bytes".into()
        })
    );
}

#[test]
fn a_fifty_megabyte_answer_is_cut_at_the_default_cap() {
    let server = Server::start(vec![huge_answer(50, 1024 * 1024)]);
    let (out, _) = bounded(
        spec(&server.url),
        HttpLimits::default(),
        CallOptions::default(),
    );
    let events = out.unwrap();
    assert!(events.len() <= 9, "{} events", events.len());
    assert!(
        matches!(
            events.last().unwrap(),
            Err(LlmFailure::ResponseTooLarge { limit_bytes, .. }) if *limit_bytes == 8 * 1024 * 1024
        ),
        "{:?}",
        events.last().map(|e| e.as_ref().map(|_| ()))
    );
}

/// A server that reads a request body by `Content-Length` only, like Python's
/// `http.server`: a chunked body reads as empty. It records the body and answers 400.
type Seen = Arc<Mutex<Vec<(Vec<(String, String)>, Vec<u8>)>>>;

fn content_length_server() -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let mut r = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            if r.read_line(&mut line).is_err() {
                continue;
            }
            let mut headers = Vec::new();
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).is_err() {
                    break;
                }
                let h = h.trim_end();
                if h.is_empty() {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
                }
            }
            let len = headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .and_then(|(_, v)| v.parse::<usize>().ok())
                .unwrap_or(0);
            let mut body = vec![0; len];
            let _ = r.read_exact(&mut body);
            record.lock().unwrap().push((headers, body));
            let answer = b"{\"error\":{\"message\":\"recorded\"}}";
            let _ = write!(
                stream,
                "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                answer.len()
            );
            let _ = stream.write_all(answer);
        }
    });
    (url, seen)
}

#[test]
fn every_adapter_sends_its_body_with_content_length() {
    let adapters = [
        ("oxydra-provider-openai-chat", "/v1", "gpt-4o-mini"),
        ("oxydra-provider-openai-responses", "/v1", "gpt-4.1"),
        ("oxydra-provider-anthropic", "", "claude-sonnet-4-5"),
        ("oxydra-provider-gemini", "", "gemini-2.5-flash"),
    ];
    let host = common::host();
    for (krate, path, model) in adapters {
        let (url, seen) = content_length_server();
        let mut s = llm::spec("p", krate, &format!("{url}{path}"), "k-123", "KEY");
        s.retry.max_attempts = 1;
        let p = host.load_provider(s).unwrap();
        let req = LlmRequest {
            model: model.into(),
            ..request()
        };
        let err = host
            .complete(&p, &req)
            .err()
            .expect("the server answers 400");
        assert!(err.to_string().contains("recorded"), "{krate}: {err}");
        let seen = seen.lock().unwrap();
        let (headers, body) = &seen[0];
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(header("transfer-encoding"), None, "{krate}: sent chunked");
        assert_eq!(
            header("content-length"),
            Some(body.len().to_string()),
            "{krate}"
        );
        let json: serde_json::Value = serde_json::from_slice(body).unwrap_or_else(|e| {
            panic!(
                "{krate}: the body read by Content-Length is not JSON ({e}): {:?}",
                String::from_utf8_lossy(body)
            )
        });
        assert!(
            json.to_string().contains("hi"),
            "{krate}: the prompt is in the body: {json}"
        );
    }
}
