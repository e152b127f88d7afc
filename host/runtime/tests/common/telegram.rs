//! A fake Telegram Bot API on 127.0.0.1 for channel tests, speaking the public API's JSON
//! (`{"ok":true,"result":…}` / `{"ok":false,"error_code":…,"description":…}`).
//!
//! std only: one thread per connection, HTTP/1.1 request bodies with `Content-Length` or
//! chunked, every answer with `Content-Length` and `connection: close`.
//!
//! - `/bot<token>/<method>`: the API. Parameters come from the query, a JSON body, a
//!   form body or `multipart/form-data` (as the real API takes them). A token other
//!   than the configured one gets 401 `Unauthorized`.
//! - `/file/bot<token>/<file_path>`: downloads of files set with [`FakeBot::set_file`]
//!   (and of files the bot uploaded).
//!
//! Like the real API: `getUpdates` returns the updates with `update_id >= offset`,
//! forgets those below it, long-polls up to `timeout` seconds (capped at 2 s here) and
//! ends an older waiting `getUpdates` with 409 when a newer one arrives; `sendMessage`
//! refuses empty text, text over 4096 UTF-16 units (`message is too long`) and, with
//! `parse_mode: "HTML"`, tags Telegram does not support or that do not nest (`can't
//! parse entities`); `editMessageText` refuses the same text (`message is not
//! modified`) and unknown messages.
#![allow(dead_code, clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use serde_json::{Map, Value, json};
use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The longest long-poll this fake holds a `getUpdates` (the real API: `timeout`).
pub const MAX_POLL: Duration = Duration::from_secs(2);
/// `getMe`'s username.
pub const BOT_USERNAME: &str = "oxydra_test_bot";

/// A request body as received.
#[derive(Clone, Debug, PartialEq)]
pub enum Body {
    Empty,
    Json(Value),
    /// `application/x-www-form-urlencoded`, undecoded.
    Form(String),
    /// `multipart/form-data`, the raw bytes (fields in [`Call::params`], files in
    /// [`Call::files`]).
    Multipart(Vec<u8>),
    /// Anything else.
    Raw(Vec<u8>),
}

/// A file part of a multipart request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilePart {
    pub field: String,
    pub file_name: Option<String>,
    pub content_type: Option<String>,
    pub data: Vec<u8>,
}

/// One request the fake received (recorded when it arrives, before the answer).
#[derive(Clone, Debug)]
pub struct Call {
    /// The Bot API method as written in the path (`getUpdates`, `sendMessage`), or
    /// `file` for a download.
    pub method: String,
    /// `GET`, `POST`.
    pub http_method: String,
    /// The path as received, without the query.
    pub path: String,
    /// The query as received (without `?`), undecoded.
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Body,
    /// Every parameter: the query's, then the body's (JSON values keep their type; query,
    /// form and multipart fields are strings).
    pub params: Map<String, Value>,
    /// The files of a multipart body.
    pub files: Vec<FilePart>,
    /// The token in `/bot<token>/` or `/file/bot<token>/`, percent-decoded.
    pub token_in_path: Option<String>,
    /// When the request arrived.
    pub at: Instant,
}

impl Call {
    /// A parameter as text (a JSON number or bool as written, a string as is).
    pub fn param(&self, name: &str) -> Option<String> {
        self.params.get(name).map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }

