//! Telegram inside `serve`: one poller per bot (two pollers is Telegram's 409), the
//! sender allowlist enforced on the platform user id before anything reaches a session,
//! a chat (or forum topic) mapped to a session of the user, photos and documents saved
//! under `/shared/inbox/`, and each answer delivered back — a typing indicator while
//! the turn runs, the answer growing in place (a draft in private chats, throttled edits
//! elsewhere), the final text in Telegram's HTML subset (plain text when Telegram cannot
//! parse it), split at the platform's limit.
//!
//! The channel itself is a component (`chat-channel` profile); this is the host's loop
//! around it, a client of the [`SessionService`] like the gateway.

use crate::TurnEvent;
use crate::config::runner::{Streaming, Telegram};
use crate::error::SetupError;
use crate::origin::{Notifier, Origin};
use crate::service::SessionService;
use oxydra_runtime::Workspace;
use oxydra_runtime::capabilities::paths::Root;
use oxydra_runtime::channels::{
    Action, ChannelFailure, ChannelKv, ChannelSpec, Inbound, InboundFile, LoadedChannel,
    OutboundMedia, Target,
};
use oxydra_store::Store;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The public Bot API.
pub const DEFAULT_API: &str = "https://api.telegram.org";
/// The channel's name in config, origins and the notifier registry.
pub const CHANNEL: &str = "telegram";

/// Channel state in the workspace's store, under `telegram:<user>`.
pub struct StoreKv {
    store: Mutex<Store>,
    channel: String,
}

impl StoreKv {
    pub fn open(ws: &Path, channel: &str) -> Result<StoreKv, SetupError> {
        Ok(StoreKv {
            store: Mutex::new(Store::open(&crate::compose::store_path(ws))?),
            channel: channel.to_string(),
        })
    }
}

impl ChannelKv for StoreKv {
    fn get(&self, key: &str) -> Option<String> {
        let s = self.store.lock().ok()?;
        s.channel_get(&self.channel, key).ok().flatten()
    }
    fn set(&self, key: &str, value: &str) -> Result<(), String> {
        let s = self
            .store
            .lock()
            .map_err(|_| "the store lock is poisoned".to_string())?;
        s.channel_set(&self.channel, key, value)
            .map_err(|e| e.to_string())
    }
}

/// UTF-16 code units of `s` (Telegram's unit for message length).
pub fn utf16_len(s: &str) -> usize {
    s.chars().map(char::len_utf16).sum()
}

