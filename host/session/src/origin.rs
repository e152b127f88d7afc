//! Where a turn came from, and how a message gets back there later.
//!
//! Every turn is submitted with an [`Origin`] ([`crate::SessionService::submit_from`]).
//! Per-call services that act "for the turn" take it from there, never from a model's
//! arguments: a job created in a turn reports to that turn's origin, media sent in a
//! turn goes to its chat. A message that is not the answer of a running turn (a
//! scheduled run's result, a failure notice) reaches a chat through the [`Notifier`]
//! registered for its channel; gateway sessions are told through their subscribers.

use oxydra_runtime::channels::{OutboundMedia, Outbox};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

/// Where a turn came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Origin {
    /// `oxydra-host run` or `chat` in a terminal: nobody to tell later, so results of
    /// jobs made there stay in the job's history.
    Cli { session: String },
    /// A session driven through the WebSocket gateway (or the TUI, its client).
    Gateway { session: String },
    /// A chat of a chat channel (`channel`: its name in config, e.g. `telegram`).
    Channel {
        channel: String,
        chat_id: String,
        /// A forum topic or thread inside the chat.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        thread_id: Option<String>,
    },
}

impl Origin {
    /// The session of a CLI or gateway origin.
    pub fn session(&self) -> Option<&str> {
        match self {
            Origin::Cli { session } | Origin::Gateway { session } => Some(session),
            Origin::Channel { .. } => None,
        }
    }

    /// The channel name of a channel origin.
    pub fn channel(&self) -> Option<&str> {
        match self {
            Origin::Channel { channel, .. } => Some(channel),
            _ => None,
        }
    }

    /// For storing: JSON, read back by [`Origin::from_json`].
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_json(s: &str) -> Result<Origin, String> {
        serde_json::from_str(s).map_err(|e| format!("unreadable origin {s:?}: {e}"))
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Cli { session } => write!(f, "cli session {session}"),
            Origin::Gateway { session } => write!(f, "gateway session {session}"),
            Origin::Channel {
                channel,
                chat_id,
                thread_id: None,
            } => write!(f, "{channel} chat {chat_id}"),
            Origin::Channel {
                channel,
                chat_id,
                thread_id: Some(t),
            } => write!(f, "{channel} chat {chat_id} thread {t}"),
        }
    }
}

/// Sends a message to a chat of one channel, outside any turn (a scheduled run's
/// result, a failure notice). A chat channel implements it and registers it under its
/// name in the [`Notifiers`] serve holds.
pub trait Notifier: Send + Sync {
    /// Send `text` to `origin` (a [`Origin::Channel`] of this notifier's channel); `Err`
    /// says why it was not sent (the caller logs it and keeps the text in its history).
    fn notify(&self, origin: &Origin, text: &str) -> Result<(), String>;

    /// Send a file to `origin`'s chat; the platform's message id, or why not (a message
    /// for the model).
    fn send_media(&self, origin: &Origin, media: OutboundMedia) -> Result<String, String> {
        let _ = media;
        Err(format!("{origin} cannot take files"))
    }
}

/// The outbox of one turn that came from a chat: `send_media` goes to that chat, through
/// the channel's notifier (looked up when the file is sent, so a channel that stopped
/// says so).
pub struct ChatOutbox {
    origin: Origin,
    notifiers: Notifiers,
}

impl ChatOutbox {
    /// The outbox of a turn from `origin`: `None` unless it came from a chat channel.
    pub fn for_turn(origin: &Origin, notifiers: &Notifiers) -> Option<Arc<dyn Outbox>> {
        origin.channel()?;
        Some(Arc::new(ChatOutbox {
            origin: origin.clone(),
            notifiers: notifiers.clone(),
        }))
    }
}

impl Outbox for ChatOutbox {
    fn send_media(&self, media: OutboundMedia) -> Result<String, String> {
        let channel = self.origin.channel().unwrap_or_default();
        let notifier = self.notifiers.get(channel).ok_or_else(|| {
            format!(
                "the {channel} channel is not running, so the file cannot be sent to {}",
                self.origin
            )
        })?;
        notifier.send_media(&self.origin, media)
    }
}

/// The notifiers of the running channels, by channel name.
#[derive(Default, Clone)]
pub struct Notifiers {
    by_channel: Arc<RwLock<BTreeMap<String, Arc<dyn Notifier>>>>,
}

impl Notifiers {
    pub fn new() -> Notifiers {
        Notifiers::default()
    }

    /// `notifier` answers for `channel` from now on (replacing an earlier one).
    pub fn register(&self, channel: &str, notifier: Arc<dyn Notifier>) {
        self.by_channel
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(channel.to_string(), notifier);
    }

    /// `channel` stops answering (its adapter stopped).
    pub fn unregister(&self, channel: &str) {
        self.by_channel
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(channel);
    }

    pub fn get(&self, channel: &str) -> Option<Arc<dyn Notifier>> {
        self.by_channel
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(channel)
            .cloned()
    }
}

impl std::fmt::Debug for Notifiers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self
            .by_channel
            .read()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        f.debug_struct("Notifiers")
            .field("channels", &names)
            .finish()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn origins_round_trip_through_json() {
        for o in [
            Origin::Cli {
                session: "s1".into(),
            },
            Origin::Gateway {
                session: "g-ä".into(),
            },
            Origin::Channel {
                channel: "telegram".into(),
                chat_id: "-100".into(),
                thread_id: Some("7".into()),
            },
            Origin::Channel {
                channel: "telegram".into(),
                chat_id: "42".into(),
                thread_id: None,
            },
        ] {
            assert_eq!(Origin::from_json(&o.to_json()).unwrap(), o);
        }
        assert!(Origin::from_json("{\"kind\":\"mars\"}").is_err());
    }

    struct Count(std::sync::Mutex<Vec<String>>);
    impl Notifier for Count {
        fn notify(&self, origin: &Origin, text: &str) -> Result<(), String> {
            self.0.lock().unwrap().push(format!("{origin}: {text}"));
            Ok(())
        }
    }

    #[test]
    fn notifiers_are_found_by_channel_name() {
        let n = Notifiers::new();
        let c = Arc::new(Count(Default::default()));
        n.register("telegram", c.clone());
        assert!(n.get("slack").is_none());
        let o = Origin::Channel {
            channel: "telegram".into(),
            chat_id: "42".into(),
            thread_id: None,
        };
        n.get("telegram").unwrap().notify(&o, "hi").unwrap();
        assert_eq!(*c.0.lock().unwrap(), vec!["telegram chat 42: hi"]);
        n.unregister("telegram");
        assert!(n.get("telegram").is_none());
    }
}