    pub fn param_i64(&self, name: &str) -> Option<i64> {
        match self.params.get(name)? {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// The JSON body, or the parameters as an object when the body is not JSON.
    pub fn json(&self) -> Value {
        match &self.body {
            Body::Json(v) => v.clone(),
            _ => Value::Object(self.params.clone()),
        }
    }

    /// The file part called `field`.
    pub fn file(&self, field: &str) -> Option<&FilePart> {
        self.files.iter().find(|f| f.field == field)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A message the bot sent (`sendMessage`), with its text after any edits.
#[derive(Clone, Debug)]
struct Sent {
    chat_id: String,
    message_id: i64,
    text: String,
    parse_mode: Option<String>,
}

struct State {
    token: String,
    bot_id: i64,
    /// Not yet confirmed, by ascending `update_id`.
    updates: VecDeque<Value>,
    next_update_id: i64,
    next_message_id: i64,
    failures: HashMap<String, VecDeque<(u16, Value)>>,
    calls: Vec<Call>,
    sent: Vec<Sent>,
    /// file_id → (file_path, bytes).
    files: HashMap<String, (String, Vec<u8>)>,
    /// Bumped by every `getUpdates`: an older waiting one sees it and ends with 409.
    poll_generation: u64,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    stop: AtomicBool,
}

pub struct FakeBot {
    url: String,
    token: String,
    shared: Arc<Shared>,
}

impl FakeBot {
    /// Serve the Bot API for `token` on 127.0.0.1 (a free port).
    pub fn start(token: &str) -> FakeBot {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let bot_id = token
            .split(':')
            .next()
            .and_then(|id| id.parse().ok())
            .unwrap_or(123_456_789);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                token: token.to_string(),
                bot_id,
                updates: VecDeque::new(),
                next_update_id: 1,
                next_message_id: 1000,
                failures: HashMap::new(),
                calls: Vec::new(),
                sent: Vec::new(),
                files: HashMap::new(),
                poll_generation: 0,
            }),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { break };
                let s = s.clone();
                std::thread::spawn(move || serve(stream, &s));
            }
        });
        FakeBot {
            url,
            token: token.to_string(),
            shared,
        }
    }

    /// `http://127.0.0.1:PORT` (the channel's `api_base_url`).
    pub fn url(&self) -> String {
        self.url.clone()
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// The bot's user id (`getMe`): the token's number before `:`.
    pub fn bot_id(&self) -> i64 {
        self.shared.state.lock().unwrap().bot_id
    }

    /// Queue an update (a whole `Update` object). Without an `update_id` it gets the
    /// next one; a message without `message_id` or `date` gets them too. Returns the
    /// update's id.
    pub fn push_update(&self, mut update: Value) -> i64 {
        let mut st = self.shared.state.lock().unwrap();
        let id = match update.get("update_id").and_then(Value::as_i64) {
            Some(id) => id,
            None => {
                let id = st.next_update_id;
                update["update_id"] = json!(id);
                id
            }
        };
        st.next_update_id = st.next_update_id.max(id + 1);
        if let Some(msg) = update.get_mut("message").filter(|m| m.is_object()) {
            if msg.get("message_id").is_none() {
                msg["message_id"] = json!(st.next_message_id);
                st.next_message_id += 1;
            }
            if msg.get("date").is_none() {
                msg["date"] = json!(now());
            }
        }
        let at = st
            .updates
            .iter()
            .position(|u| u["update_id"].as_i64().unwrap_or(0) > id)
            .unwrap_or(st.updates.len());
        st.updates.insert(at, update);
        drop(st);
        self.shared.changed.notify_all();
        id
    }

    /// The ids of the updates not yet confirmed (by a `getUpdates` with a higher offset).
    pub fn pending(&self) -> Vec<i64> {
        let st = self.shared.state.lock().unwrap();
        st.updates
            .iter()
            .filter_map(|u| u["update_id"].as_i64())
            .collect()
    }

    /// Answer the next call of `method` (any case) with `status` and `body` instead,
    /// e.g. `fail_next("sendMessage", 429, json!({"ok": false, "error_code": 429,
    /// "description": "Too Many Requests: retry after 7", "parameters": {"retry_after":
    /// 7}}))`. Several queue up, in order.
    pub fn fail_next(&self, method: &str, status: u16, body: Value) {
        let mut st = self.shared.state.lock().unwrap();
        st.failures
            .entry(method.to_ascii_lowercase())
            .or_default()
            .push_back((status, body));
    }

    /// Every request so far, in arrival order.
    pub fn calls(&self) -> Vec<Call> {
        self.shared.state.lock().unwrap().calls.clone()
    }

    /// The calls of `method` (any case).
    pub fn calls_to(&self, method: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.method.eq_ignore_ascii_case(method))
            .collect()
    }

    /// Wait up to `timeout` until `method` was called `n` times; its calls.
    pub fn wait_calls(&self, method: &str, n: usize, timeout: Duration) -> Vec<Call> {
        let started = Instant::now();
        loop {
            let calls = self.calls_to(method);
            if calls.len() >= n || started.elapsed() > timeout {
                return calls;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The messages the bot sent (`sendMessage` that succeeded), in order: (chat id,
    /// text), the text as it is now (after `editMessageText`).
    pub fn sent(&self) -> Vec<(String, String)> {
        let st = self.shared.state.lock().unwrap();
        st.sent
            .iter()
            .map(|s| (s.chat_id.clone(), s.text.clone()))
            .collect()
    }

    /// Make `file_id` known to `getFile` (as `file_path`) and downloadable.
    pub fn set_file(&self, file_id: &str, path: &str, bytes: &[u8]) {
        let mut st = self.shared.state.lock().unwrap();
        st.files
            .insert(file_id.to_string(), (path.to_string(), bytes.to_vec()));
    }
}

impl Drop for FakeBot {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.changed.notify_all();
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.url.trim_start_matches("http://"));
    }
}

/// Updates in the Bot API's format, for tests.
pub mod update {
    use serde_json::{Value, json};

    pub fn user(id: i64, first_name: &str) -> Value {
        json!({"id": id, "is_bot": false, "first_name": first_name, "language_code": "en"})
    }

    pub fn private_chat(id: i64, first_name: &str) -> Value {
        json!({"id": id, "type": "private", "first_name": first_name})
    }

    pub fn group_chat(id: i64, title: &str, forum: bool) -> Value {
        if forum {
            json!({"id": id, "type": "supergroup", "title": title, "is_forum": true})
        } else {
            json!({"id": id, "type": "supergroup", "title": title})
        }
    }

    /// A text message from `from` in `chat` (ids filled in by `push_update`).
    pub fn text(from: Value, chat: Value, text: &str) -> Value {
        json!({"message": {"from": from, "chat": chat, "text": text}})
    }

    /// A text in a private chat with user `id`.
    pub fn private_text(id: i64, first_name: &str, text: &str) -> Value {
        self::text(user(id, first_name), private_chat(id, first_name), text)
    }

    /// A text that starts with `@oxydra_test_bot ` in group `chat`.
    pub fn mention(from: Value, chat: Value, rest: &str) -> Value {
        let mention = format!("@{}", super::BOT_USERNAME);
        let mut u = self::text(from, chat, &format!("{mention} {rest}"));
        u["message"]["entities"] =
            json!([{"type": "mention", "offset": 0, "length": mention.encode_utf16().count()}]);
        u
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn read_request(stream: &TcpStream) -> Option<Request> {
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let req = Request {
        method,
        target,
        headers,
        body: Vec::new(),
    };
    let mut body = Vec::new();
    if req
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim().split(';').next()?.trim(), 16).ok()?;
            if n == 0 {
                // Trailers, up to the empty line.
                loop {
                    let mut t = String::new();
                    if r.read_line(&mut t).ok()? == 0 || t.trim_end().is_empty() {
                        break;
                    }
                }
                break;
            }
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).ok()?;
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(len) = req
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        body.resize(len, 0);
        r.read_exact(&mut body).ok()?;
    }
    Some(Request { body, ..req })
}