/// Split `text` into pieces of at most `max` UTF-16 code units, preferring paragraph,
/// then line, then word boundaries; never inside a character (so never inside a
/// surrogate pair).
pub fn split_message(text: &str, max: usize) -> Vec<String> {
    let max = max.max(16);
    let mut out = Vec::new();
    let mut rest = text.trim_end();
    while utf16_len(rest) > max {
        // The longest prefix that fits, on a char boundary.
        let mut units = 0;
        let mut end = 0;
        for (i, c) in rest.char_indices() {
            if units + c.len_utf16() > max {
                break;
            }
            units += c.len_utf16();
            end = i + c.len_utf8();
        }
        let head = &rest[..end];
        let cut = head
            .rfind("\n\n")
            .map(|i| i + 2)
            .or_else(|| head.rfind('\n').map(|i| i + 1))
            .or_else(|| head.rfind(' ').map(|i| i + 1))
            .filter(|&i| i > end / 4)
            .unwrap_or(end);
        let piece = rest[..cut].trim_end();
        if !piece.is_empty() {
            out.push(piece.to_string());
        }
        rest = rest[cut..].trim_start_matches([' ', '\n']);
    }
    if !rest.is_empty() {
        out.push(rest.to_string());
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Markdown to Telegram's HTML subset: bold, italic, strikethrough, inline code, code
/// blocks, links, block quotes; everything else as escaped text.
pub fn to_html(markdown: &str) -> String {
    use pulldown_cmark::{CodeBlockKind, Event, Options, Parser, Tag, TagEnd};
    let mut out = String::new();
    let mut list_depth: Vec<Option<u64>> = Vec::new();
    for ev in Parser::new_ext(markdown, Options::ENABLE_STRIKETHROUGH) {
        match ev {
            Event::Start(Tag::Strong) => out.push_str("<b>"),
            Event::End(TagEnd::Strong) => out.push_str("</b>"),
            Event::Start(Tag::Emphasis) => out.push_str("<i>"),
            Event::End(TagEnd::Emphasis) => out.push_str("</i>"),
            Event::Start(Tag::Strikethrough) => out.push_str("<s>"),
            Event::End(TagEnd::Strikethrough) => out.push_str("</s>"),
            Event::Start(Tag::BlockQuote(_)) => out.push_str("<blockquote>"),
            Event::End(TagEnd::BlockQuote(_)) => out.push_str("</blockquote>"),
            Event::Start(Tag::CodeBlock(kind)) => match kind {
                CodeBlockKind::Fenced(lang) if !lang.is_empty() => {
                    out.push_str(&format!("<pre><code class=\"language-{}\">", escape(&lang)))
                }
                _ => out.push_str("<pre><code>"),
            },
            Event::End(TagEnd::CodeBlock) => out.push_str("</code></pre>\n"),
            Event::Start(Tag::Link { dest_url, .. }) => out.push_str(&format!(
                "<a href=\"{}\">",
                escape(&dest_url).replace('"', "&quot;")
            )),
            Event::End(TagEnd::Link) => out.push_str("</a>"),
            Event::Start(Tag::Heading { .. }) => out.push_str("<b>"),
            Event::End(TagEnd::Heading(_)) => out.push_str("</b>\n\n"),
            Event::Start(Tag::Paragraph) => {}
            Event::End(TagEnd::Paragraph) => out.push_str("\n\n"),
            Event::Start(Tag::List(first)) => list_depth.push(first),
            Event::End(TagEnd::List(_)) => {
                list_depth.pop();
                out.push('\n');
            }
            Event::Start(Tag::Item) => {
                let indent = "  ".repeat(list_depth.len().saturating_sub(1));
                match list_depth.last_mut() {
                    Some(Some(n)) => {
                        out.push_str(&format!("{indent}{n}. "));
                        *n += 1;
                    }
                    _ => out.push_str(&format!("{indent}• ")),
                }
            }
            Event::End(TagEnd::Item) => out.push('\n'),
            Event::Code(c) => out.push_str(&format!("<code>{}</code>", escape(&c))),
            Event::Text(t) => out.push_str(&escape(&t)),
            Event::SoftBreak | Event::HardBreak => out.push('\n'),
            Event::Rule => out.push_str("\n——\n"),
            Event::Html(h) | Event::InlineHtml(h) => out.push_str(&escape(&h)),
            _ => {}
        }
    }
    out.trim_end().to_string()
}

/// What the runner counts and reports.
#[derive(Debug, Default)]
pub struct Counters {
    pub received: AtomicU64,
    pub rejected: AtomicU64,
    pub answered: AtomicU64,
}

/// A running Telegram poller; stopped when dropped (after its current long poll).
pub struct TelegramRunner {
    stop: Arc<AtomicBool>,
    /// Whose notifier registry this channel is in (unregistered when stopped).
    service: std::sync::Weak<SessionService>,
    pub counters: Arc<Counters>,
    /// `running`, or why it stopped (a refused token).
    pub status: Arc<Mutex<String>>,
}

impl Drop for TelegramRunner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(service) = self.service.upgrade() {
            service.notifiers().unregister(CHANNEL);
        }
    }
}

/// Messages and files to a Telegram chat outside the answer of a turn: a scheduled
/// run's result, a file a tool sends (`send_media`).
struct ChatSender(Arc<Ctx>);

impl ChatSender {
    fn target(origin: &Origin) -> Result<Target, String> {
        match origin {
            Origin::Channel {
                channel,
                chat_id,
                thread_id,
            } if channel == CHANNEL => Ok(Target {
                chat_id: chat_id.clone(),
                thread_id: thread_id.clone(),
            }),
            other => Err(format!("{other} is not a Telegram chat")),
        }
    }
}

