//! Outbound actions as Bot API calls. Plain functions, no host calls.

use oxydra_sdk::channel::types::{Action, ChannelError, MediaKind, Target};
use serde_json::{Map, Value, json};

/// One Bot API call for an action.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// POST a JSON body.
    Json { method: &'static str, body: Value },
    /// POST `multipart/form-data`: text fields, then the file.
    Upload {
        method: &'static str,
        fields: Vec<(&'static str, String)>,
        file_field: &'static str,
        file_name: String,
        content_type: &'static str,
        data: Vec<u8>,
    },
}

impl Call {
    pub fn method(&self) -> &'static str {
        match self {
            Call::Json { method, .. } | Call::Upload { method, .. } => method,
        }
    }
}

/// What `deliver` returns once the call succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Returns {
    /// `result.message_id` of the new message.
    NewMessage,
    /// The edited message's id (also when Telegram says it was not modified).
    Edited(String),
    /// Nothing (the action creates no message).
    Nothing,
}

/// The call for `action`, and what to return after it.
pub fn build(action: Action) -> Result<(Call, Returns), ChannelError> {
    Ok(match action {
        Action::Send((target, text, html)) => {
            let mut body = addressed(&target)?;
            body.insert("text".into(), json!(text));
            if html {
                body.insert("parse_mode".into(), json!("HTML"));
            }
            (json_call("sendMessage", body), Returns::NewMessage)
        }
        Action::Edit((target, message_id, text, html)) => {
            let id: i64 = message_id.trim().parse().map_err(|_| {
                ChannelError::Failed(format!("message id `{message_id}` is not a number"))
            })?;
            let mut body = Map::new();
            body.insert("chat_id".into(), chat_id(&target.chat_id));
            body.insert("message_id".into(), json!(id));
            body.insert("text".into(), json!(text));
            if html {
                body.insert("parse_mode".into(), json!("HTML"));
            }
            (
                json_call("editMessageText", body),
                Returns::Edited(id.to_string()),
            )
        }
        Action::Draft((target, draft_id, text)) => {
            let mut body = addressed(&target)?;
            body.insert("draft_id".into(), json!(draft_id));
            body.insert("text".into(), json!(text));
            (json_call("sendMessageDraft", body), Returns::Nothing)
        }
        Action::Typing(target) => {
            let mut body = addressed(&target)?;
            body.insert("action".into(), json!("typing"));
            (json_call("sendChatAction", body), Returns::Nothing)
        }
        Action::Media((target, kind, file_name, data, caption)) => {
            let (method, file_field) = match kind {
                MediaKind::Photo => ("sendPhoto", "photo"),
                MediaKind::Document => ("sendDocument", "document"),
                MediaKind::Audio => ("sendAudio", "audio"),
                MediaKind::Voice => ("sendVoice", "voice"),
                MediaKind::Video => ("sendVideo", "video"),
            };
            let mut fields = vec![("chat_id", target.chat_id.trim().to_string())];
            if let Some(t) = thread_id(&target)? {
                fields.push(("message_thread_id", t.to_string()));
            }
            if let Some(c) = caption.filter(|c| !c.is_empty()) {
                fields.push(("caption", c));
            }
            let file_name = if file_name.trim().is_empty() {
                file_field.to_string()
            } else {
                file_name
            };
            let content_type = media_type(&file_name);
            (
                Call::Upload {
                    method,
                    fields,
                    file_field,
                    file_name,
                    content_type,
                    data,
                },
                Returns::NewMessage,
            )
        }
    })
}

fn json_call(method: &'static str, body: Map<String, Value>) -> Call {
    Call::Json {
        method,
        body: Value::Object(body),
    }
}

/// `chat_id` and, for a forum topic, `message_thread_id`.
fn addressed(target: &Target) -> Result<Map<String, Value>, ChannelError> {
    let mut body = Map::new();
    body.insert("chat_id".into(), chat_id(&target.chat_id));
    if let Some(t) = thread_id(target)? {
        body.insert("message_thread_id".into(), json!(t));
    }
    Ok(body)
}

/// A numeric chat id as a number, anything else (`@channelname`) as a string.
fn chat_id(id: &str) -> Value {
    let id = id.trim();
    match id.parse::<i64>() {
        Ok(n) => json!(n),
        Err(_) => json!(id),
    }
}

fn thread_id(target: &Target) -> Result<Option<i64>, ChannelError> {
    match target.thread_id.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(t) => t
            .parse()
            .map(Some)
            .map_err(|_| ChannelError::Failed(format!("thread id `{t}` is not a number"))),
    }
}