fn serve(mut stream: TcpStream, shared: &Shared) {
    stream.set_nodelay(true).ok();
    let Some(req) = read_request(&stream) else {
        return;
    };
    let (status, body) = handle(&req, shared);
    let bytes = match &body {
        Answer::Json(v) => v.to_string().into_bytes(),
        Answer::Bytes(b) => b.clone(),
    };
    let content_type = match body {
        Answer::Json(_) => "application/json",
        Answer::Bytes(_) => "application/octet-stream",
    };
    let head = format!(
        "HTTP/1.1 {status} {}\r\nserver: fake-bot-api\r\ncontent-type: {content_type}\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        reason(status),
        bytes.len()
    );
    let _ = stream
        .write_all(head.as_bytes())
        .and_then(|_| stream.write_all(&bytes))
        .and_then(|_| stream.flush());
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        _ => "Status",
    }
}

enum Answer {
    Json(Value),
    Bytes(Vec<u8>),
}

fn ok(result: Value) -> (u16, Answer) {
    (200, Answer::Json(json!({"ok": true, "result": result})))
}

fn error(code: u16, description: &str) -> (u16, Answer) {
    (
        code,
        Answer::Json(json!({"ok": false, "error_code": code, "description": description})),
    )
}

fn bad_request(description: &str) -> (u16, Answer) {
    error(400, &format!("Bad Request: {description}"))
}

/// `%XX` and (in queries and forms) `+` decoded.
fn decode(s: &str, plus_is_space: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' if plus_is_space => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn form_pairs(s: &str, into: &mut Map<String, Value>) {
    for pair in s.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        into.insert(decode(k, true), Value::String(decode(v, true)));
    }
}