impl Notifier for ChatSender {
    fn notify(&self, origin: &Origin, text: &str) -> Result<(), String> {
        let to = ChatSender::target(origin)?;
        self.0.send_text(&to, text).map_err(|e| e.to_string())
    }

    fn send_media(&self, origin: &Origin, media: OutboundMedia) -> Result<String, String> {
        let to = ChatSender::target(origin)?;
        self.0
            .deliver(Action::Media {
                to,
                kind: media.kind,
                file_name: media.file_name,
                bytes: media.bytes,
                caption: media.caption,
            })
            .map_err(|e| format!("Telegram did not take the file: {e}"))
    }
}

struct Ctx {
    service: Arc<SessionService>,
    channel: LoadedChannel,
    kv: Arc<StoreKv>,
    allowed: BTreeSet<String>,
    max_len: usize,
    audit: PathBuf,
    counters: Arc<Counters>,
    streaming: Streaming,
    /// Fewest time between two updates of a growing answer.
    interval: Duration,
    require_mention: bool,
    max_file_bytes: u64,
    /// Where inbound files go (`/shared/inbox/`).
    workspace: Workspace,
    /// Cleared when the Bot API refuses `sendMessageDraft` (an older server): edits then.
    drafts_work: AtomicBool,
}

impl Ctx {
    fn host(&self) -> &oxydra_runtime::ComponentHost {
        &self.service.system().host
    }

