//! The `chat-channel` kind end to end: the real Telegram component against a fake Bot
//! API on 127.0.0.1 speaking the public API's JSON. The token is substituted by the host
//! into the path it wrote and never enters the component; the update offset lives in
//! the host's durable state, so a restart replays nothing and skips nothing.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

mod common;
#[path = "common/telegram.rs"]
mod telegram;

use common::{host, wasm};
use oxydra_runtime::channels::{
    Action, ChannelFailure, ChannelKv, ChannelSpec, LoadedChannel, Target,
};
use oxydra_runtime::{ComponentHost, Limits};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use telegram::FakeBot;

const TOKEN: &str = "123456:AAE-secret-bot-token-never-in-the-component";

#[derive(Default)]
struct Kv(Mutex<BTreeMap<String, String>>);

impl ChannelKv for Kv {
    fn get(&self, key: &str) -> Option<String> {
        self.0.lock().unwrap().get(key).cloned()
    }
    fn set(&self, key: &str, value: &str) -> Result<(), String> {
        self.0.lock().unwrap().insert(key.into(), value.into());
        Ok(())
    }
}

fn load(h: &ComponentHost, bot: &FakeBot, token: &str) -> LoadedChannel {
    h.load_channel(ChannelSpec {
        name: "telegram".into(),
        wasm: wasm("oxydra-channel-telegram"),
        expected_sha256: None,
        api_base_url: bot.url(),
        token: Some(token.into()),
        poll_timeout_secs: Some(2),
        limits: Limits::default(),
    })
    .unwrap()
}

fn kv(_bot: &FakeBot) -> Arc<Kv> {
    Arc::new(Kv::default())
}

fn private_message(update_id: i64, from: i64, text: &str) -> serde_json::Value {
    json!({"update_id": update_id, "message": {
        "message_id": update_id * 10, "date": 1764633600,
        "from": {"id": from, "is_bot": false, "first_name": "Alice", "username": "alice"},
        "chat": {"id": from, "type": "private", "first_name": "Alice"},
        "text": text}})
}

#[test]
fn polls_emit_messages_and_the_offset_survives_a_restart() {
    let bot = FakeBot::start(TOKEN);
    let h = host();
    let ch = load(&h, &bot, TOKEN);
    assert_eq!(ch.info.name, "telegram");
    let state = kv(&bot);
    bot.push_update(private_message(100, 42, "hello"));
    bot.push_update(private_message(101, 42, "second"));
    let got = h.channel_poll(&ch, state.clone()).unwrap();
    assert_eq!(
        got.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(),
        ["hello", "second"]
    );
    assert_eq!(got[0].sender_id, "42");
    assert_eq!(got[0].chat_id, "42");
    assert!(!got[0].is_group);
    assert_eq!(state.get("offset").as_deref(), Some("102"));
    // The operator's wait (`poll_timeout_secs`) reached the component's `getUpdates`.
    let polls = bot.calls_to("getUpdates");
    assert!(!polls.is_empty());
    assert!(
        polls
            .iter()
            .all(|c| c.param("timeout").as_deref() == Some("2")),
        "{:?}",
        polls.iter().map(|c| c.param("timeout")).collect::<Vec<_>>()
    );
    assert_eq!(ch.info.poll_timeout_secs, 2);

    // A restart: a new host and a new load; the same durable state.
    drop(ch);
    let h2 = host();
    let ch2 = load(&h2, &bot, TOKEN);
    bot.push_update(private_message(102, 42, "third"));
    let got = h2.channel_poll(&ch2, state.clone()).unwrap();
    assert_eq!(
        got.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(),
        ["third"],
        "no replay, no skip"
    );

    // The token only ever appeared in paths the host wrote; the component's state and
    // messages never hold it.
    for call in bot.calls() {
        assert_eq!(call.token_in_path.as_deref(), Some(TOKEN), "{}", call.path);
    }
    for (k, v) in state.0.lock().unwrap().iter() {
        assert!(!v.contains("secret-bot-token") && !k.contains("secret-bot-token"));
    }
}

#[test]
fn delivering_sends_and_edits_and_maps_the_bot_apis_errors() {
    let bot = FakeBot::start(TOKEN);
    let h = host();
    let ch = load(&h, &bot, TOKEN);
    let state = kv(&bot);
    let to = Target {
        chat_id: "42".into(),
        thread_id: None,
    };
    let id = h
        .channel_deliver(
            &ch,
            state.clone(),
            Action::Send {
                to: to.clone(),
                text: "<b>hi</b>".into(),
                html: true,
            },
        )
        .unwrap();
    assert!(!id.is_empty());
    h.channel_deliver(
        &ch,
        state.clone(),
        Action::Edit {
            to: to.clone(),
            message_id: id.clone(),
            text: "hi there".into(),
            html: false,
        },
    )
    .unwrap();
    h.channel_deliver(&ch, state.clone(), Action::Typing(to.clone()))
        .unwrap();
    let methods: Vec<String> = bot.calls().iter().map(|c| c.method.clone()).collect();
    for m in ["sendMessage", "editMessageText", "sendChatAction"] {
        assert!(methods.contains(&m.to_string()), "{methods:?}");
    }

    bot.fail_next("sendMessage", 429, json!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 7", "parameters": {"retry_after": 7}}));
    let err = h
        .channel_deliver(
            &ch,
            state.clone(),
            Action::Send {
                to: to.clone(),
                text: "x".into(),
                html: false,
            },
        )
        .unwrap_err();
    assert_eq!(err, ChannelFailure::RetryAfter(7));
    bot.fail_next("sendMessage", 400, json!({"ok": false, "error_code": 400, "description": "Bad Request: can't parse entities: Unsupported start tag \"foo\" at byte offset 0"}));
    let err = h
        .channel_deliver(
            &ch,
            state.clone(),
            Action::Send {
                to: to.clone(),
                text: "<foo>".into(),
                html: true,
            },
        )
        .unwrap_err();
    assert!(matches!(err, ChannelFailure::BadFormatting(_)), "{err:?}");
    bot.fail_next(
        "sendMessage",
        400,
        json!({"ok": false, "error_code": 400, "description": "Bad Request: message is too long"}),
    );
    let err = h
        .channel_deliver(
            &ch,
            state.clone(),
            Action::Send {
                to: to.clone(),
                text: "x".into(),
                html: false,
            },
        )
        .unwrap_err();
    assert!(matches!(err, ChannelFailure::TooLong(_)), "{err:?}");

    // A wrong token: 401 from the API, reported as unauthorized.
    let wrong = load(&h, &bot, "999:wrong");
    let err = h.channel_poll(&wrong, kv(&bot)).unwrap_err();
    assert!(matches!(err, ChannelFailure::Unauthorized(_)), "{err:?}");
}
