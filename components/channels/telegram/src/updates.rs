//! `getUpdates` results as `inbound` messages. Plain functions, no host calls: one bad
//! update is skipped (with a line for the log), never the whole batch.

use oxydra_sdk::channel::types::{Inbound, InboundFile};
use serde_json::Value;

/// Who the bot is: what a mention or a reply must name to address it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Me {
    /// Without the `@`.
    pub username: String,
    pub id: Option<i64>,
}

/// One `getUpdates` result, sorted out.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Batch {
    /// The messages to emit, in order.
    pub messages: Vec<Inbound>,
    /// Why each other update was skipped, one log line each.
    pub skipped: Vec<String>,
    /// The offset that confirms every update of the batch (the highest `update_id` + 1),
    /// `None` when the batch names none.
    pub next_offset: Option<i64>,
}

/// Sort out a `getUpdates` `result` (an array of updates).
pub fn parse(result: &Value, me: &Me) -> Batch {
    let mut batch = Batch::default();
    let Some(updates) = result.as_array() else {
        batch
            .skipped
            .push("getUpdates: the result is not a list of updates".into());
        return batch;
    };
    for update in updates {
        let id = update.get("update_id").and_then(Value::as_i64);
        if let Some(id) = id {
            let next = id.saturating_add(1);
            batch.next_offset = Some(batch.next_offset.map_or(next, |n| n.max(next)));
        }
        match inbound(update, me) {
            Ok(m) => batch.messages.push(m),
            Err(why) => batch.skipped.push(match id {
                Some(id) => format!("skipped update {id}: {why}"),
                None => format!("skipped an update without an update_id: {why}"),
            }),
        }
    }
    batch
}