/// The text fields and files of a multipart body.
fn multipart(content_type: &str, body: &[u8]) -> (Map<String, Value>, Vec<FilePart>) {
    let mut fields = Map::new();
    let mut files = Vec::new();
    let Some(boundary) = content_type.split(';').find_map(|p| {
        p.trim()
            .strip_prefix("boundary=")
            .map(|b| b.trim_matches('"').to_string())
    }) else {
        return (fields, files);
    };
    let delim = format!("--{boundary}").into_bytes();
    let mut starts = Vec::new();
    let mut i = 0;
    while i + delim.len() <= body.len() {
        if body[i..].starts_with(&delim) {
            starts.push(i);
            i += delim.len();
        } else {
            i += 1;
        }
    }
    for w in starts.windows(2) {
        let mut part = &body[w[0] + delim.len()..w[1]];
        part = part.strip_prefix(b"\r\n").unwrap_or(part);
        part = part.strip_suffix(b"\r\n").unwrap_or(part);
        let Some(split) = part.windows(4).position(|x| x == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&part[..split]).into_owned();
        let data = part[split + 4..].to_vec();
        let mut name = None;
        let mut file_name = None;
        let mut ctype = None;
        for line in head.split("\r\n") {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            if k.trim().eq_ignore_ascii_case("content-disposition") {
                for p in v.split(';').map(str::trim) {
                    if let Some(n) = p.strip_prefix("name=") {
                        name = Some(n.trim_matches('"').to_string());
                    } else if let Some(f) = p.strip_prefix("filename=") {
                        file_name = Some(f.trim_matches('"').to_string());
                    }
                }
            } else if k.trim().eq_ignore_ascii_case("content-type") {
                ctype = Some(v.trim().to_string());
            }
        }
        let Some(name) = name else { continue };
        if file_name.is_some() {
            files.push(FilePart {
                field: name,
                file_name,
                content_type: ctype,
                data,
            });
        } else {
            fields.insert(
                name,
                Value::String(String::from_utf8_lossy(&data).into_owned()),
            );
        }
    }
    (fields, files)
}

/// Path → (method, token): `/bot<token>/<method>` or `/file/bot<token>/<path>`.
fn route(path: &str) -> Option<(String, String, Option<String>)> {
    if let Some(rest) = path.strip_prefix("/file/bot") {
        let (token, file_path) = rest.split_once('/')?;
        return Some((
            "file".into(),
            decode(token, false),
            Some(file_path.to_string()),
        ));
    }
    let rest = path.strip_prefix("/bot")?;
    let (token, method) = rest.split_once('/')?;
    Some((method.to_string(), decode(token, false), None))
}