    fn deliver(&self, action: Action) -> Result<String, ChannelFailure> {
        let mut tries = 0;
        loop {
            match self
                .host()
                .channel_deliver(&self.channel, self.kv.clone(), action.clone())
            {
                Err(ChannelFailure::RetryAfter(s)) if tries < 3 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_secs(u64::from(s.min(60))));
                }
                other => return other,
            }
        }
    }

    fn say(&self, to: &Target, text: &str) {
        if let Err(e) = self.send_text(to, text) {
            tracing::warn!(error = %e, "telegram: could not deliver a message");
        }
    }

    /// The answer in HTML when Telegram takes it, else as plain text; split at the
    /// limit, smaller again when Telegram says it is too long.
    fn send_text(&self, to: &Target, text: &str) -> Result<(), ChannelFailure> {
        self.send_pieces(to, split_message(text, self.max_len))
    }

    fn send_pieces(&self, to: &Target, mut pieces: Vec<String>) -> Result<(), ChannelFailure> {
        let mut max = self.max_len;
        let mut i = 0;
        while i < pieces.len() {
            let html = to_html(&pieces[i]);
            let sent = if utf16_len(&html) <= self.max_len {
                match self.deliver(Action::Send {
                    to: to.clone(),
                    text: html,
                    html: true,
                }) {
                    Err(ChannelFailure::BadFormatting(_)) | Err(ChannelFailure::TooLong(_)) => None,
                    other => Some(other),
                }
            } else {
                None
            };
            match sent {
                Some(r) => {
                    r?;
                }
                None => match self.deliver(Action::Send {
                    to: to.clone(),
                    text: pieces[i].clone(),
                    html: false,
                }) {
                    Err(ChannelFailure::TooLong(_)) if max > 256 => {
                        max /= 2;
                        let rest: Vec<String> = pieces[i..]
                            .iter()
                            .flat_map(|p| split_message(p, max))
                            .collect();
                        pieces.truncate(i);
                        pieces.extend(rest);
                        continue;
                    }
                    r => {
                        r?;
                    }
                },
            }
            i += 1;
        }
        Ok(())
    }

    fn session_key(m: &Inbound) -> String {
        format!(
            "session:{}:{}",
            m.chat_id,
            m.thread_id.as_deref().unwrap_or("-")
        )
    }

    fn session_for(&self, m: &Inbound) -> Result<String, String> {
        let key = Ctx::session_key(m);
        if let Some(id) = self.kv.get(&key)
            && self.service.resolve(&id).is_ok()
        {
            return Ok(id);
        }
        let created = self.service.create(None, None).map_err(|e| e.to_string())?;
        self.kv.set(&key, &created.id)?;
        Ok(created.id)
    }

    fn audit(&self, m: &Inbound, why: &str) {
        use std::io::Write;
        self.counters.rejected.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(sender = %m.sender_id, chat = %m.chat_id, why, "telegram: message rejected");
        let line = serde_json::json!({
            "at_ms": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0),
            "channel": "telegram", "sender_id": m.sender_id, "sender_name": m.sender_name,
            "chat_id": m.chat_id, "update_id": m.update_id, "why": why,
        });
        if let Some(dir) = self.audit.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.audit)
        {
            let _ = writeln!(f, "{line}");
        }
    }

    /// One message: the allowlist first, then commands, then a turn.
    fn handle(self: &Arc<Self>, m: Inbound) {
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        if !self.allowed.contains(&m.sender_id) {
            self.audit(&m, "sender not in channels.telegram.senders");
            return;
        }
        if m.is_group && self.require_mention && !m.addressed {
            return;
        }
        let to = Target {
            chat_id: m.chat_id.clone(),
            thread_id: m.thread_id.clone(),
        };
        let text = m.text.trim().to_string();
        if let Some(cmd) = text.strip_prefix('/') {
            let (name, arg) = cmd.split_once(' ').unwrap_or((cmd, ""));
            let name = name.split('@').next().unwrap_or(name);
            if let Some(reply) = self.command(&m, name, arg.trim()) {
                self.say(&to, &reply);
                return;
            }
        }
        if text.is_empty() && m.files.is_empty() {
            return;
        }
        let session = match self.session_for(&m) {
            Ok(s) => s,
            Err(e) => return self.say(&to, &format!("could not open a session: {e}")),
        };
        let ctx = self.clone();
        // One thread per message: it saves the files, runs the turn and follows it; the
        // poller goes on.
        let _ = std::thread::Builder::new()
            .name("telegram-turn".into())
            .spawn(move || {
                let prompt = ctx.with_files(&m, &text);
                let origin = Origin::Channel {
                    channel: CHANNEL.into(),
                    chat_id: m.chat_id.clone(),
                    thread_id: m.thread_id.clone(),
                };
                match ctx.service.submit_from(&session, &prompt, origin) {
                    Ok(sub) => ctx.follow(&to, !m.is_group, &sub),
                    Err(e) => ctx.say(&to, &e.to_string()),
                }
            });
    }

    /// The message's text with the files it carried saved under `/shared/inbox/` and
    /// named, so the turn (and the model) knows where they are.
    fn with_files(&self, m: &Inbound, text: &str) -> String {
        if m.files.is_empty() {
            return text.to_string();
        }
        let mut lines = Vec::new();
        for f in &m.files {
            lines.push(match self.save_file(m, f) {
                Ok(path) => format!("- {path} ({}, {} bytes)", f.media_type, f.size),
                Err(why) => format!("- {} was not saved: {why}", f.name),
            });
        }
        let text = if text.is_empty() {
            "(the user sent files and no text)"
        } else {
            text
        };
        format!(
            "{text}\n\n[Files the user attached, saved in the workspace:\n{}]",
            lines.join("\n")
        )
    }

    fn save_file(&self, m: &Inbound, f: &InboundFile) -> Result<String, String> {
        if f.size > self.max_file_bytes {
            return Err(format!(
                "it has {} bytes, more than channels.telegram.max_file_bytes ({})",
                f.size, self.max_file_bytes
            ));
        }
        let bytes = self
            .host()
            .channel_fetch_file(
                &self.channel,
                self.kv.clone(),
                &f.file_id,
                self.max_file_bytes,
            )
            .map_err(|e| e.to_string())?;
        let name = format!("{}-{}", m.update_id, safe_file_name(&f.name));
        let dir = self.workspace.dir(Root::Shared);
        dir.create_dir_all("inbox")
            .and_then(|()| dir.write(format!("inbox/{name}"), &bytes))
            .map_err(|e| format!("could not write /shared/inbox/{name}: {e}"))?;
        Ok(format!("/shared/inbox/{name}"))
    }

    fn follow(&self, to: &Target, private: bool, sub: &crate::Subscription) {
        let mode = match self.streaming {
            Streaming::Off => Preview::Off,
            Streaming::Auto
                if private
                    && self.channel.info.supports_drafts
                    && self.drafts_work.load(Ordering::Relaxed) =>
            {
                Preview::Draft(draft_id())
            }
            _ => Preview::Edit(None),
        };
        let mut live = Live {
            ctx: self,
            to,
            mode,
            text: String::new(),
            shown: String::new(),
            last: None,
        };
        let _ = self.deliver(Action::Typing(to.clone()));
        let mut typed = Instant::now();
        loop {
            let wait = live.due().unwrap_or(TYPING_EVERY).min(TYPING_EVERY);
            match sub.recv_timeout(wait) {
                Ok(Some(TurnEvent::Finished(summary))) => {
                    let text = match &summary.outcome {
                        Ok(o) if !o.answer.trim().is_empty() => o.answer.clone(),
                        Ok(_) => "(no answer)".to_string(),
                        Err(f) if live.text.trim().is_empty() => format!("⚠️ {}", f.error),
                        Err(f) => format!("{}\n\n⚠️ {}", live.text.trim_end(), f.error),
                    };
                    live.finish(&text);
                    self.counters.answered.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Ok(Some(TurnEvent::Text(delta))) => live.text.push_str(&delta),
                // A new model step: what it writes replaces what the last one wrote
                // before calling its tools.
                Ok(Some(TurnEvent::ProviderCall { step, .. })) if step > 1 => live.text.clear(),
                Ok(Some(_)) | Err(()) => {}
                Ok(None) => return,
            }
            live.tick();
            // Telegram's typing indicator lasts about 5 s.
            if typed.elapsed() >= TYPING_EVERY {
                let _ = self.deliver(Action::Typing(to.clone()));
                typed = Instant::now();
            }
        }
    }

    /// `/new`, `/sessions`, `/switch ID`, `/cancel`, `/cancelall`, `/status`; `None`
    /// for anything else (it goes to the agent as text).
    fn command(&self, m: &Inbound, name: &str, arg: &str) -> Option<String> {
        let key = Ctx::session_key(m);
        Some(match name {
            "start" | "help" => "Send a message and the agent answers. Commands: /new, /sessions, /switch <id>, /cancel, /cancelall, /status".into(),
            "new" => match self.service.create(None, None) {
                Ok(s) => {
                    let _ = self.kv.set(&key, &s.id);
                    format!("new session {}", s.id)
                }
                Err(e) => e.to_string(),
            },
            "sessions" => match self.service.list() {
                Ok(list) => {
                    let current = self.kv.get(&key).unwrap_or_default();
                    let lines: Vec<String> = list
                        .iter()
                        .take(20)
                        .map(|s| format!("{}{} — {} turns{}", if s.id == current { "▶ " } else { "" }, s.id, s.turns, if s.active { ", running" } else { "" }))
                        .collect();
                    if lines.is_empty() { "no sessions yet".into() } else { lines.join("\n") }
                }
                Err(e) => e.to_string(),
            },
            "switch" => match self.service.resolve(arg) {
                Ok(id) => {
                    let _ = self.kv.set(&key, &id);
                    format!("switched to {id}")
                }
                Err(e) => e.to_string(),
            },
            "cancel" => match self.kv.get(&key) {
                Some(id) if self.service.cancel(&id) => "cancelled".into(),
                _ => "nothing is running".into(),
            },
            "cancelall" => format!("cancelled {} turn(s)", self.service.cancel_all()),
            "status" => {
                let id = self.kv.get(&key);
                let snap = id.as_deref().and_then(|i| self.service.snapshot(i));
                match (id, snap) {
                    (Some(id), Some(s)) if s.active => format!("session {id}: a turn is running (step {})", s.step),
                    (Some(id), _) => format!("session {id}: idle"),
                    (None, _) => "no session yet: send a message".into(),
                }
            }
            _ => return None,
        })
    }
}

