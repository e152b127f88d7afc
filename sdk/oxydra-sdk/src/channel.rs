//! Writing a chat channel (feature `channel`): a platform adapter (Telegram) the host
//! drives in the `chat-channel` profile.
//!
//! Implement [`Channel`] and export it with `oxydra_sdk::export_channel!(MyChannel)`.
//! The host owns the loop: it calls [`Channel::poll`] (one poller per bot), checks each
//! message [`emit`]ted there before anything else (the sender allowlist), and calls
//! [`Channel::deliver`] for every outbound action. Every call runs in a fresh instance:
//! keep what must survive (the update offset above all) with [`state_set`].
//!
//! [`http`] reaches the platform's API. The credential never enters the component: a
//! URL names it with the placeholder [`http::TOKEN_PLACEHOLDER`] and the host
//! substitutes it, only on the channel's configured API origin.

pub mod http;

/// The `oxydra:channel/types` types, shared with the export glue.
pub mod types {
    pub use crate::bindings::channel::oxydra::channel::types::*;
}

use crate::bindings::channel::oxydra::channel::host;
use types::{Action, ChannelError, ChannelInfo, Inbound};

/// What `export_channel!` exports (`oxydra:channel/channel@0.1.0`).
pub trait Channel {
    /// The channel's name and how the host should drive it.
    fn describe() -> ChannelInfo;
    /// Fetch new updates (long polling up to [`ChannelInfo::poll_timeout_secs`]),
    /// [`emit`] each message, then advance the durable offset. Returns how many were
    /// emitted.
    fn poll() -> Result<u32, ChannelError>;
    /// Perform one outbound action; the platform's message id (empty when the action
    /// creates none).
    fn deliver(action: Action) -> Result<String, ChannelError>;
    /// Download an inbound file, at most `max_bytes` of it.
    fn fetch_file(file_id: &str, max_bytes: u64) -> Result<Vec<u8>, ChannelError>;
}

/// Hand one message to the host (which checks the sender before anything else).
pub fn emit(message: &Inbound) {
    host::emit(message)
}

/// The durable value of `key` in this channel's (and bot's) state, if set.
pub fn state_get(key: &str) -> Option<String> {
    host::state_get(key)
}

/// Set `key` in this channel's durable state (it survives restarts).
pub fn state_set(key: &str, value: &str) {
    host::state_set(key, value)
}

/// One line in the host's log for this channel.
pub fn log(message: &str) {
    host::log(message)
}
