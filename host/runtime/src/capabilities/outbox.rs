//! `oxydra:channel/outbox`: a tool sends a file to the chat its turn came from. The
//! runtime does not know chats; the session layer passes an [`Outbox`] for each call
//! (through [`crate::context::CallContext`]) bound to the calling turn's chat, and only
//! the `chat-media` profile links this interface.

use crate::bindings::imports::oxydra::channel::outbox;
use crate::channels::{MediaKind, OutboundMedia, Outbox};
use std::sync::Arc;
use wasmtime::component::{HasData, Linker};

/// The per-call context of `oxydra:channel/outbox`: the turn's outbox, if it has one.
#[derive(Default)]
pub struct OutboxCtx {
    outbox: Option<Arc<dyn Outbox>>,
}

impl OutboxCtx {
    pub fn new(outbox: Option<Arc<dyn Outbox>>) -> OutboxCtx {
        OutboxCtx { outbox }
    }
}

/// Store data that carries an [`OutboxCtx`].
pub trait OutboxView: Send {
    fn outbox(&mut self) -> &mut OutboxCtx;
}

pub struct HasOutbox;

impl HasData for HasOutbox {
    type Data<'a> = &'a mut OutboxCtx;
}

/// What a tool is told when its turn came from no chat.
pub const NO_CHAT: &str = "this conversation is not in a chat channel that takes files (it came from the CLI or the gateway), so there is no chat to send to; tell the user the file's path in /shared instead";

impl outbox::Host for OutboxCtx {
    fn send_media(
        &mut self,
        kind: outbox::MediaKind,
        file_name: String,
        data: Vec<u8>,
        caption: Option<String>,
    ) -> Result<String, String> {
        let Some(o) = &self.outbox else {
            return Err(NO_CHAT.into());
        };
        o.send_media(OutboundMedia {
            kind: match kind {
                outbox::MediaKind::Photo => MediaKind::Photo,
                outbox::MediaKind::Document => MediaKind::Document,
                outbox::MediaKind::Audio => MediaKind::Audio,
                outbox::MediaKind::Voice => MediaKind::Voice,
                outbox::MediaKind::Video => MediaKind::Video,
            },
            file_name,
            bytes: data,
            caption,
        })
    }
}

/// `oxydra:channel/outbox`.
pub fn add_to_linker<T: OutboxView + 'static>(l: &mut Linker<T>) -> wasmtime::Result<()> {
    outbox::add_to_linker::<T, HasOutbox>(l, |t| t.outbox())
}
