//! Chat channels as components (`chat-channel` profile): load one, and run its calls —
//! `poll` (long polling; the messages it emits come back to the caller), `deliver`
//! (one outbound action) and `fetch-file` — each in a fresh store.
//!
//! A channel reaches exactly one origin (its configured API base URL) through the same
//! egress as providers: the credential is substituted for the `{token}` placeholder
//! (percent-encoded, as a URI path carries it) by the host, after the request left the
//! component. What must survive between calls lives in the caller's [`ChannelKv`].

use crate::bindings::channel::{ChannelExport, ChannelExportPre};
use crate::bindings::channel_imports::oxydra::channel::{host, types as wit};
use crate::capabilities::http::{AuthScheme, Egress, HttpLimits, Origin, Watch};
use crate::kernel::{self, ComponentSpec, Core, Limited, Stop, add_wasi_base};
use crate::limits::Limits;
use crate::profiles::{LoadError, Profile};
use crate::state::CallLimiter;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// The placeholder a channel writes where the credential goes, as it appears in a URI
/// path (`{token}` percent-encoded).
pub const TOKEN_PLACEHOLDER: &str = "%7Btoken%7D";

/// Durable state of one channel (and bot), kept by the host across calls and restarts.
pub trait ChannelKv: Send + Sync {
    fn get(&self, key: &str) -> Option<String>;
    fn set(&self, key: &str, value: &str) -> Result<(), String>;
}

/// What a channel says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelInfo {
    pub name: String,
    pub poll_timeout_secs: u32,
    pub max_message_length: u32,
    pub supports_drafts: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundFile {
    pub file_id: String,
    pub name: String,
    pub media_type: String,
    pub size: u64,
}

/// One message a person sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    pub update_id: String,
    pub chat_id: String,
    pub thread_id: Option<String>,
    pub message_id: String,
    pub sender_id: String,
    pub sender_name: String,
    pub text: String,
    pub is_group: bool,
    pub addressed: bool,
    pub files: Vec<InboundFile>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub chat_id: String,
    pub thread_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    Photo,
    Document,
    Audio,
    Voice,
    Video,
}

/// One outbound action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Send {
        to: Target,
        text: String,
        html: bool,
    },
    Edit {
        to: Target,
        message_id: String,
        text: String,
        html: bool,
    },
    Draft {
        to: Target,
        draft_id: u32,
        text: String,
    },
    Typing(Target),
    Media {
        to: Target,
        kind: MediaKind,
        file_name: String,
        bytes: Vec<u8>,
        caption: Option<String>,
    },
}

/// A file a tool sends to the chat of its turn (`oxydra:channel/outbox`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundMedia {
    pub kind: MediaKind,
    pub file_name: String,
    pub bytes: Vec<u8>,
    pub caption: Option<String>,
}

/// The chat of one turn, for tools in the `chat-media` profile. The session layer
/// binds one to each turn that came from a chat channel.
pub trait Outbox: Send + Sync {
    /// Deliver `media`; the platform's message id, or a message for the model.
    fn send_media(&self, media: OutboundMedia) -> Result<String, String>;
}

/// Why a channel call did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelFailure {
    #[error("rate limited: retry after {0} s")]
    RetryAfter(u32),
    #[error("the bot token was refused: {0}")]
    Unauthorized(String),
    #[error("another poller holds this bot: {0}")]
    Conflict(String),
    #[error("the platform could not parse the formatting: {0}")]
    BadFormatting(String),
    #[error("the message is too long: {0}")]
    TooLong(String),
    #[error("{0}")]
    Failed(String),
    /// The component trapped, hit a limit, or tried an origin it may not reach.
    #[error("channel component `{channel}`: {message}")]
    Component { channel: String, message: String },
}

impl From<wit::ChannelError> for ChannelFailure {
    fn from(e: wit::ChannelError) -> Self {
        match e {
            wit::ChannelError::RetryAfter(s) => ChannelFailure::RetryAfter(s),
            wit::ChannelError::Unauthorized(m) => ChannelFailure::Unauthorized(m),
            wit::ChannelError::Conflict(m) => ChannelFailure::Conflict(m),
            wit::ChannelError::BadFormatting(m) => ChannelFailure::BadFormatting(m),
            wit::ChannelError::TooLong(m) => ChannelFailure::TooLong(m),
            wit::ChannelError::Failed(m) => ChannelFailure::Failed(m),
        }
    }
}

fn target(t: &Target) -> wit::Target {
    wit::Target {
        chat_id: t.chat_id.clone(),
        thread_id: t.thread_id.clone(),
    }
}

