//! The gateway over real WebSocket connections on 127.0.0.1, in front of the real session
//! service, the bundled components and a scripted OpenAI-compatible model on loopback:
//! authentication, origin checks, bad input, turns and their frames, several clients on
//! one session, busy sessions and the per-user queue, commands, a stalled client, and
//! shutdown. Every wait is bounded (10 s).
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

#[path = "../../session/tests/common/loopback.rs"]
mod loopback;
#[path = "../../runtime/tests/common/server.rs"]
mod server;

use futures_util::{SinkExt, StreamExt};
use oxydra_gateway::token::{self, Token};
use oxydra_gateway::{Gateway, GatewayOptions};
use oxydra_session::config::AgentConfig;
use oxydra_session::{ServiceOptions, SessionService, System};
use serde_json::{Value, json};
use server::openai::{delta, stream, tool_calls};
use server::{Piece, Reply, Server};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};

/// The bound on every wait.
const WAIT: Duration = Duration::from_secs(10);

fn answer(text: &str) -> Reply {
    server::openai::answer(text, Some((12, 3)))
}

/// `n` deltas `w0 `, `w1 ` …, pausing `pause` before delta `at`.
fn paused(n: usize, at: usize, pause: Duration) -> Reply {
    let mut pieces = Vec::new();
    for i in 0..n {
        if i == at {
            pieces.push(Piece::Pause(pause));
        }
        pieces.push(delta(&format!("w{i} ")));
    }
    stream(pieces, Some((12, n as u64)))
}

struct Env {
    dir: tempfile::TempDir,
    model: Server,
    system: Arc<System>,
    service: Arc<SessionService>,
    token: Token,
}

impl Env {
    fn new(replies: Vec<Reply>) -> Env {
        Env::with(replies, |_| {})
    }

    fn with(replies: Vec<Reply>, tweak: impl FnOnce(&mut AgentConfig)) -> Env {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
        let model = Server::start(replies);
        // Compiled once for every test of this binary.
        let mut cfg = loopback::loopback_config(
            &model.url,
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("gateway-component-cache"),
        );
        tweak(&mut cfg);
        let system = Arc::new(System::new(cfg, None).unwrap());
        let ws = dir.path().join("ws");
        let service = Arc::new(
            SessionService::open(
                system.clone(),
                "alice",
                &ws,
                ServiceOptions::from_config(&system.config),
            )
            .unwrap(),
        );
        let token = token::load_or_create(&ws, None).unwrap();
        Env {
            dir,
            model,
            system,
            service,
            token,
        }
    }

    fn ws(&self) -> PathBuf {
        self.dir.path().join("ws")
    }

    /// The last user message of each model request, in arrival order.
    fn prompts(&self) -> Vec<String> {
        self.model
            .requests()
            .iter()
            .map(|r| {
                r.json()["messages"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .rev()
                    .find(|m| m["role"] == "user")
                    .map(|m| m["content"].as_str().unwrap_or_default().to_string())
                    .unwrap_or_default()
            })
            .collect()
    }

    /// Serve a gateway with `opts` in a runtime of its own while `body` runs, then shut
    /// it down (if `body` did not).
    fn serve(&self, opts: GatewayOptions, body: impl AsyncFnOnce(&mut Gw)) {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let gateway = Gateway::bind(
                "127.0.0.1:0".parse().unwrap(),
                self.service.clone(),
                self.token.clone(),
                opts,
            )
            .await
            .unwrap();
            let addr = gateway.local_addr().unwrap();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let run = tokio::spawn(gateway.run(async {
                let _ = stopped.await;
            }));
            let mut gw = Gw {
                addr,
                token: self.token.value.clone(),
                token_file: token::token_path(&self.ws()).display().to_string(),
                stop: Some(stop),
                run: Some(run),
            };
            body(&mut gw).await;
            gw.shutdown().await;
        });
    }
}

struct Gw {
    addr: SocketAddr,
    token: String,
    token_file: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    run: Option<tokio::task::JoinHandle<()>>,
}

impl Gw {
    async fn connect_with(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Client, tungstenite::Error> {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(self.addr))
            .await
            .expect("connect timed out")?;
        Client::handshake(stream, self.addr, path, headers).await
    }

    async fn connect(&self) -> Client {
        self.connect_with("/ws", &[]).await.unwrap()
    }

    /// A connection authenticated with the token in `hello`; `extra` is merged into the
    /// hello payload. Returns the `hello_ack` payload.
    async fn hello(&self, extra: Value) -> (Client, Value) {
        let mut c = self.connect().await;
        let ack = c.hello(&self.token, extra).await;
        (c, ack)
    }

    /// Stop the gateway and wait for `run` to return: how long that took.
    async fn shutdown(&mut self) -> Duration {
        let t = Instant::now();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(run) = self.run.take() {
            tokio::time::timeout(WAIT, run)
                .await
                .expect("Gateway::run did not return within 10 s of shutdown")
                .unwrap();
        }
        t.elapsed()
    }
}

struct Client {
    ws: WebSocketStream<TcpStream>,
}

fn ty(f: &Value) -> &str {
    f["type"].as_str().unwrap_or_default()
}

/// The text of the `assistant_delta` frames, in order.
fn text_of(frames: &[Value]) -> String {
    frames
        .iter()
        .filter(|f| ty(f) == "assistant_delta")
        .map(|f| f["payload"]["delta"].as_str().unwrap())
        .collect()
}

