//! `telegram`: the Telegram Bot API as a chat channel.
//!
//! `poll` long-polls `getUpdates` and emits every message with text, a caption, a photo
//! or a document; `deliver` sends, edits, drafts (`sendMessageDraft`, Bot API 9.3),
//! shows "typing…" and uploads files; `fetch-file` downloads through `getFile`.
//!
//! The component never has the bot token: every URL names it `{token}` and the host
//! substitutes it on the API origin. Durable state (written by the host or here):
//!
//! - `api_base_url` (host): the API origin, default `https://api.telegram.org`.
//! - `poll_timeout_secs` (host, when the operator set `polling_timeout_secs`): the
//!   `getUpdates` wait, default 30 s.
//! - `offset`: the next `getUpdates` offset, set only after the batch is emitted (a crash
//!   mid-poll replays the batch; the host de-duplicates by update id).
//! - `bot_username`, `bot_id`: from `getMe`, once, to tell when a group message
//!   addresses the bot.

mod api;
mod outbound;
mod updates;

use api::CallError;
use outbound::{Call, Returns};
use oxydra_sdk::channel::http::{self, Part, Response};
use oxydra_sdk::channel::types::{Action, ChannelError, ChannelInfo};
use oxydra_sdk::channel::{Channel, emit, log, state_get, state_set};
use serde_json::Value;
use updates::Me;

/// Long-polling wait asked of `getUpdates`, in seconds.
const POLL_TIMEOUT_SECS: u32 = 30;
/// Telegram's longest message text (UTF-16 code units).
const MAX_MESSAGE_LENGTH: u32 = 4096;
/// Most bytes read of one API answer (100 updates of 4096 characters fit many times).
const MAX_ANSWER_BYTES: usize = 8 << 20;
/// Only messages (no edits, channel posts, callbacks…).
const ALLOWED_UPDATES: &str = "[\"message\"]";

struct Telegram;

impl Channel for Telegram {
    fn describe() -> ChannelInfo {
        ChannelInfo {
            name: "telegram".into(),
            poll_timeout_secs: POLL_TIMEOUT_SECS,
            max_message_length: MAX_MESSAGE_LENGTH,
            supports_drafts: true,
        }
    }

    fn poll() -> Result<u32, ChannelError> {
        let base = base_url();
        let me = me(&base)?;
        let offset = state_get("offset")
            .and_then(|s| s.trim().parse::<i64>().ok())
            .unwrap_or(0);
        let result = get(
            &base,
            "getUpdates",
            &[
                ("offset", &offset.to_string()),
                ("timeout", &poll_timeout().to_string()),
                ("allowed_updates", ALLOWED_UPDATES),
            ],
        )?;
        let batch = updates::parse(&result, &me);
        for line in &batch.skipped {
            log(line);
        }
        let mut emitted: u32 = 0;
        for message in &batch.messages {
            emit(message);
            emitted = emitted.saturating_add(1);
        }
        // Only after every emit: a crash before this replays the batch.
        if let Some(next) = batch.next_offset.filter(|n| *n > offset) {
            state_set("offset", &next.to_string());
        }
        Ok(emitted)
    }

    fn deliver(action: Action) -> Result<String, ChannelError> {
        let base = base_url();
        let (call, returns) = outbound::build(action)?;
        let method = call.method();
        let url = api::method_url(&base, method);
        let resp = match &call {
            Call::Json { body, .. } => http::post_json(&url, body, MAX_ANSWER_BYTES)?,
            Call::Upload {
                fields,
                file_field,
                file_name,
                content_type,
                data,
                ..
            } => {
                let mut parts: Vec<Part<'_>> =
                    fields.iter().map(|(k, v)| Part::text(k, v)).collect();
                parts.push(Part::file(file_field, file_name, Some(content_type), data));
                http::post_multipart(&url, &parts, MAX_ANSWER_BYTES)?
            }
        };
        match (settle(method, &resp), returns) {
            (Ok(result), Returns::NewMessage) => api::message_id(method, &result),
            (Ok(_), Returns::Edited(id)) => Ok(id),
            (Ok(_), Returns::Nothing) => Ok(String::new()),
            // The same text again: the message is as asked.
            (Err(CallError::Api(e)), Returns::Edited(id)) if e.is_not_modified() => Ok(id),
            (Err(e), _) => Err(e.into_channel_error(method)),
        }
    }

