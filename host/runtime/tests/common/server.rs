//! A scripted HTTP/1.1 server on 127.0.0.1 for provider tests. Each connection gets the
//! next scripted reply. Bodies are sent with chunked transfer encoding, each piece as
//! its own chunk and its own TCP write (with a short pause), so an event can be split
//! anywhere: mid-line, mid-JSON, mid-UTF-8. `Piece::Cut` drops the connection without
//! the final chunk.
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Debug)]
pub enum Piece {
    Bytes(Vec<u8>),
    Pause(Duration),
    Cut,
}

#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<Piece>,
    /// Wait this long after reading the request before sending anything.
    pub before_head: Option<Duration>,
}

impl Reply {
    /// An SSE reply: each string is one TCP write.
    pub fn sse(pieces: &[&str]) -> Reply {
        Reply {
            status: 200,
            headers: vec![("content-type".into(), "text/event-stream".into())],
            body: pieces
                .iter()
                .map(|p| Piece::Bytes(p.as_bytes().to_vec()))
                .collect(),
            before_head: None,
        }
    }
    pub fn sse_bytes(pieces: Vec<Vec<u8>>) -> Reply {
        Reply {
            status: 200,
            headers: vec![("content-type".into(), "text/event-stream".into())],
            body: pieces.into_iter().map(Piece::Bytes).collect(),
            before_head: None,
        }
    }
    pub fn status(status: u16, body: &str) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: vec![Piece::Bytes(body.as_bytes().to_vec())],
            before_head: None,
        }
    }
    /// Accept the connection, read the request, and say nothing for `d`.
    pub fn silent(d: Duration) -> Reply {
        Reply {
            before_head: Some(d),
            ..Reply::status(200, "")
        }
    }
    pub fn header(mut self, k: &str, v: &str) -> Reply {
        self.headers.push((k.into(), v.into()));
        self
    }
}

#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("request body is not JSON ({e}): {}", self.body))
    }
}

pub struct Server {
    pub url: String,
    pub requests: Arc<Mutex<Vec<Recorded>>>,
}

impl Server {
    /// Serve `replies` in order, one per connection; further connections get a 599.
    pub fn start(replies: Vec<Reply>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = requests.clone();
        std::thread::spawn(move || {
            let mut replies = replies.into_iter();
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                let reply = replies
                    .next()
                    .unwrap_or_else(|| Reply::status(599, "{\"error\":\"script exhausted\"}"));
                let recorded = recorded.clone();
                // One thread per connection, so a slow reply never blocks the next.
                std::thread::spawn(move || serve(stream, reply, &recorded));
            }
        });
        Server { url, requests }
    }

    /// Serve every connection with the reply `route` picks for its request, on `ip`
    /// (any loopback address: 127.0.0.2 is a second host for redirect tests).
    pub fn routes(ip: &str, route: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind((ip, 0)).unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let recorded = requests.clone();
        let route = Arc::new(route);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                let (recorded, route) = (recorded.clone(), route.clone());
                std::thread::spawn(move || serve_with(stream, &|r| route(r), &recorded));
            }
        });
        Server { url, requests }
    }

    /// The port of `url`.
    pub fn port(&self) -> u16 {
        self.url.rsplit(':').next().unwrap().parse().unwrap()
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

fn read_request(stream: &TcpStream) -> Option<Recorded> {
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if let Some(len) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(len, 0);
        r.read_exact(&mut body).ok()?;
    } else if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).ok()?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    }
    Some(Recorded {
        method,
        path,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn serve(stream: TcpStream, reply: Reply, recorded: &Arc<Mutex<Vec<Recorded>>>) {
    serve_with(stream, &|_| reply.clone(), recorded)
}

fn serve_with(
    mut stream: TcpStream,
    pick: &dyn Fn(&Recorded) -> Reply,
    recorded: &Arc<Mutex<Vec<Recorded>>>,
) {
    stream.set_nodelay(true).ok();
    let Some(req) = read_request(&stream) else {
        return;
    };
    let reply = pick(&req);
    recorded.lock().unwrap().push(req);
    if let Some(d) = reply.before_head {
        std::thread::sleep(d);
    }
    let mut head = format!("HTTP/1.1 {} X\r\n", reply.status);
    for (k, v) in &reply.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("transfer-encoding: chunked\r\nconnection: close\r\n\r\n");
    if stream.write_all(head.as_bytes()).is_err() {
        return;
    }
    for piece in reply.body {
        match piece {
            Piece::Bytes(b) => {
                let mut chunk = format!("{:x}\r\n", b.len()).into_bytes();
                chunk.extend_from_slice(&b);
                chunk.extend_from_slice(b"\r\n");
                if stream
                    .write_all(&chunk)
                    .and_then(|_| stream.flush())
                    .is_err()
                {
                    return;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            Piece::Pause(d) => std::thread::sleep(d),
            Piece::Cut => {
                let _ = stream.shutdown(std::net::Shutdown::Both);
                return;
            }
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n");
    let _ = stream.flush();
}

/// Replies in OpenAI's chat-completions stream format, for tests that script a model.
pub mod openai {
    use super::{Piece, Reply};
    use serde_json::{Value, json};

    /// One streamed text delta.
    pub fn delta(text: &str) -> Piece {
        Piece::Bytes(
            format!(
                "data: {}\n\n",
                json!({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]})
            )
            .into_bytes(),
        )
    }

    /// The end of a stream: the finish reason, the usage (input, output tokens) when
    /// given, and `[DONE]`.
    pub fn end(finish: &str, usage: Option<(u64, u64)>) -> Vec<Piece> {
        let mut out = vec![Piece::Bytes(
            format!(
                "data: {}\n\n",
                json!({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
            )
            .into_bytes(),
        )];
        if let Some((input, output)) = usage {
            out.push(Piece::Bytes(
                format!(
                    "data: {}\n\n",
                    json!({"choices": [], "usage": {"prompt_tokens": input, "completion_tokens": output}})
                )
                .into_bytes(),
            ));
        }
        out.push(Piece::Bytes(b"data: [DONE]\n\n".to_vec()));
        out
    }

    /// A stream of `pieces` (deltas, pauses) that ends with `stop`.
    pub fn stream(mut pieces: Vec<Piece>, usage: Option<(u64, u64)>) -> Reply {
        pieces.extend(end("stop", usage));
        Reply {
            body: pieces,
            ..Reply::sse(&[])
        }
    }

    /// A whole answer in one delta.
    pub fn answer(text: &str, usage: Option<(u64, u64)>) -> Reply {
        stream(vec![delta(text)], usage)
    }

    /// One assistant message calling tools: (call id, tool name, arguments).
    pub fn tool_calls(calls: &[(&str, &str, Value)], usage: Option<(u64, u64)>) -> Reply {
        let list: Vec<Value> = calls
            .iter()
            .enumerate()
            .map(|(i, (id, name, args))| json!({"index": i, "id": id, "type": "function", "function": {"name": name, "arguments": args.to_string()}}))
            .collect();
        let mut body = vec![Piece::Bytes(
            format!(
                "data: {}\n\n",
                json!({"choices": [{"index": 0, "delta": {"tool_calls": list}, "finish_reason": null}]})
            )
            .into_bytes(),
        )];
        body.extend(end("tool_calls", usage));
        Reply {
            body,
            ..Reply::sse(&[])
        }
    }
}