/// How often "typing…" is renewed while a turn runs.
const TYPING_EVERY: Duration = Duration::from_secs(4);

/// How a running answer is shown.
enum Preview {
    /// Not at all: the final answer only.
    Off,
    /// `sendMessageDraft` with this draft id (private chats).
    Draft(u32),
    /// One message, edited; its id once sent.
    Edit(Option<String>),
}

/// A running answer: the text so far and what the chat shows of it.
struct Live<'a> {
    ctx: &'a Ctx,
    to: &'a Target,
    mode: Preview,
    text: String,
    /// The preview the chat shows now.
    shown: String,
    /// When the preview was last updated.
    last: Option<Instant>,
}

impl Live<'_> {
    /// How long until the preview may be updated, when there is something new.
    fn due(&self) -> Option<Duration> {
        if matches!(self.mode, Preview::Off) || self.preview() == self.shown {
            return None;
        }
        Some(self.last.map_or(Duration::ZERO, |l| {
            self.ctx.interval.saturating_sub(l.elapsed())
        }))
    }

    /// The running text as one plain message within the limit.
    fn preview(&self) -> String {
        let text = self.text.trim();
        if utf16_len(text) <= self.ctx.max_len {
            return text.to_string();
        }
        let mut units = 0;
        let head: String = text
            .chars()
            .take_while(|c| {
                units += c.len_utf16();
                units + 2 <= self.ctx.max_len
            })
            .collect();
        format!("{head} …")
    }

    /// Update the preview if it changed and the interval has passed.
    fn tick(&mut self) {
        if self.due() != Some(Duration::ZERO) {
            return;
        }
        let text = self.preview();
        if text.is_empty() {
            return;
        }
        self.last = Some(Instant::now());
        let to = self.to.clone();
        match &mut self.mode {
            Preview::Off => {}
            Preview::Draft(id) => {
                let draft = Action::Draft {
                    to,
                    draft_id: *id,
                    text: text.clone(),
                };
                match self.ctx.deliver(draft) {
                    Ok(_) => self.shown = text,
                    Err(ChannelFailure::RetryAfter(_)) => {}
                    Err(e) => {
                        tracing::info!(error = %e, "telegram: drafts refused; editing a message instead");
                        self.ctx.drafts_work.store(false, Ordering::Relaxed);
                        self.mode = Preview::Edit(None);
                        self.last = None;
                    }
                }
            }
            Preview::Edit(None) => {
                let send = Action::Send {
                    to,
                    text: text.clone(),
                    html: false,
                };
                if let Ok(id) = self.ctx.deliver(send) {
                    self.mode = Preview::Edit(Some(id));
                    self.shown = text;
                }
            }
            Preview::Edit(Some(id)) => {
                let edit = Action::Edit {
                    to,
                    message_id: id.clone(),
                    text: text.clone(),
                    html: false,
                };
                if self.ctx.deliver(edit).is_ok() {
                    self.shown = text;
                }
            }
        }
    }

    /// The final answer: the edited message becomes its first piece (HTML when
    /// Telegram takes it); otherwise new messages (a draft disappears when the
    /// answer is sent).
    fn finish(self, text: &str) {
        let mut pieces = split_message(text, self.ctx.max_len);
        if let Preview::Edit(Some(id)) = &self.mode
            && !pieces.is_empty()
        {
            let first = pieces.remove(0);
            if !self.edit_final(id, &first) {
                pieces.insert(0, first);
            }
        }
        if let Err(e) = self.ctx.send_pieces(self.to, pieces) {
            tracing::warn!(error = %e, "telegram: could not deliver the answer");
        }
    }

    /// Edit the preview message into `piece`: HTML, else plain. Whether it took.
    fn edit_final(&self, id: &str, piece: &str) -> bool {
        let html = to_html(piece);
        let edit = |text: String, html: bool| {
            self.ctx.deliver(Action::Edit {
                to: self.to.clone(),
                message_id: id.to_string(),
                text,
                html,
            })
        };
        if utf16_len(&html) <= self.ctx.max_len && edit(html, true).is_ok() {
            return true;
        }
        edit(piece.to_string(), false).is_ok()
    }
}