/// The media type an upload is sent as, from its file name's extension.
fn media_type(file_name: &str) -> &'static str {
    let ext = file_name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "pdf" => "application/pdf",
        "txt" | "md" => "text/plain",
        "csv" => "text/csv",
        "json" => "application/json",
        "zip" => "application/zip",
        "mp3" => "audio/mpeg",
        "m4a" => "audio/mp4",
        "ogg" | "oga" | "opus" => "audio/ogg",
        "wav" => "audio/wav",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mov" => "video/quicktime",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(chat: &str, thread: Option<&str>) -> Target {
        Target {
            chat_id: chat.into(),
            thread_id: thread.map(str::to_string),
        }
    }

    fn json_of(action: Action) -> (&'static str, Value, Returns) {
        match build(action) {
            Ok((Call::Json { method, body }, r)) => (method, body, r),
            other => unreachable!("{other:?}"),
        }
    }

    #[test]
    fn send() {
        assert_eq!(
            json_of(Action::Send((target("42", None), "hi".into(), false))),
            (
                "sendMessage",
                json!({"chat_id": 42, "text": "hi"}),
                Returns::NewMessage
            )
        );
        assert_eq!(
            json_of(Action::Send((
                target("-1009", Some("30")),
                "<b>hi</b>".into(),
                true
            ))),
            (
                "sendMessage",
                json!({"chat_id": -1009, "message_thread_id": 30, "text": "<b>hi</b>", "parse_mode": "HTML"}),
                Returns::NewMessage
            )
        );
        assert_eq!(
            json_of(Action::Send((
                target("@mychannel", None),
                "x".into(),
                false
            )))
            .1["chat_id"],
            json!("@mychannel")
        );
        assert!(matches!(
            build(Action::Send((target("1", Some("abc")), "x".into(), false))),
            Err(ChannelError::Failed(_))
        ));
    }

    #[test]
    fn edit_draft_typing() {
        assert_eq!(
            json_of(Action::Edit((
                target("42", Some("7")),
                "99".into(),
                "new".into(),
                true
            ))),
            (
                "editMessageText",
                json!({"chat_id": 42, "message_id": 99, "text": "new", "parse_mode": "HTML"}),
                Returns::Edited("99".into())
            )
        );
        assert!(
            build(Action::Edit((
                target("42", None),
                "x".into(),
                "t".into(),
                false
            )))
            .is_err()
        );
        assert_eq!(
            json_of(Action::Draft((
                target("42", Some("3")),
                5,
                "partial".into()
            ))),
            (
                "sendMessageDraft",
                json!({"chat_id": 42, "message_thread_id": 3, "draft_id": 5, "text": "partial"}),
                Returns::Nothing
            )
        );
        assert_eq!(
            json_of(Action::Typing(target("42", None))),
            (
                "sendChatAction",
                json!({"chat_id": 42, "action": "typing"}),
                Returns::Nothing
            )
        );
    }

    #[test]
    fn media() {
        match build(Action::Media((
            target("42", Some("3")),
            MediaKind::Photo,
            "chart.PNG".into(),
            vec![1, 2, 3],
            Some("the chart".into()),
        ))) {
            Ok((
                Call::Upload {
                    method,
                    fields,
                    file_field,
                    file_name,
                    content_type,
                    data,
                },
                Returns::NewMessage,
            )) => {
                assert_eq!(method, "sendPhoto");
                assert_eq!(
                    fields,
                    vec![
                        ("chat_id", "42".to_string()),
                        ("message_thread_id", "3".to_string()),
                        ("caption", "the chart".to_string())
                    ]
                );
                assert_eq!(file_field, "photo");
                assert_eq!(file_name, "chart.PNG");
                assert_eq!(content_type, "image/png");
                assert_eq!(data, vec![1, 2, 3]);
            }
            other => unreachable!("{other:?}"),
        }
        for (kind, method, field) in [
            (MediaKind::Document, "sendDocument", "document"),
            (MediaKind::Audio, "sendAudio", "audio"),
            (MediaKind::Voice, "sendVoice", "voice"),
            (MediaKind::Video, "sendVideo", "video"),
        ] {
            match build(Action::Media((
                target("42", None),
                kind,
                String::new(),
                vec![],
                None,
            ))) {
                Ok((
                    Call::Upload {
                        method: m,
                        fields,
                        file_field,
                        file_name,
                        ..
                    },
                    _,
                )) => {
                    assert_eq!((m, file_field), (method, field));
                    assert_eq!(fields, vec![("chat_id", "42".to_string())]);
                    assert_eq!(file_name, field);
                }
                other => unreachable!("{other:?}"),
            }
        }
    }
}