fn handle(req: &Request, shared: &Shared) -> (u16, Answer) {
    let (path, query) = req
        .target
        .split_once('?')
        .map_or((req.target.as_str(), ""), |(p, q)| (p, q));
    let routed = route(path);
    let mut params = Map::new();
    form_pairs(query, &mut params);
    let content_type = req
        .header("content-type")
        .unwrap_or("")
        .to_ascii_lowercase();
    let mut files = Vec::new();
    let body = if req.body.is_empty() {
        Body::Empty
    } else if content_type.starts_with("application/json") {
        match serde_json::from_slice::<Value>(&req.body) {
            Ok(v) => {
                if let Some(o) = v.as_object() {
                    params.extend(o.clone());
                }
                Body::Json(v)
            }
            Err(_) => Body::Raw(req.body.clone()),
        }
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        let s = String::from_utf8_lossy(&req.body).into_owned();
        form_pairs(&s, &mut params);
        Body::Form(s)
    } else if content_type.starts_with("multipart/form-data") {
        // The boundary is case-sensitive: take it from the header as sent.
        let (fields, f) = multipart(req.header("content-type").unwrap_or(""), &req.body);
        params.extend(fields);
        files = f;
        Body::Multipart(req.body.clone())
    } else {
        Body::Raw(req.body.clone())
    };
    let call = Call {
        method: routed
            .as_ref()
            .map_or_else(String::new, |(m, _, _)| m.clone()),
        http_method: req.method.clone(),
        path: path.to_string(),
        query: query.to_string(),
        headers: req.headers.clone(),
        body,
        params,
        files,
        token_in_path: routed.as_ref().map(|(_, t, _)| t.clone()),
        at: Instant::now(),
    };
    let mut st = shared.state.lock().unwrap();
    st.calls.push(call.clone());
    let Some((method, token, file_path)) = routed else {
        return error(404, "Not Found");
    };
    if token != st.token {
        return error(401, "Unauthorized");
    }
    let key = method.to_ascii_lowercase();
    if let Some((status, body)) = st.failures.get_mut(&key).and_then(VecDeque::pop_front) {
        return (status, Answer::Json(body));
    }
    match key.as_str() {
        "file" => {
            let path = decode(file_path.as_deref().unwrap_or(""), false);
            match st.files.values().find(|(p, _)| *p == path) {
                Some((_, bytes)) => (200, Answer::Bytes(bytes.clone())),
                None => error(404, "Not Found"),
            }
        }
        "getme" => ok(json!({
            "id": st.bot_id, "is_bot": true, "first_name": "Oxy", "username": BOT_USERNAME,
            "can_join_groups": true, "can_read_all_group_messages": false,
            "supports_inline_queries": false
        })),
        "getupdates" => get_updates(&call, st, shared),
        "sendmessage" => send_message(&call, &mut st),
        "editmessagetext" => edit_message(&call, &mut st),
        "sendmessagedraft" => {
            if call.param("chat_id").is_none() {
                return bad_request("chat not found");
            }
            if call.param_i64("draft_id").unwrap_or(0) == 0 {
                return bad_request("draft_id must be non-zero");
            }
            // An empty text shows "Thinking…" (Bot API 9.3+).
            if call
                .param("text")
                .unwrap_or_default()
                .encode_utf16()
                .count()
                > 4096
            {
                return bad_request("message is too long");
            }
            ok(json!(true))
        }
        "sendchataction" => {
            if call.param("chat_id").is_none() {
                return bad_request("chat not found");
            }
            match call.param("action").as_deref() {
                Some(
                    "typing" | "upload_photo" | "record_video" | "upload_video" | "record_voice"
                    | "upload_voice" | "upload_document" | "choose_sticker" | "find_location"
                    | "record_video_note" | "upload_video_note",
                ) => ok(json!(true)),
                _ => bad_request("wrong parameter action in request"),
            }
        }
        "sendphoto" | "senddocument" | "sendaudio" | "sendvoice" | "sendvideo" => {
            send_media(&key, &call, &mut st)
        }
        "getfile" => {
            let Some(id) = call.param("file_id") else {
                return bad_request("file_id not specified");
            };
            match st.files.get(&id) {
                Some((path, bytes)) => ok(json!({
                    "file_id": id, "file_unique_id": format!("u-{id}"),
                    "file_size": bytes.len(), "file_path": path
                })),
                None => bad_request("invalid file_id"),
            }
        }
        _ => error(404, "Not Found"),
    }
}

fn get_updates(
    call: &Call,
    mut st: std::sync::MutexGuard<'_, State>,
    shared: &Shared,
) -> (u16, Answer) {
    let offset = call.param_i64("offset").unwrap_or(0);
    let limit = call.param_i64("limit").unwrap_or(100).clamp(1, 100) as usize;
    let timeout = call
        .param("timeout")
        .and_then(|t| t.parse::<f64>().ok())
        .filter(|t| t.is_finite() && *t > 0.0)
        .map_or(Duration::ZERO, Duration::from_secs_f64)
        .min(MAX_POLL);
    st.poll_generation += 1;
    let generation = st.poll_generation;
    // A newer getUpdates ends an older waiting one.
    shared.changed.notify_all();
    // Confirm what is below the offset (a negative one keeps the last -offset updates).
    if offset > 0 {
        st.updates
            .retain(|u| u["update_id"].as_i64().unwrap_or(0) >= offset);
    } else if offset < 0 {
        let keep = offset.unsigned_abs() as usize;
        while st.updates.len() > keep {
            st.updates.pop_front();
        }
    }
    let deadline = Instant::now() + timeout;
    loop {
        if st.poll_generation != generation {
            return error(
                409,
                "Conflict: terminated by other getUpdates request; make sure that only one \
                 bot instance is running",
            );
        }
        let batch: Vec<Value> = st.updates.iter().take(limit).cloned().collect();
        let now = Instant::now();
        if !batch.is_empty() || now >= deadline || shared.stop.load(Ordering::SeqCst) {
            return ok(Value::Array(batch));
        }
        st = shared.changed.wait_timeout(st, deadline - now).unwrap().0;
    }
}

