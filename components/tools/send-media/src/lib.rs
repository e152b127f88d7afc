//! `send_media` (profile chat-media): read a file from /shared or /tmp through
//! `oxydra:fs/read` and hand it to `oxydra:channel/outbox`, which delivers it to the
//! chat of the calling turn. The tool cannot name a chat: the host knows the turn's.

use oxydra_sdk::outbox::{self, MediaKind};
use oxydra_sdk::{ToolEnum, ToolError, fs, tool};

#[derive(ToolEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Photo,
    Document,
    Audio,
    Voice,
    Video,
}

/// Largest file sent (the Bot API takes uploads of up to 50 MB; 20 MiB keeps a call
/// within a tool's memory).
const MAX_BYTES: u64 = 20 * 1024 * 1024;
/// Largest photo Telegram takes as a photo; a larger image goes as a document.
const MAX_PHOTO_BYTES: usize = 10 * 1024 * 1024;
/// Longest caption (Telegram: 1,024 characters).
const MAX_CAPTION: usize = 1024;

/// Send a file from /shared or /tmp to the chat this conversation is in (Telegram), as a
/// photo, document, audio, voice message or video, with an optional caption. Works only
/// when the user is talking to you through a chat channel; files up to 20 MiB. Save or
/// copy the file into /shared first (vault files: vault_copyto). `kind` is guessed from
/// the extension when not given (images → photo, .mp4 → video, .mp3/.m4a → audio,
/// .ogg → voice, anything else → document).
#[tool(tier = "side-effecting")]
fn send_media(
    /// Virtual path of the file, e.g. /shared/chart.png
    #[arg(min_length = 1)]
    path: String,
    /// photo, document, audio, voice or video (default: from the extension)
    kind: Option<Kind>,
    /// Text shown under the file (at most 1024 characters)
    caption: Option<String>,
) -> Result<String, ToolError> {
    if let Some(c) = &caption
        && c.chars().count() > MAX_CAPTION
    {
        return Err(ToolError::TooLarge(format!(
            "the caption has {} characters; the limit is {MAX_CAPTION}",
            c.chars().count()
        )));
    }
    let data = fs::read_file(&path, MAX_BYTES).map_err(|e| match ToolError::from(e) {
        ToolError::TooLarge(m) => {
            ToolError::TooLarge(format!("{m}; send_media sends files of at most 20 MiB"))
        }
        other => other,
    })?;
    if data.is_empty() {
        return Err(ToolError::InvalidArguments(format!(
            "{path} is empty; there is nothing to send"
        )));
    }
    let name = path
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty())
        .unwrap_or("file")
        .to_string();
    let mut media = match kind {
        Some(Kind::Photo) => MediaKind::Photo,
        Some(Kind::Document) => MediaKind::Document,
        Some(Kind::Audio) => MediaKind::Audio,
        Some(Kind::Voice) => MediaKind::Voice,
        Some(Kind::Video) => MediaKind::Video,
        None => guess(&name),
    };
    if media == MediaKind::Photo && data.len() > MAX_PHOTO_BYTES {
        media = MediaKind::Document;
    }
    let size = data.len();
    let id =
        outbox::send_media(media, &name, &data, caption.as_deref()).map_err(ToolError::Failed)?;
    Ok(format!(
        "sent {path} ({size} bytes) as a {} to the chat{}",
        kind_name(media),
        if id.is_empty() {
            String::new()
        } else {
            format!(" (message {id})")
        }
    ))
}

fn kind_name(k: MediaKind) -> &'static str {
    match k {
        MediaKind::Photo => "photo",
        MediaKind::Document => "document",
        MediaKind::Audio => "audio",
        MediaKind::Voice => "voice message",
        MediaKind::Video => "video",
    }
}

/// The kind a file name suggests.
fn guess(name: &str) -> MediaKind {
    let ext = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "jpg" | "jpeg" | "png" | "webp" => MediaKind::Photo,
        "mp4" | "mov" => MediaKind::Video,
        "mp3" | "m4a" | "flac" | "wav" => MediaKind::Audio,
        "ogg" | "oga" | "opus" => MediaKind::Voice,
        _ => MediaKind::Document,
    }
}

oxydra_sdk::export_tool!(SendMedia);
