//! A plain WebSocket client of the gateway, for the tests that drive `serve` (directly
//! or behind the runner).
#![allow(dead_code)]

use serde_json::{Value, json};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;
use tungstenite::Message;

pub type Ws = tungstenite::WebSocket<TcpStream>;

pub fn connect(url: &str) -> Ws {
    let hostport = url.strip_prefix("ws://").unwrap().trim_end_matches("/ws");
    let stream = TcpStream::connect(hostport).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let (ws, _) = tungstenite::client(url, stream).unwrap();
    ws
}

pub fn send(ws: &mut Ws, ty: &str, payload: Value) {
    ws.send(Message::text(
        json!({"type": ty, "payload": payload}).to_string(),
    ))
    .unwrap();
}

/// The next frame, as JSON; `None` once the gateway closed the connection.
pub fn next(ws: &mut Ws) -> Option<Value> {
    loop {
        match ws.read() {
            Ok(Message::Text(t)) => return Some(serde_json::from_str(t.as_str()).unwrap()),
            Ok(Message::Close(_)) => return None,
            Ok(_) => {}
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                return None;
            }
            Err(tungstenite::Error::Io(e))
                if e.kind() == std::io::ErrorKind::ConnectionReset
                    || e.kind() == std::io::ErrorKind::UnexpectedEof =>
            {
                return None;
            }
            Err(e) => panic!("reading a frame: {e}"),
        }
    }
}

pub fn next_of(ws: &mut Ws, ty: &str) -> Value {
    loop {
        let f = next(ws).unwrap_or_else(|| panic!("closed before a {ty} frame"));
        if f["type"] == ty {
            return f["payload"].clone();
        }
        assert_ne!(f["type"], "error", "waiting for {ty}: {f}");
    }
}

/// [`next_of`], waiting up to `within` for each frame (a turn or a scheduled run that
/// takes longer than the connection's usual 20 s).
pub fn next_of_within(ws: &mut Ws, ty: &str, within: Duration) -> Value {
    ws.get_ref().set_read_timeout(Some(within)).unwrap();
    let payload = next_of(ws, ty);
    ws.get_ref()
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    payload
}

/// Send `hello` with the token (and the `extra` payload fields).
pub fn hello(ws: &mut Ws, token: &str, mut extra: Value) {
    extra["protocol_version"] = json!(3);
    extra["token"] = json!(token);
    send(ws, "hello", extra);
}

pub fn token(ws_dir: &Path) -> String {
    std::fs::read_to_string(ws_dir.join("ipc/gateway-token"))
        .unwrap()
        .trim()
        .to_string()
}

pub fn next_of_error(ws: &mut Ws) -> Value {
    loop {
        let f = next(ws).expect("closed before the error frame");
        if f["type"] == "error" {
            return f["payload"].clone();
        }
    }
}