fn chat_json(chat_id: &str) -> Value {
    match chat_id.parse::<i64>() {
        Ok(id) if id < 0 => json!({"id": id, "type": "supergroup", "title": "Group"}),
        Ok(id) => json!({"id": id, "type": "private", "first_name": "User"}),
        Err(_) => json!({"id": -1_001_000_000_001_i64, "type": "channel", "title": chat_id}),
    }
}

fn bot_json(st: &State) -> Value {
    json!({"id": st.bot_id, "is_bot": true, "first_name": "Oxy", "username": BOT_USERNAME})
}

/// The visible length (UTF-16 units) of `text`, or why Telegram would refuse it.
fn check_text(text: &str, parse_mode: Option<&str>) -> Result<usize, String> {
    match parse_mode.map(str::to_ascii_lowercase).as_deref() {
        Some("html") => check_html(text),
        _ => Ok(text.encode_utf16().count()),
    }
}

/// Telegram's HTML subset: the supported tags, properly nested; `&lt;` `&gt;` `&amp;`
/// `&quot;` and numeric entities. The visible length in UTF-16 units.
fn check_html(text: &str) -> Result<usize, String> {
    const TAGS: &[&str] = &[
        "b",
        "strong",
        "i",
        "em",
        "u",
        "ins",
        "s",
        "strike",
        "del",
        "span",
        "tg-spoiler",
        "a",
        "tg-emoji",
        "code",
        "pre",
        "blockquote",
    ];
    let mut stack: Vec<String> = Vec::new();
    let mut visible = String::new();
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        let offset = text.len() - rest.len();
        match c {
            '<' => {
                let Some(end) = rest.find('>') else {
                    return Err(format!("Unclosed start tag at byte offset {offset}"));
                };
                let inner = &rest[1..end];
                if let Some(name) = inner.strip_prefix('/') {
                    let name = name.trim().to_ascii_lowercase();
                    match stack.pop() {
                        Some(open) if open == name => {}
                        Some(open) => {
                            return Err(format!(
                                "Unmatched end tag at byte offset {offset}, expected \"</{open}>\", found \"</{name}>\""
                            ));
                        }
                        None => {
                            return Err(format!("Unexpected end tag at byte offset {offset}"));
                        }
                    }
                } else {
                    let name = inner
                        .split(|c: char| c.is_whitespace() || c == '/')
                        .next()
                        .unwrap_or("")
                        .to_ascii_lowercase();
                    if !TAGS.contains(&name.as_str()) {
                        return Err(format!(
                            "Unsupported start tag \"{name}\" at byte offset {offset}"
                        ));
                    }
                    if name == "span" && !inner.contains("tg-spoiler") {
                        return Err(format!(
                            "Tag \"span\" must have class \"tg-spoiler\" at byte offset {offset}"
                        ));
                    }
                    stack.push(name);
                }
                rest = &rest[end + 1..];
            }
            '&' => {
                let entity = rest[1..]
                    .find(';')
                    .filter(|n| *n <= 10)
                    .map(|n| &rest[1..1 + n]);
                let known = entity.filter(|e| {
                    matches!(*e, "lt" | "gt" | "amp" | "quot")
                        || e.strip_prefix('#').is_some_and(|n| {
                            n.strip_prefix(['x', 'X']).map_or_else(
                                || !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()),
                                |h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit()),
                            )
                        })
                });
                match known {
                    Some(e) => {
                        visible.push('x');
                        rest = &rest[e.len() + 2..];
                    }
                    None => {
                        visible.push('&');
                        rest = &rest[1..];
                    }
                }
            }
            c => {
                visible.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    if let Some(open) = stack.last() {
        return Err(format!(
            "Can't find end tag corresponding to start tag \"{open}\""
        ));
    }
    Ok(visible.encode_utf16().count())
}

