//! Sending a file to the chat of the calling turn through `oxydra:channel/outbox`:
//! calling [`send_media`] makes the component import it, so it needs the `chat-media`
//! profile. The host picks the chat (the turn's); a turn from no chat gets an error.

use crate::bindings::outbox::oxydra::channel::outbox;

pub use crate::bindings::outbox::oxydra::channel::types::MediaKind;

/// Send `data` as `file_name` to the turn's chat; the platform's message id.
pub fn send_media(
    kind: MediaKind,
    file_name: &str,
    data: &[u8],
    caption: Option<&str>,
) -> Result<String, String> {
    outbox::send_media(kind, file_name, data, caption)
}