fn action(a: Action) -> wit::Action {
    match a {
        Action::Send { to, text, html } => wit::Action::Send((target(&to), text, html)),
        Action::Edit {
            to,
            message_id,
            text,
            html,
        } => wit::Action::Edit((target(&to), message_id, text, html)),
        Action::Draft { to, draft_id, text } => wit::Action::Draft((target(&to), draft_id, text)),
        Action::Typing(to) => wit::Action::Typing(target(&to)),
        Action::Media {
            to,
            kind,
            file_name,
            bytes,
            caption,
        } => wit::Action::Media((
            target(&to),
            match kind {
                MediaKind::Photo => wit::MediaKind::Photo,
                MediaKind::Document => wit::MediaKind::Document,
                MediaKind::Audio => wit::MediaKind::Audio,
                MediaKind::Voice => wit::MediaKind::Voice,
                MediaKind::Video => wit::MediaKind::Video,
            },
            file_name,
            bytes,
            caption,
        )),
    }
}

fn inbound(m: wit::Inbound) -> Inbound {
    Inbound {
        update_id: m.update_id,
        chat_id: m.chat_id,
        thread_id: m.thread_id,
        message_id: m.message_id,
        sender_id: m.sender_id,
        sender_name: m.sender_name,
        text: m.text,
        is_group: m.is_group,
        addressed: m.addressed,
        files: m
            .files
            .into_iter()
            .map(|f| InboundFile {
                file_id: f.file_id,
                name: f.name,
                media_type: f.media_type,
                size: f.size,
            })
            .collect(),
    }
}

/// What one channel call's Store holds.
pub struct ChannelState {
    wasi: WasiCtx,
    table: ResourceTable,
    http: WasiHttpCtx,
    egress: Egress,
    limiter: CallLimiter,
    stderr: MemoryOutputPipe,
    kv: Arc<dyn ChannelKv>,
    emitted: Vec<Inbound>,
    channel: String,
    /// What the host answers for its reserved state keys (the operator's settings).
    reserved: Vec<(&'static str, String)>,
}

/// A state key the host answers itself: the channel's configured API base URL (the one
/// origin it may reach). A component cannot overwrite it.
pub const API_BASE_URL_KEY: &str = "api_base_url";
/// A state key the host answers itself when the operator set the long-polling wait
/// (`polling_timeout_secs`); the host bounds each `poll` by the same value.
pub const POLL_TIMEOUT_KEY: &str = "poll_timeout_secs";
/// The keys only the host writes.
pub const RESERVED_KEYS: [&str; 2] = [API_BASE_URL_KEY, POLL_TIMEOUT_KEY];

impl WasiView for ChannelState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for ChannelState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.egress,
        }
    }
}

impl Limited for ChannelState {
    fn limiter(&mut self) -> &mut CallLimiter {
        &mut self.limiter
    }
}

/// Most messages one `poll` may emit (Telegram returns at most 100 updates).
const MAX_EMITTED: usize = 1000;
/// Longest state key and value a channel may store.
const MAX_KEY: usize = 256;
const MAX_VALUE: usize = 64 * 1024;

impl wit::Host for ChannelState {}

impl host::Host for ChannelState {
    fn emit(&mut self, message: wit::Inbound) {
        if self.emitted.len() < MAX_EMITTED {
            self.emitted.push(inbound(message));
        } else {
            tracing::warn!(channel = %self.channel, "a poll emitted more than {MAX_EMITTED} messages; the rest are dropped");
        }
    }

    fn state_get(&mut self, key: String) -> Option<String> {
        if RESERVED_KEYS.contains(&key.as_str()) {
            return self
                .reserved
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.clone());
        }
        self.kv.get(&key)
    }

    fn state_set(&mut self, key: String, value: String) {
        if RESERVED_KEYS.contains(&key.as_str()) {
            tracing::warn!(channel = %self.channel, key = %key, "a channel may not set a key the host reserves; ignored");
            return;
        }
        if key.len() > MAX_KEY || value.len() > MAX_VALUE {
            tracing::warn!(channel = %self.channel, key = %key.chars().take(64).collect::<String>(), "channel state entry over the limit ({MAX_KEY} B key, {MAX_VALUE} B value); not stored");
            return;
        }
        if let Err(e) = self.kv.set(&key, &value) {
            tracing::error!(channel = %self.channel, key = %key, error = %e, "could not store channel state");
        }
    }

    fn log(&mut self, message: String) {
        tracing::info!(channel = %self.channel, "{message}");
    }
}