    fn fetch_file(file_id: &str, max_bytes: u64) -> Result<Vec<u8>, ChannelError> {
        let base = base_url();
        let file = get(&base, "getFile", &[("file_id", file_id)])?;
        let path = file
            .get("file_path")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
            .ok_or_else(|| {
                ChannelError::Failed(format!(
                    "getFile: no file_path for file {file_id} (the Bot API downloads files \
                     of at most 20 MB)"
                ))
            })?;
        if let Some(size) = file.get("file_size").and_then(Value::as_u64)
            && size > max_bytes
        {
            return Err(too_big(file_id, max_bytes));
        }
        let cap = usize::try_from(max_bytes).unwrap_or(usize::MAX);
        let resp = http::get(&api::file_url(&base, path), &[], cap)?;
        if !resp.is_success() {
            return Err(match settle("file download", &resp) {
                Err(e) => e.into_channel_error("file download"),
                Ok(_) => ChannelError::Failed(format!("file download: HTTP {}", resp.status)),
            });
        }
        if resp.truncated {
            return Err(too_big(file_id, max_bytes));
        }
        Ok(resp.body)
    }
}

fn too_big(file_id: &str, max_bytes: u64) -> ChannelError {
    ChannelError::Failed(format!(
        "file {file_id} is larger than the limit of {max_bytes} bytes"
    ))
}

/// The long-polling wait the host configured, else the default.
fn poll_timeout() -> u32 {
    state_get("poll_timeout_secs")
        .and_then(|s| s.trim().parse::<u32>().ok())
        .filter(|s| (1..=300).contains(s))
        .unwrap_or(POLL_TIMEOUT_SECS)
}

/// The API origin the host configured.
fn base_url() -> String {
    state_get("api_base_url")
        .map(|b| b.trim().trim_end_matches('/').to_string())
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| api::DEFAULT_BASE_URL.to_string())
}

/// The `result` of a Bot API answer, or why there is none.
fn settle(method: &str, resp: &Response) -> Result<Value, CallError> {
    api::answer(
        method,
        resp.status,
        resp.header("retry-after").as_deref(),
        &resp.body,
        resp.truncated,
    )
}

/// GET `method` with `query` and return its `result`.
fn get(base: &str, method: &str, query: &[(&str, &str)]) -> Result<Value, ChannelError> {
    let url = oxydra_sdk::url::with_query(&api::method_url(base, method), query);
    let resp = http::get(&url, &[], MAX_ANSWER_BYTES)?;
    settle(method, &resp).map_err(|e| e.into_channel_error(method))
}

/// The bot's identity: from state, else `getMe` (then kept in state).
fn me(base: &str) -> Result<Me, ChannelError> {
    let id = || state_get("bot_id").and_then(|s| s.trim().parse::<i64>().ok());
    if let Some(username) = state_get("bot_username").filter(|u| !u.trim().is_empty()) {
        return Ok(Me {
            username: username.trim().to_string(),
            id: id(),
        });
    }
    let result = get(base, "getMe", &[])?;
    let username = result
        .get("username")
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
        .ok_or_else(|| ChannelError::Failed("getMe: the bot has no username".into()))?;
    state_set("bot_username", username);
    let bot_id = result.get("id").and_then(Value::as_i64);
    if let Some(bot_id) = bot_id {
        state_set("bot_id", &bot_id.to_string());
    }
    Ok(Me {
        username: username.to_string(),
        id: bot_id,
    })
}

oxydra_sdk::export_channel!(Telegram);