impl Client {
    async fn handshake(
        stream: TcpStream,
        addr: SocketAddr,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<Client, tungstenite::Error> {
        let mut req = format!("ws://{addr}{path}").into_client_request()?;
        for (k, v) in headers {
            req.headers_mut().insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(req, stream))
            .await
            .expect("the upgrade timed out")?;
        Ok(Client { ws })
    }

    async fn send(&mut self, ty: &str, payload: Value) {
        self.send_raw(json!({"type": ty, "payload": payload}).to_string())
            .await;
    }

    async fn send_raw(&mut self, text: String) {
        tokio::time::timeout(WAIT, self.ws.send(Message::text(text)))
            .await
            .expect("send timed out")
            .unwrap();
    }

    /// The next message; `None` when the connection ended.
    async fn next(&mut self) -> Option<Message> {
        match tokio::time::timeout(WAIT, self.ws.next()).await {
            Ok(Some(Ok(m))) => Some(m),
            Ok(_) => None,
            Err(_) => panic!("no message within 10 s"),
        }
    }

    /// The next text frame, as JSON.
    async fn frame(&mut self) -> Value {
        loop {
            match self.next().await {
                Some(Message::Text(t)) => return serde_json::from_str(t.as_str()).unwrap(),
                Some(Message::Ping(_) | Message::Pong(_)) => {}
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// The next frame, which must be of type `ty`: its payload.
    async fn expect(&mut self, ty_: &str) -> Value {
        let f = self.frame().await;
        assert_eq!(ty(&f), ty_, "{f}");
        f["payload"].clone()
    }

    /// The next `error` frame's payload, which must have `code`.
    async fn error(&mut self, code: &str) -> Value {
        let e = self.expect("error").await;
        assert_eq!(e["code"], code, "{e}");
        assert!(!e["message"].as_str().unwrap().is_empty());
        e
    }

    /// Frames up to and including the first of type `ty`.
    async fn until(&mut self, ty_: &str) -> Vec<Value> {
        let mut frames = Vec::new();
        loop {
            let f = self.frame().await;
            let done = ty(&f) == ty_;
            frames.push(f);
            if done {
                return frames;
            }
        }
    }

    /// Frames until the streamed text is `text`.
    async fn until_text(&mut self, text: &str) -> Vec<Value> {
        let mut frames = Vec::new();
        while text_of(&frames) != text {
            let f = self.frame().await;
            assert!(
                !matches!(ty(&f), "turn_completed" | "turn_cancelled" | "turn_failed"),
                "{f}"
            );
            frames.push(f);
        }
        frames
    }

    /// The connection closes next: the close frame, if one came.
    async fn closed(&mut self) -> Option<CloseFrame> {
        loop {
            match self.next().await {
                None => return None,
                Some(Message::Close(c)) => return c,
                Some(Message::Ping(_) | Message::Pong(_)) => {}
                Some(other) => panic!("expected the connection to close, got {other:?}"),
            }
        }
    }

    async fn hello(&mut self, token: &str, extra: Value) -> Value {
        let mut p = json!({"protocol_version": 3, "token": token});
        for (k, v) in extra.as_object().unwrap() {
            p[k] = v.clone();
        }
        self.send("hello", p).await;
        self.expect("hello_ack").await
    }
}

fn sid(ack: &Value) -> String {
    ack["session"]["session_id"].as_str().unwrap().to_string()
}

/// Every frame of the turn carries the session and the same turn id; returns it.
fn one_turn(frames: &[Value], session: &str) -> String {
    let turn = frames[0]["payload"]["turn_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!turn.is_empty());
    for f in frames {
        assert_eq!(f["payload"]["session_id"], session, "{f}");
        assert_eq!(f["payload"]["turn_id"], turn.as_str(), "{f}");
    }
    turn
}

#[test]
fn hello_with_the_token_or_a_bearer_header_gets_the_session_and_limits() {
    let env = Env::new(vec![]);
    env.serve(GatewayOptions::default(), async |gw| {
        let mut c = gw.connect().await;
        c.send(
            "hello",
            json!({"protocol_version": 3, "token": gw.token, "request_id": "h1"}),
        )
        .await;
        let ack = c.expect("hello_ack").await;
        assert_eq!(ack["request_id"], "h1");
        assert_eq!(ack["protocol_version"], 3);
        assert_eq!(ack["session"]["user_id"], "alice");
        assert_eq!(ack["session"]["agent_name"], "default");
        assert_eq!(ack["session"]["model"], "gpt-4o-mini");
        let first = sid(&ack);
        assert_eq!(first.len(), 24, "a new session: {ack}");
        assert!(ack.get("active_turn").is_none() && ack.get("last_turn").is_none());
        assert_eq!(
            ack["limits"],
            json!({"max_frame_bytes": 1048576, "max_prompt_bytes": 262144,
                   "max_sessions_per_user": 50, "max_concurrent_turns_per_user": 10})
        );

        // The token on the upgrade instead; without a session id, the latest session.
        let bearer = format!("Bearer {}", gw.token);
        let mut b = gw
            .connect_with("/ws", &[("authorization", &bearer)])
            .await
            .unwrap();
        b.send("hello", json!({"protocol_version": 3})).await;
        let ack = b.expect("hello_ack").await;
        assert_eq!(sid(&ack), first);
        b.send("health_check", json!({"request_id": "x"})).await;
        let h = b.expect("health_status").await;
        assert_eq!(
            (h["healthy"].clone(), h["request_id"].clone()),
            (json!(true), json!("x"))
        );
        assert_eq!(h["connections"], 2);

        // A version-2 client's user_id, when it is the token's user.
        let (_, ack) = gw
            .hello(json!({"user_id": "alice", "create_new_session": true}))
            .await;
        assert_ne!(sid(&ack), first);
    });
}

#[test]
fn a_missing_or_wrong_token_version_or_user_is_refused_and_the_connection_closes() {
    let env = Env::new(vec![]);
    env.serve(GatewayOptions::default(), async |gw| {
        let refused = async |c: &mut Client, code: &str| -> String {
            let e = c.error(code).await;
            let close = c.closed().await;
            if let Some(f) = close {
                assert_ne!(f.code, CloseCode::Normal, "{f:?}");
            }
            e["message"].as_str().unwrap().to_string()
        };
        // No token at all.
        let mut c = gw.connect().await;
        c.send("hello", json!({"protocol_version": 3, "request_id": "h"}))
            .await;
        let m = refused(&mut c, "unauthorized").await;
        assert!(
            m.contains(&gw.token_file),
            "names where the token lives: {m}"
        );
        // Wrong tokens: same length, another length, on the upgrade.
        let mut same_len: Vec<u8> = gw.token.clone().into_bytes();
        same_len[0] = if same_len[0] == b'A' { b'B' } else { b'A' };
        for wrong in [String::from_utf8(same_len).unwrap(), "nope".to_string()] {
            let mut c = gw.connect().await;
            c.send("hello", json!({"protocol_version": 3, "token": wrong}))
                .await;
            let m = refused(&mut c, "unauthorized").await;
            assert!(
                m.contains("wrong token") && m.contains(&gw.token_file),
                "{m}"
            );
        }
        let mut c = gw
            .connect_with("/ws", &[("authorization", "Bearer not-the-token")])
            .await
            .unwrap();
        c.send("hello", json!({"protocol_version": 3})).await;
        let m = refused(&mut c, "unauthorized").await;
        assert!(m.contains(&gw.token_file), "{m}");
        // No version at all: told which one, and the connection stays for a hello.
        let mut c = gw.connect().await;
        c.send("hello", json!({"token": gw.token})).await;
        let e = c.error("protocol_version").await;
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .contains("protocol_version 3"),
            "{e}"
        );
        c.hello(&gw.token, json!({})).await;
        // Another protocol version, even with the right token.
        let mut c = gw.connect().await;
        c.send("hello", json!({"protocol_version": 2, "token": gw.token}))
            .await;
        let m = refused(&mut c, "protocol_version").await;
        assert!(m.contains("protocol_version 3"), "{m}");
        // The user comes from the token, never from the client.
        let mut c = gw.connect().await;
        c.send(
            "hello",
            json!({"protocol_version": 3, "token": gw.token, "user_id": "mallory"}),
        )
        .await;
        let m = refused(&mut c, "unauthorized").await;
        assert!(m.contains("alice") && m.contains("mallory"), "{m}");
        // And the right token still works.
        let (_, ack) = gw.hello(json!({})).await;
        assert_eq!(ack["session"]["user_id"], "alice");
    });
}

#[test]
fn foreign_origins_are_refused_and_only_ws_is_served() {
    let env = Env::new(vec![]);
    env.serve(GatewayOptions::default(), async |gw| {
        let status = |r: Result<Client, tungstenite::Error>| match r {
            Err(tungstenite::Error::Http(resp)) => resp.status().as_u16(),
            Err(e) => panic!("{e}"),
            Ok(_) => 101,
        };
        for origin in ["http://evil.example", "null", "http://127.0.0.1:1"] {
            let r = gw.connect_with("/ws", &[("origin", origin)]).await;
            assert_eq!(status(r), 403, "Origin: {origin}");
        }
        for path in ["/", "/wss", "/ws/x"] {
            assert_eq!(status(gw.connect_with(path, &[]).await), 404, "{path}");
        }
        // A page from the gateway's own origin is let in.
        let own = format!("http://{}", gw.addr);
        let mut c = gw.connect_with("/ws", &[("origin", &own)]).await.unwrap();
        let ack = c.hello(&gw.token, json!({})).await;
        assert_eq!(ack["session"]["user_id"], "alice");
    });
}

#[test]
fn bad_input_gets_an_error_frame_and_harms_no_other_client_or_session() {
    let env = Env::new(vec![answer("still fine")]);
    let opts = GatewayOptions {
        max_frame_bytes: 4096,
        max_prompt_bytes: 1024,
        ..GatewayOptions::default()
    };
    let hard = opts.hard_frame_cap();
    env.serve(opts, async |gw| {
        // A bystander on its own session, connected throughout.
        let (mut b, b_ack) = gw.hello(json!({"create_new_session": true})).await;

        let mut a = gw.connect().await;
        // Frames before hello: an error, and the connection stays usable.
        a.send("health_check", json!({"request_id": "early"})).await;
        let e = a.error("hello_required").await;
        assert_eq!(e["request_id"], "early");
        a.send("send_turn", json!({"prompt": "hi"})).await;
        a.error("hello_required").await;
        a.send_raw("{not json".into()).await;
        a.error("bad_json").await;
        let ack = a
            .hello(
                &gw.token,
                json!({"create_new_session": true, "display_name": "a"}),
            )
            .await;
        let a_id = sid(&ack);
        assert!(a_id.starts_with("a-"), "{a_id}");

        for (raw, code, mentions) in [
            ("{nope", "bad_json", "JSON"),
            ("[1, 2]", "bad_frame", "object"),
            ("\"text\"", "bad_frame", "object"),
            ("{\"type\": 5}", "bad_frame", "type"),
            ("{\"payload\": {}}", "bad_frame", "type"),
            (
                "{\"type\": \"launch_missiles\"}",
                "unknown_type",
                "send_turn",
            ),
            (
                "{\"type\": \"health_check\", \"extra\": 1}",
                "bad_frame",
                "extra",
            ),
            (
                "{\"type\": \"send_turn\", \"payload\": {\"prompt\": \"x\", \"promt\": \"y\"}}",
                "bad_request",
                "promt",
            ),
            (
                "{\"type\": \"send_turn\", \"payload\": {}}",
                "bad_request",
                "prompt",
            ),
            (
                "{\"type\": \"send_turn\", \"payload\": {\"prompt\": 5}}",
                "bad_request",
                "send_turn",
            ),
        ] {
            a.send_raw(raw.into()).await;
            let e = a.error(code).await;
            let m = e["message"].as_str().unwrap();
            assert!(m.contains(mentions), "{raw}: {m}");
        }
        // A request id is echoed even when the frame type is unknown.
        a.send("frobnicate", json!({"request_id": "r9"})).await;
        assert_eq!(a.error("unknown_type").await["request_id"], "r9");
        a.ws.send(Message::binary(vec![0u8, 1, 2])).await.unwrap();
        a.error("bad_frame").await;
        // Above max_frame_bytes, below the hard cap: an error, and the connection goes on.
        a.send_raw(format!(
            "{{\"type\": \"health_check\", \"x\": \"{}\"}}",
            "x".repeat(5000)
        ))
        .await;
        let e = a.error("frame_too_large").await;
        assert!(e["message"].as_str().unwrap().contains("4096"), "{e}");
        // Unknown sessions.
        a.send(
            "send_turn",
            json!({"session_id": "nope", "prompt": "hi", "request_id": "s1"}),
        )
        .await;
        let e = a.error("no_session").await;
        assert_eq!(
            (e["request_id"].clone(), e["session_id"].clone()),
            (json!("s1"), json!("nope"))
        );
        a.send("switch_session", json!({"session_id": "nope"}))
            .await;
        a.error("no_session").await;
        a.send("cancel_active_turn", json!({"session_id": "nope"}))
            .await;
        a.error("no_session").await;
        // An ambiguous prefix.
        for _ in 0..2 {
            a.send("create_session", json!({"display_name": "dup"}))
                .await;
            assert!(sid(&a.expect("session_created").await).starts_with("dup-"));
        }
        a.send(
            "switch_session",
            json!({"session_id": "dup", "request_id": "w"}),
        )
        .await;
        let e = a.error("ambiguous_session").await;
        assert_eq!(e["request_id"], "w");
        a.send("switch_session", json!({"session_id": &a_id[..4]}))
            .await;
        assert_eq!(sid(&a.expect("session_switched").await), a_id);
        // Prompts: empty, blank, too large, with attachments.
        for p in ["", "  \n "] {
            a.send("send_turn", json!({"prompt": p})).await;
            let e = a.error("bad_request").await;
            assert!(e["message"].as_str().unwrap().contains("empty"), "{e}");
        }
        a.send(
            "send_turn",
            json!({"prompt": "p".repeat(2000), "request_id": "big"}),
        )
        .await;
        let e = a.error("prompt_too_large").await;
        assert_eq!(e["request_id"], "big");
        assert!(e["message"].as_str().unwrap().contains("1024"), "{e}");
        a.send(
            "send_turn",
            json!({"prompt": "see", "attachments": [{"name": "x.png"}]}),
        )
        .await;
        let e = a.error("bad_request").await;
        assert!(
            e["message"].as_str().unwrap().contains("attachments"),
            "{e}"
        );
        a.send("hello", json!({"protocol_version": 3, "token": gw.token}))
            .await;
        a.error("bad_request").await;
        // None of it reached the model, and the connection still works.
        a.send("health_check", json!({})).await;
        assert_eq!(a.expect("health_status").await["session_id"], a_id.as_str());
        assert!(env.model.requests().is_empty());

        // Authenticated with an unknown session: an error, and the connection stays.
        let mut c = gw.connect().await;
        c.send(
            "hello",
            json!({"protocol_version": 3, "token": gw.token, "session_id": "nope"}),
        )
        .await;
        c.error("no_session").await;
        c.send("create_session", json!({})).await;
        c.expect("session_created").await;

        // A frame header far above the hard cap: not read; an error, then the close.
        let mut d = gw.connect().await;
        d.hello(&gw.token, json!({})).await;
        let mut header = vec![0x81u8, 0xff];
        header.extend_from_slice(&(50u64 << 20).to_be_bytes());
        header.extend_from_slice(&[1, 2, 3, 4]);
        d.ws.get_mut().write_all(&header).await.unwrap();
        let e = d.error("frame_too_large").await;
        assert!(e["message"].as_str().unwrap().contains("4096"), "{e}");
        let close = d.closed().await.expect("a close frame");
        assert_eq!(close.code, CloseCode::Size);
        // A client that really sends such a frame gets the error too.
        let mut e_client = gw.connect().await;
        e_client.hello(&gw.token, json!({})).await;
        let (mut sink, mut source) = e_client.ws.split();
        let big = format!(
            "{{\"type\": \"health_check\", \"x\": \"{}\"}}",
            "x".repeat(4 * hard)
        );
        let sender = tokio::spawn(async move {
            let _ = sink.send(Message::text(big)).await;
            sink
        });
        let got = tokio::time::timeout(WAIT, source.next())
            .await
            .expect("no answer to a frame above the hard cap")
            .expect("an error frame")
            .expect("an error frame");
        let got: Value = serde_json::from_str(got.to_text().unwrap()).unwrap();
        assert_eq!(got["payload"]["code"], "frame_too_large", "{got}");
        match tokio::time::timeout(WAIT, source.next())
            .await
            .expect("the close")
        {
            Some(Ok(Message::Close(Some(f)))) => assert_eq!(f.code, CloseCode::Size),
            Some(Ok(m)) => panic!("after the error, only the close: {m:?}"),
            // The client may still be writing the frame when the gateway closes.
            None | Some(Err(_)) => {}
        }
        let _ = tokio::time::timeout(WAIT, sender)
            .await
            .expect("the sender ends");

        // The bystander's session runs a turn, and new clients are served.
        b.send("send_turn", json!({"prompt": "are you there?"}))
            .await;
        let frames = b.until("turn_completed").await;
        let done = &frames.last().unwrap()["payload"];
        assert_eq!(done["response"]["message"], "still fine");
        one_turn(&frames, &sid(&b_ack));
        assert_eq!(env.prompts(), vec!["are you there?"]);
        let (_, ack) = gw.hello(json!({"session_id": a_id})).await;
        assert_eq!(sid(&ack), a_id);
    });
}

#[test]
fn a_turn_streams_deltas_in_order_with_progress_usage_and_its_ids() {
    let env = Env::new(vec![stream(
        vec![delta("Hello "), delta("big "), delta("world")],
        Some((12, 3)),
    )]);
    env.serve(GatewayOptions::default(), async |gw| {
        let (mut a, ack) = gw.hello(json!({})).await;
        let s = sid(&ack);
        a.send("send_turn", json!({"prompt": "hi", "request_id": "t1"}))
            .await;
        let frames = a.until("turn_completed").await;
        let turn = one_turn(&frames, &s);
        assert_eq!(ty(&frames[0]), "turn_started", "{}", frames[0]);
        assert_eq!(frames[0]["payload"]["request_id"], "t1");
        let first_delta = frames
            .iter()
            .position(|f| ty(f) == "assistant_delta")
            .unwrap();
        let call = frames
            .iter()
            .position(|f| f["payload"]["progress"]["kind"] == "provider_call")
            .expect("a provider_call progress frame");
        assert!(call < first_delta);
        assert_eq!(frames[call]["payload"]["progress"]["step"], 1);
        let deltas: Vec<&str> = frames
            .iter()
            .filter(|f| ty(f) == "assistant_delta")
            .map(|f| f["payload"]["delta"].as_str().unwrap())
            .collect();
        // Streamed as it came (the turn loop may join deltas it holds back to scrub).
        assert!(deltas.len() >= 2, "{deltas:?}");
        assert_eq!(deltas.concat(), "Hello big world");
        let done = &frames.last().unwrap()["payload"];
        assert_eq!(done["turn_id"], turn.as_str());
        assert_eq!(done["response"]["message"], "Hello big world");
        assert_eq!(done["response"]["finish_reason"], "stop");
        let usage = &done["response"]["usage"];
        assert_eq!(
            (
                usage["prompt_tokens"].clone(),
                usage["completion_tokens"].clone()
            ),
            (json!(12), json!(3))
        );
        assert_eq!(
            (usage["total_tokens"].clone(), usage["steps"].clone()),
            (json!(15), json!(1))
        );
        assert_eq!(env.prompts(), vec!["hi"]);
    });
}

#[test]
fn a_tool_call_reaches_clients_as_progress_with_its_name_and_duration() {
    let env = Env::new(vec![
        tool_calls(
            &[("c1", "file_read", json!({"path": "/shared/notes.txt"}))],
            Some((20, 5)),
        ),
        answer("teapot"),
    ]);
    env.serve(GatewayOptions::default(), async |gw| {
        let (mut a, ack) = gw.hello(json!({})).await;
        // The workspace is laid out when the first session opens.
        std::fs::write(
            env.ws().join("shared/notes.txt"),
            "the secret word is teapot",
        )
        .unwrap();
        let s = sid(&ack);
        a.send("send_turn", json!({"prompt": "what is the word?"}))
            .await;
        let frames = a.until("turn_completed").await;
        one_turn(&frames, &s);
        let kind = |f: &Value| {
            f["payload"]["progress"]["kind"]
                .as_str()
                .unwrap_or("")
                .to_string()
        };
        let at = |k: &str| {
            frames
                .iter()
                .position(|f| kind(f) == k)
                .unwrap_or_else(|| panic!("no {k}"))
        };
        let (started, finished) = (at("tool_started"), at("tool_finished"));
        assert!(started < finished);
        let p = &frames[started]["payload"]["progress"];
        assert_eq!(p["tool_name"], "file_read");
        assert!(
            p["arguments"].as_str().unwrap().contains("notes.txt"),
            "{p}"
        );
        let p = &frames[finished]["payload"]["progress"];
        assert_eq!(
            (p["tool_name"].clone(), p["ok"].clone()),
            (json!("file_read"), json!(true))
        );
        let ms = p["duration_ms"].as_f64().unwrap();
        assert!(ms > 0.0 && ms < 10_000.0, "{ms}");
        assert!(
            frames[finished]["payload"]["message"]
                .as_str()
                .unwrap()
                .contains("file_read")
        );
        // The second model call comes after the tool.
        let step2 = frames
            .iter()
            .position(|f| kind(f) == "provider_call" && f["payload"]["progress"]["step"] == 2)
            .expect("a second provider call");
        assert!(step2 > finished);
        let done = &frames.last().unwrap()["payload"]["response"];
        assert_eq!(done["message"], "teapot");
        assert_eq!(done["usage"]["steps"], 2);
        assert!(
            env.model.requests()[1]
                .body
                .contains("the secret word is teapot")
        );
    });
}

#[test]
fn clients_of_one_session_see_one_stream_and_late_ones_catch_up() {
    let env = Env::new(vec![paused(4, 2, Duration::from_secs(2))]);
    env.serve(GatewayOptions::default(), async |gw| {
        let (mut a, ack) = gw.hello(json!({"create_new_session": true})).await;
        let s = sid(&ack);
        // Attached by a prefix of the id.
        let (mut b, ack_b) = gw.hello(json!({"session_id": &s[..6]})).await;
        assert_eq!(sid(&ack_b), s);
        a.send("send_turn", json!({"prompt": "count", "request_id": "r1"}))
            .await;
        let mut seen_a = a.until_text("w0 w1 ").await;
        // Mid-turn (the model pauses for 2 s): a new client gets the turn so far.
        let (mut c, ack_c) = gw.hello(json!({"session_id": s})).await;
        let active = &ack_c["active_turn"];
        assert_eq!(active["state"], "running", "{ack_c}");
        assert_eq!(active["text"], "w0 w1 ");
        assert_eq!(active["turn_id"], seen_a[0]["payload"]["turn_id"]);
        assert!(ack_c.get("last_turn").is_none());
        let rest_a = a.until("turn_completed").await;
        let rest_c = c.until("turn_completed").await;
        // The late client sees what the first saw from then on, in the same order.
        assert_eq!(rest_c, rest_a);
        assert_eq!(text_of(&rest_c), "w2 w3 ");
        seen_a.extend(rest_a);
        // Two clients attached before the turn see the same frames in the same order.
        let seen_b = b.until("turn_completed").await;
        assert_eq!(seen_b, seen_a);
        assert_eq!(seen_b[0]["payload"]["request_id"], "r1");
        let turn = one_turn(&seen_b, &s);
        assert_eq!(text_of(&seen_b), "w0 w1 w2 w3 ");
        // After the turn, a new client gets how it ended.
        let (_, ack_d) = gw.hello(json!({"session_id": s})).await;
        assert!(ack_d.get("active_turn").is_none(), "{ack_d}");
        let last = &ack_d["last_turn"];
        assert_eq!(
            (
                last["state"].clone(),
                last["message"].clone(),
                last["turn_id"].clone()
            ),
            (json!("completed"), json!("w0 w1 w2 w3 "), json!(turn))
        );
    });
}

#[test]
fn a_busy_session_refuses_a_second_turn_and_the_users_cap_queues_turns_in_order() {
    let env = Env::with(
        vec![
            paused(2, 1, Duration::from_millis(1500)),
            answer("b done"),
            answer("a again"),
        ],
        |cfg| cfg.gateway.max_concurrent_turns_per_user = 1,
    );
    env.serve(GatewayOptions::default(), async |gw| {
        let (mut a, ack_a) = gw
            .hello(json!({"create_new_session": true, "display_name": "a"}))
            .await;
        let (mut b, ack_b) = gw
            .hello(json!({"create_new_session": true, "display_name": "b"}))
            .await;
        assert_eq!(ack_a["limits"]["max_concurrent_turns_per_user"], 1);
        a.send("send_turn", json!({"prompt": "A", "request_id": "a1"}))
            .await;
        let mut frames_a = a.until_text("w0 ").await;
        let turn_a = frames_a[0]["payload"]["turn_id"]
            .as_str()
            .unwrap()
            .to_string();
        // One turn per session: an error, not a queue.
        a.send("send_turn", json!({"prompt": "A2", "request_id": "a2"}))
            .await;
        let e = a.error("session_busy").await;
        assert_eq!(
            (e["request_id"].clone(), e["session_id"].clone()),
            (json!("a2"), json!(sid(&ack_a)))
        );
        // Another session's turn waits for the user's one slot, and says so.
        b.send("send_turn", json!({"prompt": "B", "request_id": "b1"}))
            .await;
        let frames_b = b.until("turn_completed").await;
        assert_eq!(ty(&frames_b[0]), "turn_progress", "{}", frames_b[0]);
        let p = &frames_b[0]["payload"];
        assert_eq!(p["progress"], json!({"kind": "queued", "position": 1}));
        assert!(
            p["message"]
                .as_str()
                .unwrap()
                .contains("max_concurrent_turns_per_user")
        );
        assert_eq!(ty(&frames_b[1]), "turn_started");
        assert_eq!(frames_b[1]["payload"]["request_id"], "b1");
        one_turn(&frames_b, &sid(&ack_b));
        assert_eq!(
            frames_b.last().unwrap()["payload"]["response"]["message"],
            "b done"
        );
        frames_a.extend(a.until("turn_completed").await);
        assert_eq!(one_turn(&frames_a, &sid(&ack_a)), turn_a);
        assert_eq!(text_of(&frames_a), "w0 w1 ");
        // B ran after A (FIFO), and the refused prompt never reached the model.
        assert_eq!(env.prompts(), vec!["A", "B"]);
        a.send("send_turn", json!({"prompt": "A3"})).await;
        let frames = a.until("turn_completed").await;
        assert_eq!(
            frames.last().unwrap()["payload"]["response"]["message"],
            "a again"
        );
    });
}

#[test]
fn cancel_health_create_list_and_switch() {
    let env = Env::new(vec![
        paused(3, 1, Duration::from_secs(8)),
        paused(3, 1, Duration::from_secs(8)),
        answer("in notes"),
    ]);
    env.serve(GatewayOptions::default(), async |gw| {
        let (mut a, ack) = gw.hello(json!({})).await;
        let first = sid(&ack);
        a.send("send_turn", json!({"prompt": "long"})).await;
        let frames = a.until_text("w0 ").await;
        let turn = frames[0]["payload"]["turn_id"].clone();
        let t = Instant::now();
        a.send("cancel_active_turn", json!({"request_id": "c1"}))
            .await;
        let ended = a.until("turn_cancelled").await;
        let c = &ended.last().unwrap()["payload"];
        assert!(
            t.elapsed() < Duration::from_secs(6),
            "cancel waited for the model"
        );
        assert_eq!(
            (c["code"].clone(), c["turn_id"].clone()),
            (json!("cancelled"), turn)
        );
        assert_eq!(c["session_id"], first.as_str());
        // Nothing left to cancel.
        a.send("cancel_active_turn", json!({"request_id": "c2"}))
            .await;
        let e = a.error("no_active_turn").await;
        assert_eq!(
            (e["request_id"].clone(), e["session_id"].clone()),
            (json!("c2"), json!(first))
        );
        a.send("health_check", json!({"request_id": "h"})).await;
        let h = a.expect("health_status").await;
        assert_eq!(h["request_id"], "h");
        assert_eq!(
            (h["healthy"].clone(), h["user_id"].clone()),
            (json!(true), json!("alice"))
        );
        assert_eq!(h["session_id"], first.as_str());
        assert!(
            h.get("active_turn").is_none() && h.get("message").is_none(),
            "{h}"
        );
        assert_eq!(
            (h["connections"].clone(), h["live_sessions"].clone()),
            (json!(1), json!(1))
        );
        // cancel_all_active_turns answers with health_status and what it did.
        a.send("send_turn", json!({"prompt": "long again"})).await;
        a.until_text("w0 ").await;
        a.send("cancel_all_active_turns", json!({"request_id": "all"}))
            .await;
        let mut got = Vec::new();
        while got.len() < 2 {
            let f = a.frame().await;
            if matches!(ty(&f), "turn_cancelled" | "health_status") {
                got.push(f);
            } else {
                assert_eq!(ty(&f), "assistant_delta", "{f}");
            }
        }
        let h = got
            .iter()
            .find(|f| ty(f) == "health_status")
            .expect("health_status");
        assert_eq!(h["payload"]["request_id"], "all");
        assert_eq!(h["payload"]["message"], "cancelled 1 turn");
        assert!(got.iter().any(|f| ty(f) == "turn_cancelled"));
        // A new session; the connection follows it from now on.
        a.send(
            "create_session",
            json!({"display_name": "notes", "request_id": "cs"}),
        )
        .await;
        let created = a.expect("session_created").await;
        assert_eq!(created["request_id"], "cs");
        let notes = sid(&created);
        assert!(notes.starts_with("notes-"), "{notes}");
        a.send("send_turn", json!({"prompt": "hello notes"})).await;
        let frames = a.until("turn_completed").await;
        one_turn(&frames, &notes);
        assert_eq!(
            frames.last().unwrap()["payload"]["response"]["message"],
            "in notes"
        );
        a.send("list_sessions", json!({"request_id": "l"})).await;
        let list = a.expect("session_list").await;
        assert_eq!(list["request_id"], "l");
        let ids: Vec<&str> = list["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["session_id"].as_str().unwrap())
            .collect();
        assert_eq!(ids.len(), 2, "{list}");
        assert!(ids.contains(&first.as_str()) && ids.contains(&notes.as_str()));
        let entry = list["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["session_id"] == first.as_str())
            .unwrap();
        assert_eq!(
            (entry["turns"].clone(), entry["active"].clone()),
            (json!(2), json!(false))
        );
        // Back to the first by a unique prefix: how its last turn ended.
        a.send(
            "switch_session",
            json!({"session_id": &first[..5], "request_id": "sw"}),
        )
        .await;
        let sw = a.expect("session_switched").await;
        assert_eq!(
            (sw["request_id"].clone(), sid(&sw)),
            (json!("sw"), first.clone())
        );
        assert_eq!(sw["last_turn"]["state"], "cancelled");
        a.send("health_check", json!({})).await;
        assert_eq!(
            a.expect("health_status").await["session_id"],
            first.as_str()
        );
    });
}

#[test]
fn a_client_that_stops_reading_is_dropped_and_never_slows_the_turn() {
    // About 8 MB of frames: more than the kernel buffers of a stalled socket hold.
    let (deltas, size) = (1000, 8 * 1024);
    // Each delta ends in a space, so the turn loop streams it at once.
    let chunk = format!("{} ", "x".repeat(size - 1));
    let mut pieces = Vec::new();
    for _ in 0..deltas / 50 {
        let mut bytes = Vec::new();
        for _ in 0..50 {
            if let Piece::Bytes(b) = delta(&chunk) {
                bytes.extend(b);
            }
        }
        pieces.push(Piece::Bytes(bytes));
    }
    let env = Env::new(vec![stream(pieces, Some((10, 1000)))]);
    let opts = GatewayOptions {
        client_buffer: 16,
        stall_timeout: Duration::from_millis(500),
        ..GatewayOptions::default()
    };
    env.serve(opts, async |gw| {
        // The stalled client, with a small receive buffer.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let stream = tokio::time::timeout(WAIT, socket.connect(gw.addr))
            .await
            .unwrap()
            .unwrap();
        let mut stalled = Client::handshake(stream, gw.addr, "/ws", &[])
            .await
            .unwrap();
        let ack = stalled
            .hello(&gw.token, json!({"create_new_session": true}))
            .await;
        let s = sid(&ack);
        let (mut f, _) = gw.hello(json!({"session_id": s})).await;
        let t = Instant::now();
        stalled.send("send_turn", json!({"prompt": "flood"})).await;
        // The stalled client reads nothing; the turn runs to its end regardless.
        let frames = f.until("turn_completed").await;
        let wall = t.elapsed();
        one_turn(&frames, &s);
        let message = frames.last().unwrap()["payload"]["response"]["message"]
            .as_str()
            .unwrap()
            .len();
        assert_eq!(message, deltas * size);
        assert_eq!(
            text_of(&frames).len(),
            deltas * size,
            "the follower missed nothing"
        );
        assert!(wall < Duration::from_secs(5), "the turn took {wall:?}");
        // Its buffer stayed full past the stall timeout: the gateway dropped it, and
        // counts one connection left, the follower.
        let deadline = Instant::now() + WAIT;
        loop {
            f.send("health_check", json!({})).await;
            let h = f.expect("health_status").await;
            if h["connections"] == 1 {
                break;
            }
            assert!(Instant::now() < deadline, "{h}");
            // Nothing to await from outside the gateway: ask again shortly.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The stalled client was dropped: what reached its socket, then the end, never
        // the turn's end.
        let mut n = 0;
        loop {
            match tokio::time::timeout(WAIT, stalled.ws.next())
                .await
                .expect("the stalled client's connection never ended")
            {
                Some(Ok(Message::Text(t))) => {
                    assert!(!t.as_str().contains("\"turn_completed\""));
                    n += 1;
                }
                Some(Ok(_)) => {}
                None | Some(Err(_)) => break,
            }
        }
        assert!(n < deltas, "it got {n} frames of {deltas}");
        eprintln!("turn with a stalled client: {wall:?}; the stalled client got {n} frames");
    });
}

#[test]
fn shutdown_cancels_a_streaming_turn_tells_the_clients_and_persists_what_streamed() {
    let env = Env::new(vec![paused(3, 2, Duration::from_secs(8))]);
    let mut session = String::new();
    env.serve(GatewayOptions::default(), async |gw| {
        let (mut a, ack) = gw.hello(json!({})).await;
        session = sid(&ack);
        let (mut b, _) = gw.hello(json!({"session_id": session})).await;
        a.send("send_turn", json!({"prompt": "tell me"})).await;
        a.until_text("w0 w1 ").await;
        b.until_text("w0 w1 ").await;
        let took = gw.shutdown().await;
        assert!(
            took < Duration::from_secs(6),
            "shutdown waited for the model: {took:?}"
        );
        for c in [&mut a, &mut b] {
            let end = c.until("turn_cancelled").await;
            assert_eq!(end.len(), 1, "{end:?}");
            assert_eq!(end[0]["payload"]["code"], "cancelled");
            assert_eq!(end[0]["payload"]["session_id"], session.as_str());
            // Said in words (the TUI shows it), then the close.
            let e = c.error("shutting_down").await;
            assert!(e["message"].as_str().unwrap().contains("shutting down"));
            let close = c.closed().await.expect("a close frame");
            assert_eq!(close.code, CloseCode::Away);
        }
        // Nothing listens any more.
        assert!(TcpStream::connect(gw.addr).await.is_err());
    });
    // A new service on the same workspace (a restart) finds the cancelled turn and what
    // streamed before it.
    let svc = SessionService::open(
        env.system.clone(),
        "alice",
        &env.ws(),
        ServiceOptions::from_config(&env.system.config),
    )
    .unwrap();
    let attached = svc.attach(&session, None).unwrap();
    assert_eq!(
        attached.last_turn,
        Some((1, oxydra_store::TurnStatus::Cancelled))
    );
    let store = oxydra_store::Store::open(&oxydra_session::compose::store_path(&env.ws())).unwrap();
    let bodies: Vec<String> = store
        .messages(&session)
        .unwrap()
        .into_iter()
        .map(|m| m.body)
        .collect();
    assert!(bodies.iter().any(|b| b.contains("tell me")), "{bodies:?}");
    assert!(bodies.iter().any(|b| b.contains("w0 w1")), "{bodies:?}");
}

#[test]
fn every_turn_started_carries_the_request_id_of_its_send_turn() {
    // The turn may start (and its turn_started be converted) before `submit` returns:
    // the id must be known by then, every time.
    let n = 30;
    let env = Env::new((0..n).map(|i| answer(&format!("a{i}"))).collect());
    env.serve(GatewayOptions::default(), async |gw| {
        let (mut a, ack) = gw.hello(json!({})).await;
        let (mut b, _) = gw.hello(json!({"session_id": sid(&ack)})).await;
        for i in 0..n {
            a.send(
                "send_turn",
                json!({"prompt": format!("p{i}"), "request_id": format!("r{i}")}),
            )
            .await;
            for c in [&mut a, &mut b] {
                let frames = c.until("turn_completed").await;
                assert_eq!(
                    frames[0]["payload"]["request_id"],
                    format!("r{i}"),
                    "{}",
                    frames[0]
                );
                let done = &frames.last().unwrap()["payload"]["response"]["message"];
                assert_eq!(*done, format!("a{i}"));
            }
        }
    });
}

#[test]
fn a_connection_that_never_says_hello_is_told_and_closed() {
    let env = Env::new(vec![]);
    let opts = GatewayOptions {
        hello_timeout: Duration::from_millis(300),
        ..GatewayOptions::default()
    };
    env.serve(opts, async |gw| {
        let t = Instant::now();
        let mut quiet = gw.connect().await;
        let e = quiet.error("hello_required").await;
        assert!(e["message"].as_str().unwrap().contains("no hello"), "{e}");
        assert_eq!(
            quiet.closed().await.expect("a close").code,
            CloseCode::Policy
        );
        assert!(t.elapsed() < Duration::from_secs(5));
        // A TCP connection that never upgrades is closed too.
        let mut raw = TcpStream::connect(gw.addr).await.unwrap();
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(WAIT, tokio::io::AsyncReadExt::read(&mut raw, &mut buf))
            .await
            .expect("the gateway kept a connection that never upgraded");
        assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
        // Frames before hello do not extend the deadline.
        let mut chatty = gw.connect().await;
        chatty.send("health_check", json!({})).await;
        chatty.error("hello_required").await;
        let e = chatty.error("hello_required").await;
        assert!(e["message"].as_str().unwrap().contains("no hello"), "{e}");
        chatty.closed().await;
    });
}

#[test]
fn past_the_users_session_limit_creating_a_session_is_an_error_that_names_it() {
    let env = Env::with(vec![paused(2, 1, Duration::from_secs(1))], |cfg| {
        cfg.gateway.max_sessions_per_user = 1
    });
    env.serve(GatewayOptions::default(), async |gw| {
        let (mut a, ack) = gw.hello(json!({})).await;
        assert_eq!(ack["limits"]["max_sessions_per_user"], 1);
        a.send("send_turn", json!({"prompt": "busy"})).await;
        a.until_text("w0 ").await;
        // Its one live session is busy: no room for another.
        a.send("create_session", json!({"request_id": "c"})).await;
        let e = a.error("too_many_sessions").await;
        assert_eq!(e["request_id"], "c");
        assert!(
            e["message"]
                .as_str()
                .unwrap()
                .contains("max_sessions_per_user"),
            "{e}"
        );
        // The refused session was not made: one session is stored.
        a.send("list_sessions", json!({})).await;
        let list = a.until("session_list").await.pop().unwrap()["payload"].clone();
        assert_eq!(list["sessions"].as_array().unwrap().len(), 1, "{list}");
        // The turn goes on; once it is over, the idle session makes room.
        a.until("turn_completed").await;
        a.send("create_session", json!({})).await;
        assert_ne!(sid(&a.expect("session_created").await), sid(&ack));
    });
}

/// Turns submitted together below `max_concurrent_turns_per_user` all take a slot at
/// once: none waits or reports `queued` (every ticket ahead fits in the free slots too).
#[test]
fn turns_below_the_users_cap_are_never_queued() {
    let n = 40;
    let env = Env::with((0..n).map(|_| answer("ok")).collect(), |cfg| {
        cfg.gateway.max_concurrent_turns_per_user = 100
    });
    env.serve(GatewayOptions::default(), async |gw| {
        let mut clients = Vec::new();
        for _ in 0..n {
            clients.push(gw.hello(json!({"create_new_session": true})).await.0);
        }
        for c in &mut clients {
            c.send("send_turn", json!({"prompt": "go"})).await;
        }
        let mut queued = 0;
        for c in &mut clients {
            let frames = c.until("turn_completed").await;
            queued += frames
                .iter()
                .filter(|f| f["payload"]["progress"]["kind"] == "queued")
                .count();
        }
        assert_eq!(
            queued, 0,
            "{queued} `queued` frames for {n} turns under a cap of 100"
        );
    });
}

/// A session pushed out of memory to make room for another is not silently dropped by
/// the clients following it: they are told, and switching back resumes it.
#[test]
fn a_followed_session_archived_to_make_room_is_announced_and_resumable() {
    let env = Env::with(vec![answer("resumed ")], |cfg| {
        cfg.gateway.max_sessions_per_user = 1
    });
    env.serve(GatewayOptions::default(), async |gw| {
        let (mut a, ack) = gw.hello(json!({})).await;
        let first = sid(&ack);
        // Another client's new session takes the only live place.
        let (_b, _) = gw.hello(json!({"create_new_session": true})).await;
        let e = a.error("session_archived").await;
        assert_eq!(e["session_id"], first.as_str());
        assert!(
            e["message"].as_str().unwrap().contains("switch_session"),
            "{e}"
        );
        a.send("switch_session", json!({"session_id": first})).await;
        assert_eq!(sid(&a.expect("session_switched").await), first);
    });
}

/// Connections past the cap are refused at the upgrade (503), and a place freed is
/// usable again: unauthenticated connections cannot pile up without bound.
#[test]
fn connections_past_the_cap_are_refused_until_one_closes() {
    let env = Env::new(vec![]);
    let opts = GatewayOptions {
        max_connections: 1,
        ..GatewayOptions::default()
    };
    env.serve(opts, async |gw| {
        let (first, _) = gw.hello(json!({})).await;
        match gw.connect_with("/ws", &[]).await {
            Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status().as_u16(), 503),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("a second connection was let in past max_connections = 1"),
        }
        drop(first);
        // The gateway notices the close; then the place is free.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match gw.connect_with("/ws", &[]).await {
                Ok(mut c) => {
                    c.hello(&gw.token, json!({})).await;
                    break;
                }
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                Err(e) => panic!("still refused after the first closed: {e}"),
            }
        }
    });
}