/// One channel to load: the component and what the operator configured.
#[derive(Clone)]
pub struct ChannelSpec {
    /// The channel's name in config (`telegram`), for messages.
    pub name: String,
    pub wasm: Arc<Vec<u8>>,
    pub expected_sha256: Option<String>,
    /// The only origin the component may reach (`https://api.telegram.org`).
    pub api_base_url: String,
    /// The credential, substituted for [`TOKEN_PLACEHOLDER`]; never given to the component.
    pub token: Option<String>,
    /// The operator's long-polling wait, overriding the one the component asks for
    /// (answered as [`POLL_TIMEOUT_KEY`]).
    pub poll_timeout_secs: Option<u32>,
    pub limits: Limits,
}

impl std::fmt::Debug for ChannelSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelSpec")
            .field("name", &self.name)
            .field("api_base_url", &self.api_base_url)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .finish()
    }
}

pub struct LoadedChannel {
    pub info: ChannelInfo,
    pub spec: ChannelSpec,
    origin: Origin,
    pre: ChannelExportPre<ChannelState>,
}

/// The channel kind: its linker (WASI base, `wasi:http`, `oxydra:channel/host`).
pub(crate) struct Channels {
    linker: Linker<ChannelState>,
}

/// The longest long-polling wait a channel may ask for or be given.
const MAX_POLL_SECS: u32 = 300;
/// Seconds a call may take beyond the long-polling wait the channel asked for.
const CALL_MARGIN: Duration = Duration::from_secs(30);
/// Most bytes of one response (a file download included).
const MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;