/// A non-zero draft id for one answer (changes to one draft id are animated).
fn draft_id() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(1);
    (nanos % 0x7fff_ffff).max(1)
}

/// A file name safe to write: the last path component, letters, digits, `.`, `-`,
/// `_` (anything else becomes `_`); no leading dot; at most 100 characters.
pub fn safe_file_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let cleaned: String = base
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect();
    let cleaned = cleaned.trim_start_matches('.');
    if cleaned.is_empty() {
        "file".to_string()
    } else {
        cleaned.to_string()
    }
}

/// Start the Telegram poller of `service`'s user when `[channels.telegram]` is enabled.
pub fn start(
    service: Arc<SessionService>,
    cfg: &Telegram,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<TelegramRunner>, SetupError> {
    if !cfg.enabled {
        return Ok(None);
    }
    let key = |k: &str, m: String| SetupError::Key {
        key: format!("channels.telegram.{k}"),
        message: m,
    };
    let var = cfg.bot_token_env.clone().unwrap_or_default();
    let token = env(&var).filter(|t| !t.trim().is_empty()).ok_or_else(|| {
        key(
            "bot_token_env",
            format!("{var} is not set: export the bot token from @BotFather there"),
        )
    })?;
    let system = service.system().clone();
    let (wasm, sha) = match &cfg.component {
        // An installed adapter: its digest is checked against the lock as it is read.
        Some(c) => {
            let wasm = crate::registry::installed_channel(
                &system.config,
                system.base_dir.as_deref(),
                &crate::registry::store(),
                c,
            )
            .map_err(|e| key("component", e.to_string()))?;
            (wasm, None)
        }
        None => {
            let dir = crate::tools::bundled_dir(&system.config.components);
            let manifest = oxydra_runtime::bundle::read_manifest(&dir)?;
            let (wasm, sha) =
                oxydra_runtime::bundle::channel_component(&dir, &manifest, "telegram")?;
            (wasm, Some(sha))
        }
    };
    let channel = system
        .host
        .load_channel(ChannelSpec {
            name: "telegram".into(),
            wasm,
            expected_sha256: sha,
            api_base_url: cfg
                .api_base_url
                .clone()
                .unwrap_or_else(|| DEFAULT_API.into()),
            token: Some(token),
            poll_timeout_secs: Some(cfg.polling_timeout_secs),
            limits: system.config.components.limits,
        })
        .map_err(|e| SetupError::Refused(e.to_string()))?;
    let kv = Arc::new(StoreKv::open(
        service.workspace(),
        &format!("telegram:{}", service.user()),
    )?);
    let counters = Arc::new(Counters::default());
    let workspace = Workspace::open(service.workspace()).map_err(|e| {
        SetupError::Refused(format!(
            "telegram: could not open the workspace {}: {e}",
            service.workspace().display()
        ))
    })?;
    let ctx = Arc::new(Ctx {
        streaming: cfg.streaming,
        interval: Duration::from_millis(cfg.edit_interval_ms),
        require_mention: cfg.require_mention_in_groups,
        max_file_bytes: cfg.max_file_bytes,
        workspace,
        drafts_work: AtomicBool::new(true),
        allowed: cfg
            .senders
            .iter()
            .flat_map(|s| s.platform_ids.iter().cloned())
            .collect(),
        max_len: (cfg.max_message_length as usize)
            .min(channel.info.max_message_length.max(16) as usize),
        audit: service
            .workspace()
            .join(".oxydra")
            .join("sender_audit.jsonl"),
        counters: counters.clone(),
        service,
        channel,
        kv,
    });
    ctx.service
        .notifiers()
        .register(CHANNEL, Arc::new(ChatSender(ctx.clone())));
    let weak = Arc::downgrade(&ctx.service);
    let stop = Arc::new(AtomicBool::new(false));
    let status = Arc::new(Mutex::new("running".to_string()));
    let (stop2, status2) = (stop.clone(), status.clone());
    std::thread::Builder::new()
        .name("telegram-poller".into())
        .spawn(move || poll_loop(&ctx, &stop2, &status2))
        .map_err(|e| key("enabled", format!("could not start the poller: {e}")))?;
    Ok(Some(TelegramRunner {
        stop,
        service: weak,
        counters,
        status,
    }))
}

fn poll_loop(ctx: &Arc<Ctx>, stop: &AtomicBool, status: &Mutex<String>) {
    let mut backoff = Duration::from_secs(1);
    let mut seen: std::collections::VecDeque<String> = std::collections::VecDeque::new();
    while !stop.load(Ordering::SeqCst) {
        match ctx.host().channel_poll(&ctx.channel, ctx.kv.clone()) {
            Ok(messages) => {
                backoff = Duration::from_secs(1);
                if let Ok(mut s) = status.lock()
                    && *s != "running"
                {
                    *s = "running".into();
                }
                for m in messages {
                    // A crash between emitting and storing the offset replays: skip
                    // what this process already handled.
                    if seen.contains(&m.update_id) {
                        continue;
                    }
                    seen.push_back(m.update_id.clone());
                    if seen.len() > 1000 {
                        seen.pop_front();
                    }
                    ctx.handle(m);
                }
            }
            Err(ChannelFailure::RetryAfter(s)) => {
                std::thread::sleep(Duration::from_secs(u64::from(s.clamp(1, 300))));
            }
            Err(ChannelFailure::Unauthorized(m)) => {
                tracing::error!(
                    "telegram: the bot token was refused ({m}); the channel is stopped: fix channels.telegram.bot_token_env and restart serve"
                );
                if let Ok(mut s) = status.lock() {
                    *s = format!("stopped: the bot token was refused ({m})");
                }
                return;
            }
            Err(ChannelFailure::Conflict(m)) => {
                tracing::error!(
                    retry_in_s = backoff.as_secs(),
                    "telegram: another process is polling this bot ({m}); only one poller per bot can work: stop the other one (another serve, or a webhook set with setWebhook)"
                );
                if let Ok(mut s) = status.lock() {
                    *s = format!("conflict: another poller holds the bot ({m})");
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(60));
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in_s = backoff.as_secs(), "telegram: poll failed");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(60));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_answer_splits_on_boundaries_within_the_limit() {
        let para = "Ünïcödé paragraph with emoji 😀🎉 and CJK 漢字かな交じり文 ".repeat(20);
        let text = format!("{para}\n\n{para}\n{}", "word ".repeat(2000));
        assert!(utf16_len(&text) > 10_000);
        let parts = split_message(&text, 4096);
        assert!(parts.len() >= 3);
        for p in &parts {
            assert!(utf16_len(p) <= 4096, "{}", utf16_len(p));
        }
        let joined: String = parts.join(" ");
        assert_eq!(
            joined.split_whitespace().collect::<Vec<_>>(),
            text.split_whitespace().collect::<Vec<_>>(),
            "nothing lost"
        );
        // A run with no boundary still splits on a character, never inside one.
        let emoji = "😀".repeat(3000);
        for p in split_message(&emoji, 4096) {
            assert!(utf16_len(&p) <= 4096);
            assert!(p.chars().all(|c| c == '😀'));
        }
    }

    #[test]
    fn inbound_file_names_are_one_safe_component() {
        assert_eq!(safe_file_name("../../etc/passwd"), "passwd");
        assert_eq!(safe_file_name("C:\\x\\report q1.pdf"), "report_q1.pdf");
        assert_eq!(safe_file_name(".hidden"), "hidden");
        assert_eq!(safe_file_name(".."), "file");
        assert_eq!(safe_file_name("фото 😀.jpg"), "фото__.jpg");
        assert_eq!(safe_file_name(&"a".repeat(300)).len(), 100);
    }

    #[test]
    fn markdown_becomes_telegrams_html_subset_with_text_escaped() {
        let html = to_html(
            "**bold** and *it* `a<b` [link](https://x.y/?a=1&b=2)\n\n```rust\nfn x() {}\n```",
        );
        assert!(html.contains("<b>bold</b>"), "{html}");
        assert!(html.contains("<i>it</i>"), "{html}");
        assert!(html.contains("<code>a&lt;b</code>"), "{html}");
        assert!(
            html.contains("<a href=\"https://x.y/?a=1&amp;b=2\">link</a>"),
            "{html}"
        );
        assert!(
            html.contains("<pre><code class=\"language-rust\">fn x() {}"),
            "{html}"
        );
        assert_eq!(to_html("1 < 2 & 3 > 2"), "1 &lt; 2 &amp; 3 &gt; 2");
    }
}