/// The message of one update, or why there is none to emit.
fn inbound(update: &Value, me: &Me) -> Result<Inbound, String> {
    let update_id = update
        .get("update_id")
        .and_then(Value::as_i64)
        .ok_or("no update_id")?;
    let Some(msg) = update.get("message") else {
        let kind = update
            .as_object()
            .and_then(|o| o.keys().find(|k| *k != "update_id").cloned())
            .unwrap_or_else(|| "nothing".into());
        return Err(format!("a `{kind}` update, not a message"));
    };
    let message_id = msg
        .get("message_id")
        .and_then(Value::as_i64)
        .ok_or("the message has no message_id")?;
    let chat = msg.get("chat").ok_or("the message has no chat")?;
    let chat_id = chat
        .get("id")
        .and_then(Value::as_i64)
        .ok_or("the chat has no id")?;
    let chat_type = chat
        .get("type")
        .and_then(Value::as_str)
        .ok_or("the chat has no type")?;
    let is_group = match chat_type {
        "private" => false,
        "group" | "supergroup" => true,
        other => return Err(format!("a message in a `{other}` chat")),
    };
    let from = msg.get("from").ok_or("the message has no sender")?;
    let sender_id = from
        .get("id")
        .and_then(Value::as_i64)
        .ok_or("the sender has no id")?;

    let (text, entities) = match (str_of(msg, "text"), str_of(msg, "caption")) {
        (Some(t), _) => (t, msg.get("entities")),
        (None, Some(c)) => (c, msg.get("caption_entities")),
        (None, None) => ("", None),
    };
    let mut files = Vec::new();
    if let Some(photo) = largest_photo(msg.get("photo")) {
        files.push(photo);
    }
    if let Some(doc) = document(msg.get("document")) {
        files.push(doc);
    }
    if text.is_empty() && files.is_empty() {
        return Err("a message with no text, caption, photo or document".into());
    }

    let thread_id = (msg.get("is_topic_message").and_then(Value::as_bool) == Some(true))
        .then(|| msg.get("message_thread_id").and_then(Value::as_i64))
        .flatten()
        .map(|t| t.to_string());
    // A private chat is always meant for the bot.
    let addressed =
        !is_group || entities.is_some_and(|e| mentions_me(text, e, me)) || replies_to_me(msg, me);

    Ok(Inbound {
        update_id: update_id.to_string(),
        chat_id: chat_id.to_string(),
        thread_id,
        message_id: message_id.to_string(),
        sender_id: sender_id.to_string(),
        sender_name: sender_name(from, sender_id),
        text: text.to_string(),
        is_group,
        addressed,
        files,
    })
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// "First Last", else the username, else the id.
fn sender_name(from: &Value, id: i64) -> String {
    let name = [str_of(from, "first_name"), str_of(from, "last_name")]
        .into_iter()
        .flatten()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if !name.is_empty() {
        return name;
    }
    str_of(from, "username")
        .filter(|u| !u.is_empty())
        .map_or_else(|| id.to_string(), str::to_string)
}

/// The text an entity covers: `offset` and `length` count UTF-16 code units.
fn entity_text(text: &str, entity: &Value) -> Option<String> {
    let offset = usize::try_from(entity.get("offset")?.as_u64()?).ok()?;
    let length = usize::try_from(entity.get("length")?.as_u64()?).ok()?;
    let units: Vec<u16> = text.encode_utf16().collect();
    let slice = units.get(offset..offset.checked_add(length)?)?;
    String::from_utf16(slice).ok()
}

/// An `@mention`, a `/command@bot` or a text mention of the bot.
fn mentions_me(text: &str, entities: &Value, me: &Me) -> bool {
    let Some(list) = entities.as_array() else {
        return false;
    };
    list.iter().any(|e| match str_of(e, "type") {
        Some("mention") => entity_text(text, e).is_some_and(|t| {
            t.strip_prefix('@')
                .is_some_and(|u| u.eq_ignore_ascii_case(&me.username))
        }),
        Some("bot_command") => entity_text(text, e).is_some_and(|t| {
            t.split_once('@')
                .is_some_and(|(_, u)| u.eq_ignore_ascii_case(&me.username))
        }),
        Some("text_mention") => e.get("user").is_some_and(|u| is_me(u, me)),
        _ => false,
    })
}

/// `user` is this bot.
fn is_me(user: &Value, me: &Me) -> bool {
    if user.get("is_bot").and_then(Value::as_bool) != Some(true) {
        return false;
    }
    let by_id = me
        .id
        .is_some_and(|id| user.get("id").and_then(Value::as_i64) == Some(id));
    let by_name = str_of(user, "username").is_some_and(|u| u.eq_ignore_ascii_case(&me.username));
    by_id || by_name
}

/// A reply to one of the bot's messages. In a forum topic every message "replies" to
/// the topic's first (service) message: that is no reply to the bot. (In a plain
/// supergroup a reply's `message_thread_id` is the replied-to message: a real reply.)
fn replies_to_me(msg: &Value, me: &Me) -> bool {
    let Some(reply) = msg.get("reply_to_message") else {
        return false;
    };
    let in_topic = msg.get("is_topic_message").and_then(Value::as_bool) == Some(true);
    let reply_id = reply.get("message_id").and_then(Value::as_i64);
    let topic_root = reply.get("forum_topic_created").is_some()
        || (in_topic
            && reply_id.is_some()
            && reply_id == msg.get("message_thread_id").and_then(Value::as_i64));
    !topic_root && reply.get("from").is_some_and(|f| is_me(f, me))
}

/// The largest size of a photo (most pixels, then most bytes).
fn largest_photo(sizes: Option<&Value>) -> Option<InboundFile> {
    let best = sizes?
        .as_array()?
        .iter()
        .filter(|s| str_of(s, "file_id").is_some())
        .max_by_key(|s| {
            let dim = |k: &str| s.get(k).and_then(Value::as_u64).unwrap_or(0);
            (dim("width").saturating_mul(dim("height")), dim("file_size"))
        })?;
    let file_id = str_of(best, "file_id")?;
    let unique = str_of(best, "file_unique_id").unwrap_or(file_id);
    Some(InboundFile {
        file_id: file_id.to_string(),
        name: format!("photo_{unique}.jpg"),
        media_type: "image/jpeg".into(),
        size: best.get("file_size").and_then(Value::as_u64).unwrap_or(0),
    })
}

fn document(doc: Option<&Value>) -> Option<InboundFile> {
    let doc = doc?;
    Some(InboundFile {
        file_id: str_of(doc, "file_id")?.to_string(),
        name: str_of(doc, "file_name")
            .filter(|n| !n.is_empty())
            .unwrap_or("document")
            .to_string(),
        media_type: str_of(doc, "mime_type")
            .filter(|m| !m.is_empty())
            .unwrap_or("application/octet-stream")
            .to_string(),
        size: doc.get("file_size").and_then(Value::as_u64).unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn me() -> Me {
        Me {
            username: "oxydra_test_bot".into(),
            id: Some(777),
        }
    }

    fn user(id: i64, first: &str, username: &str) -> Value {
        json!({"id": id, "is_bot": false, "first_name": first, "username": username, "language_code": "en"})
    }

    fn bot() -> Value {
        json!({"id": 777, "is_bot": true, "first_name": "Oxy", "username": "oxydra_test_bot"})
    }

    fn one(update: Value) -> Result<Inbound, String> {
        let b = parse(&json!([update]), &me());
        match (b.messages.as_slice(), b.skipped.as_slice()) {
            ([m], []) => Ok(m.clone()),
            ([], [s]) => Err(s.clone()),
            other => unreachable!("{other:?}"),
        }
    }

    #[test]
    fn a_private_text_message() {
        let m = one(json!({
            "update_id": 100,
            "message": {
                "message_id": 5,
                "from": {"id": 42, "is_bot": false, "first_name": "Ada", "last_name": "Lovelace", "username": "ada"},
                "chat": {"id": 42, "first_name": "Ada", "username": "ada", "type": "private"},
                "date": 1_700_000_000,
                "text": "hello there"
            }
        }));
        assert_eq!(
            m,
            Ok(Inbound {
                update_id: "100".into(),
                chat_id: "42".into(),
                thread_id: None,
                message_id: "5".into(),
                sender_id: "42".into(),
                sender_name: "Ada Lovelace".into(),
                text: "hello there".into(),
                is_group: false,
                addressed: true,
                files: vec![],
            })
        );
    }

    #[test]
    fn group_messages_and_mentions() {
        let group = json!({"id": -1001234567890_i64, "title": "Team", "type": "supergroup"});
        let plain = one(json!({"update_id": 1, "message": {
            "message_id": 10, "from": user(42, "Ada", "ada"), "chat": group, "date": 1,
            "text": "just chatting"
        }}))
        .unwrap_or_else(|e| unreachable!("{e}"));
        assert!(plain.is_group);
        assert!(!plain.addressed);
        assert_eq!(plain.chat_id, "-1001234567890");

        // A mention after a non-BMP character: offsets count UTF-16 units.
        let mention = one(json!({"update_id": 2, "message": {
            "message_id": 11, "from": user(42, "Ada", "ada"), "chat": group, "date": 1,
            "text": "🎉 @Oxydra_Test_Bot what now?",
            "entities": [{"type": "mention", "offset": 3, "length": 16}]
        }}))
        .unwrap_or_else(|e| unreachable!("{e}"));
        assert!(mention.addressed);

        let other = one(json!({"update_id": 3, "message": {
            "message_id": 12, "from": user(42, "Ada", "ada"), "chat": {"id": -5, "title": "g", "type": "group"}, "date": 1,
            "text": "@someone_else hi",
            "entities": [{"type": "mention", "offset": 0, "length": 13}]
        }}))
        .unwrap_or_else(|e| unreachable!("{e}"));
        assert!(other.is_group && !other.addressed);

        let command = one(json!({"update_id": 4, "message": {
            "message_id": 13, "from": user(42, "Ada", "ada"), "chat": group, "date": 1,
            "text": "/start@oxydra_test_bot",
            "entities": [{"type": "bot_command", "offset": 0, "length": 22}]
        }}))
        .unwrap_or_else(|e| unreachable!("{e}"));
        assert!(command.addressed);

        // A bare command in a group is for every bot: not addressed.
        let bare = one(json!({"update_id": 5, "message": {
            "message_id": 14, "from": user(42, "Ada", "ada"), "chat": group, "date": 1,
            "text": "/start",
            "entities": [{"type": "bot_command", "offset": 0, "length": 6}]
        }}))
        .unwrap_or_else(|e| unreachable!("{e}"));
        assert!(!bare.addressed);

        let text_mention = one(json!({"update_id": 6, "message": {
            "message_id": 15, "from": user(42, "Ada", "ada"), "chat": group, "date": 1,
            "text": "Oxy, hi",
            "entities": [{"type": "text_mention", "offset": 0, "length": 3, "user": bot()}]
        }}))
        .unwrap_or_else(|e| unreachable!("{e}"));
        assert!(text_mention.addressed);
    }

    #[test]
    fn replies() {
        let group = json!({"id": -100, "title": "Team", "type": "supergroup"});
        let to_bot = one(json!({"update_id": 1, "message": {
            "message_id": 20, "from": user(42, "Ada", "ada"), "chat": group, "date": 1,
            "text": "and then?",
            "reply_to_message": {"message_id": 19, "from": bot(), "chat": group, "date": 1, "text": "Here is the plan"}
        }}))
        .unwrap_or_else(|e| unreachable!("{e}"));
        assert!(to_bot.addressed);

        // In a plain supergroup a reply carries the replied-to message as its thread.
        let threaded = one(json!({"update_id": 3, "message": {
            "message_id": 22, "message_thread_id": 19, "from": user(42, "Ada", "ada"), "chat": group, "date": 1,
            "text": "and then?",
            "reply_to_message": {"message_id": 19, "from": bot(), "chat": group, "date": 1, "text": "Here is the plan"}
        }}))
        .unwrap_or_else(|e| unreachable!("{e}"));
        assert!(threaded.addressed);
        assert_eq!(threaded.thread_id, None);

        let other_bot =
            json!({"id": 9, "is_bot": true, "first_name": "Other", "username": "other_bot"});
        let to_other = one(json!({"update_id": 2, "message": {
            "message_id": 21, "from": user(42, "Ada", "ada"), "chat": group, "date": 1,
            "text": "and then?",
            "reply_to_message": {"message_id": 18, "from": other_bot, "chat": group, "date": 1, "text": "x"}
        }}))
        .unwrap_or_else(|e| unreachable!("{e}"));
        assert!(!to_other.addressed);
    }

    #[test]
    fn forum_topics() {
        let forum = json!({"id": -1009, "title": "Forum", "type": "supergroup", "is_forum": true});
        // The bot opened the topic: messages in it "reply" to its service message.
        let m = one(json!({"update_id": 1, "message": {
            "message_id": 31, "message_thread_id": 30, "is_topic_message": true,
            "from": user(42, "Ada", "ada"), "chat": forum, "date": 1,
            "text": "in the topic",
            "reply_to_message": {
                "message_id": 30, "message_thread_id": 30, "from": bot(), "chat": forum, "date": 1,
                "forum_topic_created": {"name": "Plans", "icon_color": 7322096}
            }
        }}))
        .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(m.thread_id.as_deref(), Some("30"));
        assert!(m.is_group);
        assert!(!m.addressed);

        // A thread id without is_topic_message (a reply thread) is no topic.
        let r = one(json!({"update_id": 2, "message": {
            "message_id": 40, "message_thread_id": 39,
            "from": user(42, "Ada", "ada"), "chat": {"id": -1, "title": "g", "type": "supergroup"}, "date": 1,
            "text": "x",
            "reply_to_message": {"message_id": 39, "from": user(43, "Bob", "bob"), "chat": {"id": -1, "type": "supergroup"}, "date": 1, "text": "y"}
        }}))
        .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(r.thread_id, None);
    }

    #[test]
    fn photos_and_documents() {
        let photo = one(json!({"update_id": 1, "message": {
            "message_id": 50, "from": user(42, "Ada", "ada"), "chat": {"id": 42, "type": "private"}, "date": 1,
            "photo": [
                {"file_id": "small", "file_unique_id": "u1", "width": 90, "height": 60, "file_size": 1200},
                {"file_id": "big", "file_unique_id": "u3", "width": 1280, "height": 853, "file_size": 98000},
                {"file_id": "mid", "file_unique_id": "u2", "width": 320, "height": 213, "file_size": 15000}
            ],
            "caption": "look @oxydra_test_bot",
            "caption_entities": [{"type": "mention", "offset": 5, "length": 16}]
        }}))
        .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(photo.text, "look @oxydra_test_bot");
        assert_eq!(
            photo.files,
            vec![InboundFile {
                file_id: "big".into(),
                name: "photo_u3.jpg".into(),
                media_type: "image/jpeg".into(),
                size: 98000,
            }]
        );

        let bare_photo = one(json!({"update_id": 2, "message": {
            "message_id": 51, "from": user(42, "Ada", "ada"), "chat": {"id": 42, "type": "private"}, "date": 1,
            "photo": [{"file_id": "p", "file_unique_id": "q", "width": 10, "height": 10}]
        }}))
        .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(bare_photo.text, "");
        assert_eq!(bare_photo.files[0].size, 0);

        let doc = one(json!({"update_id": 3, "message": {
            "message_id": 52, "from": user(42, "Ada", "ada"), "chat": {"id": 42, "type": "private"}, "date": 1,
            "document": {"file_id": "BQACAgIAAxk", "file_unique_id": "AgAD", "file_name": "report.pdf", "mime_type": "application/pdf", "file_size": 34567}
        }}))
        .unwrap_or_else(|e| unreachable!("{e}"));
        assert_eq!(
            doc.files,
            vec![InboundFile {
                file_id: "BQACAgIAAxk".into(),
                name: "report.pdf".into(),
                media_type: "application/pdf".into(),
                size: 34567,
            }]
        );
    }

    #[test]
    fn skips_what_is_not_a_message_and_keeps_the_rest() {
        let batch = parse(
            &json!([
                {"update_id": 10, "edited_message": {"message_id": 1, "chat": {"id": 1, "type": "private"}, "date": 1, "edit_date": 2, "text": "x"}},
                {"update_id": 11, "message": {"message_id": 2, "chat": {"id": 1, "type": "private"}, "date": 1, "text": "no sender"}},
                {"update_id": 12, "message": "not an object"},
                {"update_id": 13, "message": {"message_id": 3, "from": user(1, "A", "a"), "chat": {"id": 1, "type": "private"}, "date": 1, "sticker": {"file_id": "s"}}},
                {"message": {"message_id": 4}},
                {"update_id": 14, "message": {"message_id": 5, "from": user(1, "A", "a"), "chat": {"id": 1, "type": "private"}, "date": 1, "text": "fine"}},
                "garbage"
            ]),
            &me(),
        );
        assert_eq!(batch.messages.len(), 1);
        assert_eq!(batch.messages[0].text, "fine");
        assert_eq!(batch.next_offset, Some(15));
        assert_eq!(batch.skipped.len(), 6, "{:?}", batch.skipped);
        assert!(batch.skipped[0].contains("edited_message"));
        assert!(batch.skipped[1].contains("sender"));
        assert!(batch.skipped[4].contains("without an update_id"));
    }

    #[test]
    fn empty_and_broken_results() {
        let empty = parse(&json!([]), &me());
        assert_eq!(empty, Batch::default());
        let broken = parse(&json!({"not": "a list"}), &me());
        assert!(broken.messages.is_empty() && broken.next_offset.is_none());
        assert_eq!(broken.skipped.len(), 1);
    }

    #[test]
    fn sender_names() {
        assert_eq!(
            sender_name(&json!({"id": 1, "first_name": "Ada"}), 1),
            "Ada"
        );
        assert_eq!(
            sender_name(&json!({"id": 1, "first_name": " ", "username": "ada"}), 1),
            "ada"
        );
        assert_eq!(sender_name(&json!({"id": 1}), 1), "1");
    }
}