fn send_message(call: &Call, st: &mut State) -> (u16, Answer) {
    let Some(chat_id) = call.param("chat_id").filter(|c| !c.is_empty()) else {
        return bad_request("chat_id is empty");
    };
    let text = call.param("text").unwrap_or_default();
    let parse_mode = call.param("parse_mode").filter(|p| !p.is_empty());
    match check_text(&text, parse_mode.as_deref()) {
        Err(why) => return bad_request(&format!("can't parse entities: {why}")),
        Ok(0) => return bad_request("message text is empty"),
        Ok(n) if n > 4096 => return bad_request("message is too long"),
        Ok(_) => {}
    }
    let message_id = st.next_message_id;
    st.next_message_id += 1;
    st.sent.push(Sent {
        chat_id: chat_id.clone(),
        message_id,
        text: text.clone(),
        parse_mode,
    });
    let mut msg = json!({
        "message_id": message_id, "from": bot_json(st), "chat": chat_json(&chat_id),
        "date": now(), "text": text
    });
    if let Some(t) = call.param_i64("message_thread_id") {
        msg["message_thread_id"] = json!(t);
        msg["is_topic_message"] = json!(true);
    }
    ok(msg)
}

fn edit_message(call: &Call, st: &mut State) -> (u16, Answer) {
    let Some(chat_id) = call.param("chat_id").filter(|c| !c.is_empty()) else {
        return bad_request("chat_id is empty");
    };
    let Some(message_id) = call.param_i64("message_id") else {
        return bad_request("message identifier is not specified");
    };
    let text = call.param("text").unwrap_or_default();
    let parse_mode = call.param("parse_mode").filter(|p| !p.is_empty());
    match check_text(&text, parse_mode.as_deref()) {
        Err(why) => return bad_request(&format!("can't parse entities: {why}")),
        Ok(0) => return bad_request("message text is empty"),
        Ok(n) if n > 4096 => return bad_request("message is too long"),
        Ok(_) => {}
    }
    let bot = bot_json(st);
    let Some(sent) = st
        .sent
        .iter_mut()
        .find(|s| s.chat_id == chat_id && s.message_id == message_id)
    else {
        return bad_request("message to edit not found");
    };
    if sent.text == text && sent.parse_mode == parse_mode {
        return bad_request(
            "message is not modified: specified new message content and reply markup are \
             exactly the same as a current content and reply markup of the message",
        );
    }
    sent.text = text.clone();
    sent.parse_mode = parse_mode;
    ok(json!({
        "message_id": message_id, "from": bot, "chat": chat_json(&chat_id),
        "date": now(), "edit_date": now(), "text": text
    }))
}

fn send_media(key: &str, call: &Call, st: &mut State) -> (u16, Answer) {
    let field = key.trim_start_matches("send");
    let Some(chat_id) = call.param("chat_id").filter(|c| !c.is_empty()) else {
        return bad_request("chat_id is empty");
    };
    let Some(file) = call.file(field) else {
        return bad_request(&format!("there is no {field} in the request"));
    };
    let caption = call.param("caption").unwrap_or_default();
    if caption.encode_utf16().count() > 1024 {
        return bad_request("message caption is too long");
    }
    let message_id = st.next_message_id;
    st.next_message_id += 1;
    let file_id = format!("sent-{field}-{message_id}");
    let name = file.file_name.clone().unwrap_or_else(|| field.to_string());
    let dir = match field {
        "photo" => "photos",
        "document" => "documents",
        "audio" => "music",
        "voice" => "voice",
        _ => "videos",
    };
    st.files.insert(
        file_id.clone(),
        (format!("{dir}/file_{message_id}_{name}"), file.data.clone()),
    );
    let size = file.data.len();
    let mut msg = json!({
        "message_id": message_id, "from": bot_json(st), "chat": chat_json(&chat_id),
        "date": now()
    });
    if !caption.is_empty() {
        msg["caption"] = json!(caption);
    }
    if let Some(t) = call.param_i64("message_thread_id") {
        msg["message_thread_id"] = json!(t);
        msg["is_topic_message"] = json!(true);
    }
    let unique = format!("u-{file_id}");
    msg[field] = match field {
        "photo" => {
            json!([{"file_id": file_id, "file_unique_id": unique, "width": 1, "height": 1, "file_size": size}])
        }
        _ => json!({
            "file_id": file_id, "file_unique_id": unique, "file_name": name,
            "mime_type": file.content_type.clone().unwrap_or_else(|| "application/octet-stream".into()),
            "file_size": size
        }),
    };
    ok(msg)
}

