//! The Bot API's URLs and answers: `{base}/bot{token}/METHOD`, the `{"ok":…}` envelope,
//! and its errors as `channel-error`s. Plain functions, no host calls.

use oxydra_sdk::channel::http::TOKEN_PLACEHOLDER;
use oxydra_sdk::channel::types::ChannelError;
use serde_json::Value;

/// The API origin when the host wrote none to `api_base_url`.
pub const DEFAULT_BASE_URL: &str = "https://api.telegram.org";
/// Seconds to wait after a 429 that names no `retry_after`.
const DEFAULT_RETRY_AFTER: u32 = 5;
/// Most bytes of a non-JSON error body kept for the message.
const ERROR_BODY_CHARS: usize = 300;

/// `{base}/bot{token}/{method}` (the host puts the token in place of the placeholder).
pub fn method_url(base: &str, method: &str) -> String {
    format!(
        "{}/bot{TOKEN_PLACEHOLDER}/{method}",
        base.trim_end_matches('/')
    )
}

/// `{base}/file/bot{token}/{file_path}`, the path percent-encoded where it needs to be.
pub fn file_url(base: &str, file_path: &str) -> String {
    format!(
        "{}/file/bot{TOKEN_PLACEHOLDER}/{}",
        base.trim_end_matches('/'),
        encode_path(file_path.trim_start_matches('/'))
    )
}

/// `s` with every byte outside the unreserved set and `/` as `%XX`.
fn encode_path(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => {
                out.push('%');
                out.push(HEX[usize::from(b >> 4)] as char);
                out.push(HEX[usize::from(b & 0xf)] as char);
            }
        }
    }
    out
}

/// A refusal by the Bot API (`"ok": false`, or an error status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// `error_code`, or the HTTP status when the body has none.
    pub code: u16,
    pub description: String,
    /// `parameters.retry_after`, or the `Retry-After` header.
    pub retry_after: Option<u32>,
}

impl ApiError {
    /// The `channel-error` the host acts on, its message naming `method`.
    pub fn into_channel_error(self, method: &str) -> ChannelError {
        let message = format!("{method}: {}", self.description);
        let lower = self.description.to_ascii_lowercase();
        match self.code {
            429 => ChannelError::RetryAfter(self.retry_after.unwrap_or(DEFAULT_RETRY_AFTER)),
            401 => ChannelError::Unauthorized(message),
            409 => ChannelError::Conflict(message),
            400 if lower.contains("can't parse entities") => ChannelError::BadFormatting(message),
            400 if [
                "message is too long",
                "caption is too long",
                "text is too long",
            ]
            .iter()
            .any(|p| lower.contains(p)) =>
            {
                ChannelError::TooLong(message)
            }
            _ => ChannelError::Failed(message),
        }
    }

    /// Telegram's "message is not modified" (an edit to the same text).
    pub fn is_not_modified(&self) -> bool {
        self.code == 400
            && self
                .description
                .to_ascii_lowercase()
                .contains("message is not modified")
    }
}

/// What went wrong with one call: the API refused it, or its answer is unusable.
#[derive(Debug, Clone, PartialEq)]
pub enum CallError {
    Api(ApiError),
    Channel(ChannelError),
}

impl CallError {
    pub fn into_channel_error(self, method: &str) -> ChannelError {
        match self {
            CallError::Api(e) => e.into_channel_error(method),
            CallError::Channel(e) => e,
        }
    }
}

/// The `result` of a Bot API answer (`Null` when it has none), or why there is none.
/// `retry_after_header` is the response's `Retry-After`, used when the body names none.
pub fn answer(
    method: &str,
    status: u16,
    retry_after_header: Option<&str>,
    body: &[u8],
    truncated: bool,
) -> Result<Value, CallError> {
    if truncated {
        return Err(CallError::Channel(ChannelError::Failed(format!(
            "{method}: the answer is larger than this channel reads ({} bytes)",
            body.len()
        ))));
    }
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let ok = parsed
        .as_ref()
        .and_then(|v| v.get("ok"))
        .and_then(Value::as_bool);
    if (200..300).contains(&status) && ok == Some(true) {
        let result = parsed
            .and_then(|mut v| v.get_mut("result").map(Value::take))
            .unwrap_or(Value::Null);
        return Ok(result);
    }
    let Some(v) = parsed.filter(|v| v.is_object()) else {
        if (200..300).contains(&status) {
            return Err(CallError::Channel(ChannelError::Failed(format!(
                "{method}: the answer is not Bot API JSON: {}",
                snippet(body)
            ))));
        }
        return Err(CallError::Api(ApiError {
            code: status,
            description: format!("HTTP {status}: {}", snippet(body)),
            retry_after: retry_after_header.and_then(|h| h.trim().parse().ok()),
        }));
    };
    let code = v
        .get("error_code")
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| *c >= 400)
        .unwrap_or(if status >= 400 { status } else { 500 });
    let description = v
        .get("description")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| format!("HTTP {status} without a description"));
    let retry_after = v
        .pointer("/parameters/retry_after")
        .and_then(Value::as_u64)
        .map(|s| u32::try_from(s).unwrap_or(u32::MAX))
        .or_else(|| retry_after_header.and_then(|h| h.trim().parse().ok()));
    Err(CallError::Api(ApiError {
        code,
        description,
        retry_after,
    }))
}