impl Channels {
    pub fn new(engine: &Engine) -> wasmtime::Result<Channels> {
        let mut linker = Linker::new(engine);
        add_wasi_base(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_sync(&mut linker)?;
        wit::add_to_linker::<ChannelState, HasSelf<ChannelState>>(&mut linker, |s| s)?;
        host::add_to_linker::<ChannelState, HasSelf<ChannelState>>(&mut linker, |s| s)?;
        Ok(Channels { linker })
    }

    fn store(
        &self,
        core: &Core,
        spec: &ChannelSpec,
        origin: Origin,
        wait: Duration,
        kv: Arc<dyn ChannelKv>,
    ) -> Store<ChannelState> {
        let length = wait + CALL_MARGIN;
        let limits = HttpLimits {
            first_byte_timeout: length,
            max_response_bytes: MAX_RESPONSE_BYTES,
            ..HttpLimits::default()
        };
        let watch = Arc::new(Watch::new(
            limits,
            Instant::now(),
            Some((Instant::now() + length, "channel call".into())),
            None,
        ));
        watch.start_event(length);
        let egress = Egress::new(
            origin,
            AuthScheme::UrlPlaceholder(TOKEN_PLACEHOLDER.into()),
            spec.token.clone(),
            Vec::new(),
            watch,
        );
        let stderr = MemoryOutputPipe::new(spec.limits.log_bytes);
        let state = ChannelState {
            wasi: WasiCtx::builder().stderr(stderr.clone()).build(),
            table: ResourceTable::new(),
            http: WasiHttpCtx::new(),
            egress,
            limiter: CallLimiter::new(&spec.limits),
            stderr,
            kv,
            emitted: Vec::new(),
            channel: spec.name.clone(),
            reserved: std::iter::once((
                API_BASE_URL_KEY,
                spec.api_base_url.trim_end_matches('/').to_string(),
            ))
            .chain(
                spec.poll_timeout_secs
                    .map(|s| (POLL_TIMEOUT_KEY, s.min(MAX_POLL_SECS).to_string())),
            )
            .collect(),
        };
        // The wait for the network is the host's; running code is bounded by the epoch
        // deadline of the whole call.
        let ticks =
            (length.as_millis() as u64).div_ceil(crate::limits::EPOCH_TICK.as_millis() as u64);
        core.store(state, ticks)
    }

    pub fn load(&self, core: &Core, spec: ChannelSpec) -> Result<LoadedChannel, LoadError> {
        let name = format!("channel {}", spec.name);
        let checked = core.load(&ComponentSpec {
            name: name.clone(),
            wasm: spec.wasm.clone(),
            grant: Profile::ChatChannel,
            expected_sha256: spec.expected_sha256.clone(),
        })?;
        let pre = self
            .linker
            .instantiate_pre(&checked.component)
            .and_then(ChannelExportPre::new)
            .map_err(|e| LoadError::Link {
                component: name.clone(),
                message: format!("{e:#}"),
            })?;
        let other = |m: String| LoadError::Other {
            component: name.clone(),
            message: m,
        };
        let origin =
            Origin::parse(&spec.api_base_url).map_err(|m| other(format!("api_base_url: {m}")))?;
        // Describe in a store that may reach nothing and remembers nothing.
        let nowhere = Origin {
            scheme: "http".into(),
            host: "0.0.0.0".into(),
            port: 9,
        };
        let mut store = self.store(core, &spec, nowhere, Duration::ZERO, Arc::new(NoState));
        let inst = pre
            .instantiate(&mut store)
            .map_err(|e| other(format!("{e:#}")))?;
        let info = inst
            .oxydra_channel_channel()
            .call_describe(&mut store)
            .map_err(|e| other(format!("describe failed: {e:#}")))?;
        Ok(LoadedChannel {
            info: ChannelInfo {
                name: info.name,
                poll_timeout_secs: spec
                    .poll_timeout_secs
                    .unwrap_or(info.poll_timeout_secs)
                    .min(MAX_POLL_SECS),
                max_message_length: info.max_message_length,
                supports_drafts: info.supports_drafts,
            },
            spec,
            origin,
            pre,
        })
    }

    fn run<T>(
        &self,
        core: &Core,
        ch: &LoadedChannel,
        wait: Duration,
        kv: Arc<dyn ChannelKv>,
        call: impl FnOnce(
            &ChannelExport,
            &mut Store<ChannelState>,
        ) -> wasmtime::Result<Result<T, wit::ChannelError>>,
    ) -> Result<(T, Vec<Inbound>), ChannelFailure> {
        let mut store = self.store(core, &ch.spec, ch.origin.clone(), wait, kv);
        let result = ch
            .pre
            .instantiate(&mut store)
            .and_then(|inst| call(&inst, &mut store));
        let state = store.data_mut();
        let emitted = std::mem::take(&mut state.emitted);
        let denied = state
            .egress
            .denied
            .lock()
            .map(|d| d.clone())
            .unwrap_or_default();
        let stderr = state.stderr.contents();
        for line in String::from_utf8_lossy(&stderr)
            .lines()
            .filter(|l| !l.trim().is_empty())
        {
            tracing::info!(channel = %ch.spec.name, stream = "stderr", "{line}");
        }
        let component = |message: String| ChannelFailure::Component {
            channel: ch.spec.name.clone(),
            message,
        };
        if let Some(tried) = denied.first() {
            return Err(component(format!(
                "tried to reach {tried}; a channel may reach only its api_base_url ({})",
                ch.origin
            )));
        }
        match result {
            Ok(Ok(v)) => Ok((v, emitted)),
            Ok(Err(e)) => Err(e.into()),
            Err(e) => Err(component(match kernel::classify(&e, &state.limiter) {
                Stop::Memory { wanted_bytes } => format!(
                    "tried to grow its memory to {} MiB, past its limit of {} MiB",
                    (wanted_bytes as u64).div_ceil(1 << 20),
                    ch.spec.limits.memory_mib
                ),
                Stop::Deadline => format!(
                    "ran past its deadline of {} s",
                    (wait + CALL_MARGIN).as_secs()
                ),
                Stop::Trap(t) => format!("crashed (trap: {t}){}", kernel::said(&stderr)),
                Stop::Host => format!("{e:#}"),
            })),
        }
    }

    pub fn poll(
        &self,
        core: &Core,
        ch: &LoadedChannel,
        kv: Arc<dyn ChannelKv>,
    ) -> Result<Vec<Inbound>, ChannelFailure> {
        let wait = Duration::from_secs(u64::from(ch.info.poll_timeout_secs));
        self.run(core, ch, wait, kv, |inst, store| {
            inst.oxydra_channel_channel().call_poll(store)
        })
        .map(|(_, emitted)| emitted)
    }

    pub fn deliver(
        &self,
        core: &Core,
        ch: &LoadedChannel,
        kv: Arc<dyn ChannelKv>,
        a: Action,
    ) -> Result<String, ChannelFailure> {
        let a = action(a);
        self.run(core, ch, Duration::ZERO, kv, |inst, store| {
            inst.oxydra_channel_channel().call_deliver(store, &a)
        })
        .map(|(id, _)| id)
    }

    pub fn fetch_file(
        &self,
        core: &Core,
        ch: &LoadedChannel,
        kv: Arc<dyn ChannelKv>,
        file_id: &str,
        max_bytes: u64,
    ) -> Result<Vec<u8>, ChannelFailure> {
        self.run(core, ch, Duration::ZERO, kv, |inst, store| {
            inst.oxydra_channel_channel()
                .call_fetch_file(store, file_id, max_bytes)
        })
        .map(|(bytes, _)| bytes)
    }
}

/// No state: what `describe` runs with.
struct NoState;

impl ChannelKv for NoState {
    fn get(&self, _: &str) -> Option<String> {
        None
    }
    fn set(&self, _: &str, _: &str) -> Result<(), String> {
        Err("no state while describing".into())
    }
}