/// A quick check of the fake over TCP (no test framework needed): `getMe`, a wrong
/// token, an update through `getUpdates` and its confirmation, `sendMessage` with HTML
/// and an edit, a scripted failure, a file. Panics on the first difference.
pub fn self_check() {
    let token = "1:self-check";
    let bot = FakeBot::start(token);
    let addr = bot.url().trim_start_matches("http://").to_string();
    let get = |path: &str| request(&addr, "GET", path, None);
    let post = |path: &str, body: Value| request(&addr, "POST", path, Some(body));

    let (s, v) = get("/bot1:self-check/getMe");
    assert_eq!(
        (s, v["result"]["username"].as_str()),
        (200, Some(BOT_USERNAME))
    );
    let (s, v) = get("/bot%7Btoken%7D/getMe");
    assert_eq!((s, v["description"].as_str()), (401, Some("Unauthorized")));
    assert_eq!(
        bot.calls().last().unwrap().token_in_path.as_deref(),
        Some("{token}")
    );

    let id = bot.push_update(update::private_text(42, "Ada", "hello"));
    let (_, v) =
        get("/bot1:self-check/getUpdates?offset=0&timeout=1&allowed_updates=%5B%22message%22%5D");
    assert_eq!(v["result"][0]["message"]["text"], "hello");
    let (_, v) = get(&format!(
        "/bot1:self-check/getUpdates?offset={}&timeout=0",
        id + 1
    ));
    assert_eq!(v["result"], json!([]));
    assert!(bot.pending().is_empty());

    let (s, v) = post(
        "/bot1:self-check/sendMessage",
        json!({"chat_id": 42, "text": "<b>hi</b>", "parse_mode": "HTML"}),
    );
    assert_eq!(s, 200, "{v}");
    let mid = v["result"]["message_id"].as_i64().unwrap();
    let (s, v) = post(
        "/bot1:self-check/sendMessage",
        json!({"chat_id": 42, "text": "<foo>x</foo>", "parse_mode": "HTML"}),
    );
    assert!(
        s == 400
            && v["description"]
                .as_str()
                .unwrap()
                .contains("can't parse entities")
    );
    let (s, _) = post(
        "/bot1:self-check/editMessageText",
        json!({"chat_id": 42, "message_id": mid, "text": "<b>hi</b>", "parse_mode": "HTML"}),
    );
    assert_eq!(s, 400, "not modified");
    let (s, _) = post(
        "/bot1:self-check/editMessageText",
        json!({"chat_id": 42, "message_id": mid, "text": "bye"}),
    );
    assert_eq!(s, 200);
    assert_eq!(bot.sent(), vec![("42".to_string(), "bye".to_string())]);

    bot.fail_next(
        "sendMessage",
        429,
        json!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 3", "parameters": {"retry_after": 3}}),
    );
    let (s, v) = post(
        "/bot1:self-check/sendMessage",
        json!({"chat_id": 1, "text": "x"}),
    );
    assert_eq!((s, v["parameters"]["retry_after"].as_i64()), (429, Some(3)));

    bot.set_file("F1", "documents/a.txt", b"file bytes");
    let (_, v) = get("/bot1:self-check/getFile?file_id=F1");
    assert_eq!(v["result"]["file_path"], "documents/a.txt");
    let (s, raw) = request_raw(&addr, "GET", "/file/bot1:self-check/documents/a.txt", None);
    assert_eq!((s, raw.as_slice()), (200, &b"file bytes"[..]));
}

/// One HTTP/1.1 request to the fake; its status and JSON body.
pub fn request(addr: &str, method: &str, path: &str, json: Option<Value>) -> (u16, Value) {
    let (status, body) = request_raw(
        addr,
        method,
        path,
        json.map(|j| ("application/json".to_string(), j.to_string().into_bytes())),
    );
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// One HTTP/1.1 request (body: content type and bytes); its status and body bytes.
pub fn request_raw(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<(String, Vec<u8>)>,
) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    let bytes = match body {
        Some((ct, b)) => {
            head.push_str(&format!(
                "content-type: {ct}\r\ncontent-length: {}\r\n",
                b.len()
            ));
            b
        }
        None => Vec::new(),
    };
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&bytes).unwrap();
    let mut all = Vec::new();
    s.read_to_end(&mut all).unwrap();
    let split = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP answer");
    let head = String::from_utf8_lossy(&all[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    (status, all[split + 4..].to_vec())
}