/// The start of a body, as text, for a message.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".to_string();
    }
    let mut out: String = text.chars().take(ERROR_BODY_CHARS).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

/// `result.message_id` of a sent message, as text.
pub fn message_id(method: &str, result: &Value) -> Result<String, ChannelError> {
    result
        .get("message_id")
        .and_then(Value::as_i64)
        .map(|id| id.to_string())
        .ok_or_else(|| ChannelError::Failed(format!("{method}: the answer names no message_id")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(status: u16, body: Value) -> ChannelError {
        match answer(
            "sendMessage",
            status,
            None,
            body.to_string().as_bytes(),
            false,
        ) {
            Err(e) => e.into_channel_error("sendMessage"),
            Ok(v) => unreachable!("{v}"),
        }
    }

    #[test]
    fn urls() {
        assert_eq!(
            method_url("https://api.telegram.org/", "getMe"),
            "https://api.telegram.org/bot{token}/getMe"
        );
        assert_eq!(
            file_url("http://127.0.0.1:8081", "documents/file 1 ü.pdf"),
            "http://127.0.0.1:8081/file/bot{token}/documents/file%201%20%C3%BC.pdf"
        );
    }

    #[test]
    fn successful_answers() {
        let body = json!({"ok": true, "result": {"message_id": 7, "chat": {"id": 1}}});
        let result = answer("sendMessage", 200, None, body.to_string().as_bytes(), false);
        assert_eq!(
            result.as_ref().map(|r| r["message_id"].clone()),
            Ok(json!(7))
        );
        assert_eq!(
            message_id("sendMessage", &json!({"message_id": 7})),
            Ok("7".into())
        );
        assert!(message_id("sendMessage", &json!(true)).is_err());
        let t = answer(
            "sendChatAction",
            200,
            None,
            br#"{"ok":true,"result":true}"#,
            false,
        );
        assert_eq!(t, Ok(json!(true)));
    }

    #[test]
    fn error_answers() {
        assert_eq!(
            err(
                429,
                json!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 17", "parameters": {"retry_after": 17}})
            ),
            ChannelError::RetryAfter(17)
        );
        assert_eq!(
            err(
                401,
                json!({"ok": false, "error_code": 401, "description": "Unauthorized"})
            ),
            ChannelError::Unauthorized("sendMessage: Unauthorized".into())
        );
        assert!(matches!(
            err(
                409,
                json!({"ok": false, "error_code": 409, "description": "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"})
            ),
            ChannelError::Conflict(m) if m.contains("other getUpdates")
        ));
        assert!(matches!(
            err(
                400,
                json!({"ok": false, "error_code": 400, "description": "Bad Request: can't parse entities: Can't find end of the entity starting at byte offset 12"})
            ),
            ChannelError::BadFormatting(_)
        ));
        assert!(matches!(
            err(
                400,
                json!({"ok": false, "error_code": 400, "description": "Bad Request: message is too long"})
            ),
            ChannelError::TooLong(_)
        ));
        assert!(matches!(
            err(
                400,
                json!({"ok": false, "error_code": 400, "description": "Bad Request: message caption is too long"})
            ),
            ChannelError::TooLong(_)
        ));
        assert_eq!(
            err(
                400,
                json!({"ok": false, "error_code": 400, "description": "Bad Request: chat not found"})
            ),
            ChannelError::Failed("sendMessage: Bad Request: chat not found".into())
        );
        assert!(matches!(
            err(
                403,
                json!({"ok": false, "error_code": 403, "description": "Forbidden: bot was blocked by the user"})
            ),
            ChannelError::Failed(m) if m.contains("blocked")
        ));
    }

    #[test]
    fn odd_answers() {
        // A proxy's 429 with a header and an HTML body.
        let e = answer(
            "getUpdates",
            429,
            Some("3"),
            b"<html>slow down</html>",
            false,
        );
        assert_eq!(
            e.map_err(|e| e.into_channel_error("getUpdates")),
            Err(ChannelError::RetryAfter(3))
        );
        // A 502 from a proxy.
        match answer("getUpdates", 502, None, b"Bad Gateway", false) {
            Err(e) => assert_eq!(
                e.into_channel_error("getUpdates"),
                ChannelError::Failed("getUpdates: HTTP 502: Bad Gateway".into())
            ),
            Ok(v) => unreachable!("{v}"),
        }
        // 200 with ok:false.
        assert!(matches!(
            answer(
                "getMe",
                200,
                None,
                br#"{"ok":false,"error_code":401,"description":"Unauthorized"}"#,
                false
            )
            .map_err(|e| e.into_channel_error("getMe")),
            Err(ChannelError::Unauthorized(_))
        ));
        // 200 that is not JSON, and a truncated answer.
        assert!(matches!(
            answer("getMe", 200, None, b"hello", false),
            Err(CallError::Channel(ChannelError::Failed(_)))
        ));
        assert!(matches!(
            answer("getUpdates", 200, None, br#"{"ok":true,"#, true),
            Err(CallError::Channel(ChannelError::Failed(m))) if m.contains("larger")
        ));
    }

    #[test]
    fn not_modified() {
        match answer(
            "editMessageText",
            400,
            None,
            br#"{"ok":false,"error_code":400,"description":"Bad Request: message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message"}"#,
            false,
        ) {
            Err(CallError::Api(e)) => assert!(e.is_not_modified()),
            other => unreachable!("{other:?}"),
        }
    }
}
