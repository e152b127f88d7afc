//! LLM providers as components: load one under the `llm-provider` profile, start a
//! completion, pull its events as the HTTP body arrives, and retry failures that happen
//! before the first event.
//!
//! The host never parses a provider's wire format and never buffers a whole response:
//! each `next()` runs the component until it has one event.

mod convert;
mod retry;
pub mod types;

use crate::bindings::provider::{ProviderExport, ProviderExportPre};
use crate::capabilities::http::{AuthScheme, Egress, Origin, POLL_INTERVAL, Watch};
pub use crate::capabilities::http::{CancelFlag, HttpLimits};
use crate::kernel::{self, ComponentSpec, Core, Limited, Stop, add_wasi_base};
use crate::limits::{EPOCH_TICK, Limits};
use crate::profiles::{LoadError, Profile};
use crate::state::CallLimiter;
pub use retry::RetryPolicy;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use types::{GiveUp, LlmEvent, LlmFailure, LlmRequest, ProviderInfo};
use wasmtime::component::{Linker, ResourceAny, ResourceTable};
use wasmtime::{Engine, Store, UpdateDeadline};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

/// Origins a provider component tried and was refused, shared with its egress policy.
type Denials = Arc<Mutex<Vec<String>>>;

/// What one provider call's Store holds.
pub struct ProviderState {
    wasi: WasiCtx,
    table: ResourceTable,
    http: WasiHttpCtx,
    egress: Egress,
    limiter: CallLimiter,
    stderr: MemoryOutputPipe,
}

impl WasiView for ProviderState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for ProviderState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.egress,
        }
    }
}

impl Limited for ProviderState {
    fn limiter(&mut self) -> &mut CallLimiter {
        &mut self.limiter
    }
}

/// The provider kind: the `llm-provider` linker (WASI base + `wasi:http` types and
/// outgoing-handler) and the provider store state [`ProviderState`].
pub(crate) struct Providers {
    linker: Linker<ProviderState>,
}

/// One provider to load: the adapter component and what the operator configured.
#[derive(Debug, Clone)]
pub struct ProviderSpec {
    /// The `[providers.registry]` key, for messages.
    pub name: String,
    pub wasm: Arc<Vec<u8>>,
    pub expected_sha256: Option<String>,
    /// The configured base URL; `None` means the adapter's default.
    pub base_url: Option<String>,
    /// The API key, read by the host from `api_key_env`; never given to the component.
    pub api_key: Option<String>,
    /// For messages: the variable the key came from.
    pub api_key_env: Option<String>,
    pub extra_headers: Vec<(String, String)>,
    pub limits: Limits,
    pub retry: RetryPolicy,
}

pub struct LoadedProvider {
    pub info: ProviderInfo,
    pub spec: ProviderSpec,
    /// Timeouts and the response size cap of this provider's HTTP exchanges.
    pub http: HttpLimits,
    base_url: String,
    origin: Origin,
    auth: AuthScheme,
    pre: ProviderExportPre<ProviderState>,
}

impl LoadedProvider {
    pub fn base_url(&self) -> &str {
        &self.base_url
    }
}

/// How the caller bounds one provider call (for an agent: one model call of a turn).
#[derive(Clone, Default)]
pub struct CallOptions {
    /// Every wait of the call (connecting, the first byte, pauses in the body, backoff
    /// before a retry) and all its computing end by this instant: the turn's deadline
    /// or its wall budget, whichever is first. `None`: only the per-phase timeouts of
    /// [`HttpLimits`] and `limits.deadline_ms` per event bound the call.
    pub deadline: Option<Instant>,
    /// The setting `deadline` came from, named when it ends the call
    /// (e.g. `runtime.turn_timeout_secs`).
    pub limit_key: String,
    /// Polled every 50 ms while the call waits, and while the component runs; once set,
    /// the call ends with [`LlmFailure::Cancelled`].
    pub cancel: Option<Arc<dyn CancelFlag>>,
}

impl CallOptions {
    /// A call that ends by `deadline`, which came from the setting `limit_key`.
    pub fn until(deadline: Instant, limit_key: impl Into<String>) -> CallOptions {
        CallOptions {
            deadline: Some(deadline),
            limit_key: limit_key.into(),
            cancel: None,
        }
    }

    /// The same, also ended when `flag` is set.
    pub fn cancelled_by(mut self, flag: Arc<dyn CancelFlag>) -> CallOptions {
        self.cancel = Some(flag);
        self
    }
}

/// Epoch ticks between two looks at the watch while a provider component runs.
const WATCH_TICKS: u64 = (POLL_INTERVAL.as_millis() / EPOCH_TICK.as_millis()) as u64;

/// A completion in progress. Dropping it drops the component's stream and store.
pub struct Completion {
    store: Store<ProviderState>,
    bindings: ProviderExport,
    stream: Option<ResourceAny>,
    first: Option<LlmEvent>,
    provider: String,
    limits: Limits,
    watch: Arc<Watch>,
    /// How many attempts it took to get the first event.
    pub attempts: u32,
}

impl Providers {
    pub fn new(engine: &Engine) -> wasmtime::Result<Providers> {
        let mut linker = Linker::new(engine);
        add_wasi_base(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_sync(&mut linker)?;
        Ok(Providers { linker })
    }

    fn provider_store(
        &self,
        core: &Core,
        p: &LoadedProvider,
        watch: Arc<Watch>,
    ) -> Result<(Store<ProviderState>, Denials), LlmFailure> {
        let headers = p
            .spec
            .extra_headers
            .iter()
            .map(|(k, v)| {
                let name = http::HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
                    LlmFailure::Config(format!("extra header name `{k}` is not valid"))
                })?;
                let value = http::HeaderValue::from_str(v).map_err(|_| {
                    LlmFailure::Config(format!("extra header `{k}` has a value that is not valid"))
                })?;
                Ok((name, value))
            })
            .collect::<Result<Vec<_>, LlmFailure>>()?;
        let egress = Egress::new(
            p.origin.clone(),
            p.auth.clone(),
            p.spec.api_key.clone(),
            headers,
            watch.clone(),
        );
        let denied = egress.denied.clone();
        let stderr = MemoryOutputPipe::new(p.spec.limits.log_bytes);
        let wasi = WasiCtx::builder().stderr(stderr.clone()).build();
        let state = ProviderState {
            wasi,
            table: ResourceTable::new(),
            http: WasiHttpCtx::new(),
            egress,
            limiter: CallLimiter::new(&p.spec.limits),
            stderr,
        };
        // Every 50 ms of running, look at the cancel flag and the deadlines (the event's,
        // `limits.deadline_ms`, included): the watch says what stopped it.
        watch.start_event(Duration::from_millis(p.spec.limits.deadline_ms));
        let mut store = core.store(state, WATCH_TICKS);
        store.epoch_deadline_callback(|ctx| {
            Ok(match ctx.data().egress.watch.check() {
                Some(_) => UpdateDeadline::Interrupt,
                None => UpdateDeadline::Continue(WATCH_TICKS),
            })
        });
        Ok((store, denied))
    }

    /// Load a provider adapter under the `llm-provider` profile, its HTTP exchanges
    /// bounded by `http`: the core's checked load, then this kind's linker.
    pub fn load(
        &self,
        core: &Core,
        spec: ProviderSpec,
        http: HttpLimits,
    ) -> Result<LoadedProvider, LoadError> {
        let name = format!("provider {}", spec.name);
        let checked = core.load(&ComponentSpec {
            name: name.clone(),
            wasm: spec.wasm.clone(),
            grant: Profile::LlmProvider,
            expected_sha256: spec.expected_sha256.clone(),
        })?;
        let pre = self
            .linker
            .instantiate_pre(&checked.component)
            .and_then(ProviderExportPre::new)
            .map_err(|e| LoadError::Link {
                component: name.clone(),
                message: format!("{e:#}"),
            })?;
        // Describe in a store that may reach nothing.
        let nowhere = Origin {
            scheme: "http".into(),
            host: "0.0.0.0".into(),
            port: 9,
        };
        let probe = LoadedProvider {
            info: ProviderInfo::default(),
            spec: spec.clone(),
            http,
            base_url: String::new(),
            origin: nowhere,
            auth: AuthScheme::None,
            pre: pre.clone(),
        };
        let other = |m: String| LoadError::Other {
            component: name.clone(),
            message: m,
        };
        let watch = Arc::new(Watch::new(http, Instant::now(), None, None));
        let (mut store, _) = self
            .provider_store(core, &probe, watch)
            .map_err(|e| other(e.to_string()))?;
        let inst = pre
            .instantiate(&mut store)
            .map_err(|e| other(format!("{e:#}")))?;
        let info: ProviderInfo = inst
            .oxydra_llm_provider()
            .call_describe(&mut store)
            .map_err(|e| other(format!("describe failed: {e:#}")))?
            .into();
        let base_url = spec
            .base_url
            .clone()
            .unwrap_or_else(|| info.default_base_url.clone());
        let origin = Origin::parse(&base_url).map_err(|m| other(format!("base_url: {m}")))?;
        let auth = info.auth.clone();
        Ok(LoadedProvider {
            info,
            spec,
            http,
            base_url,
            origin,
            auth,
            pre,
        })
    }

    /// Start a completion bounded by `options`: every wait and all computing of the call,
    /// its retries included, end by `options.deadline`, and at once when `options.cancel`
    /// is set. Retried (with backoff) until the first event arrives, never after.
    pub fn complete(
        &self,
        core: &Core,
        p: &LoadedProvider,
        request: &LlmRequest,
        options: &CallOptions,
    ) -> Result<Completion, LlmFailure> {
        if p.spec.api_key.is_none() && p.auth != AuthScheme::None && !is_loopback(&p.origin) {
            return Err(LlmFailure::MissingKey {
                provider: p.spec.name.clone(),
                env: p.spec.api_key_env.clone(),
            });
        }
        let started = Instant::now();
        let deadline = options.deadline.map(|d| (d, options.limit_key.clone()));
        let wit_request = convert::request(request);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let watch = Arc::new(Watch::new(
                p.http,
                started,
                deadline.clone(),
                options.cancel.clone(),
            ));
            if let Some(f) = watch.check() {
                return Err(f);
            }
            let e = match self.attempt(core, p, &wit_request, watch.clone()) {
                Ok(mut c) => {
                    c.attempts = attempt;
                    return Ok(c);
                }
                Err(e) => e,
            };
            let delay = match p.spec.retry.decide(attempt, &e) {
                Ok(delay) => delay,
                Err(why) => return Err(e.explain(p, attempt, why)),
            };
            if let Some(at) = options.deadline {
                let left = at.saturating_duration_since(Instant::now());
                if delay >= left {
                    let why = GiveUp::PastDeadline {
                        wait: delay,
                        left,
                        limit_key: options.limit_key.clone(),
                    };
                    return Err(e.explain(p, attempt, why));
                }
            }
            tracing::warn!(provider = %p.spec.name, attempt, delay_ms = delay.as_millis() as u64, error = %e, "retrying");
            let until = Instant::now() + delay;
            while let Some(left) = until.checked_duration_since(Instant::now()) {
                if watch.cancelled() {
                    return Err(LlmFailure::Cancelled);
                }
                std::thread::sleep(left.min(POLL_INTERVAL));
            }
        }
    }

    fn attempt(
        &self,
        core: &Core,
        p: &LoadedProvider,
        request: &crate::bindings::provider::oxydra::llm::types::Request,
        watch: Arc<Watch>,
    ) -> Result<Completion, LlmFailure> {
        let (mut store, denied) = self.provider_store(core, p, watch.clone())?;
        let trap = |e: wasmtime::Error, store: &Store<ProviderState>| {
            trap_failure(&p.spec.name, e, store, &p.spec.limits)
        };
        let bindings = match p.pre.instantiate(&mut store) {
            Ok(b) => b,
            Err(e) => return Err(trap(e, &store)),
        };
        let started =
            bindings
                .oxydra_llm_provider()
                .call_complete(&mut store, &p.base_url, request);
        let stream = match started {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(stopped_or(&watch, with_denials(convert::error(e), &denied))),
            Err(e) => return Err(trap(e, &store)),
        };
        let mut c = Completion {
            store,
            bindings,
            stream: Some(stream),
            first: None,
            provider: p.spec.name.clone(),
            limits: p.spec.limits,
            watch,
            attempts: 0,
        };
        match c.pull() {
            Some(Ok(ev)) => {
                c.first = Some(ev);
                Ok(c)
            }
            Some(Err(e)) => Err(with_denials(e, &denied)),
            None => Ok(c),
        }
    }
}

/// What the watch recorded as stopping the call, if it did, else `e`: the component only
/// saw a broken connection.
fn stopped_or(watch: &Watch, e: LlmFailure) -> LlmFailure {
    watch.stopped().unwrap_or(e)
}

fn is_loopback(o: &Origin) -> bool {
    o.host == "localhost" || o.host.starts_with("127.") || o.host == "[::1]" || o.host == "::1"
}

fn with_denials(e: LlmFailure, denied: &Denials) -> LlmFailure {
    let tried = denied.lock().map(|d| d.clone()).unwrap_or_default();
    match (e, tried.first()) {
        (LlmFailure::Transport(m), Some(t)) => LlmFailure::Denied {
            tried: t.clone(),
            detail: m,
        },
        (e, _) => e,
    }
}

fn trap_failure(
    provider: &str,
    e: wasmtime::Error,
    store: &Store<ProviderState>,
    limits: &Limits,
) -> LlmFailure {
    let s = store.data();
    if let Some(stopped) = s.egress.watch.stopped() {
        return stopped;
    }
    LlmFailure::Crashed(match kernel::classify(&e, &s.limiter) {
        Stop::Memory { .. } => format!(
            "provider `{provider}` exceeded its memory limit of {} MiB",
            limits.memory_mib
        ),
        Stop::Deadline => format!(
            "provider `{provider}` ran past its deadline of {} ms for one event",
            limits.deadline_ms
        ),
        Stop::Trap(_) | Stop::Host => format!(
            "provider `{provider}` crashed: {e}{}",
            kernel::said(&s.stderr.contents())
        ),
    })
}

impl Completion {
    fn pull(&mut self) -> Option<Result<LlmEvent, LlmFailure>> {
        let stream = self.stream?;
        if let Some(stopped) = self.watch.check() {
            self.finish();
            return Some(Err(stopped));
        }
        self.watch
            .start_event(Duration::from_millis(self.limits.deadline_ms));
        self.store.set_epoch_deadline(WATCH_TICKS);
        let r = self
            .bindings
            .oxydra_llm_provider()
            .completion_stream()
            .call_next(&mut self.store, stream);
        self.watch.end_event();
        match r {
            Ok(Some(Ok(ev))) => Some(Ok(convert::event(ev))),
            Ok(Some(Err(e))) => {
                self.finish();
                Some(Err(stopped_or(&self.watch, convert::error(e))))
            }
            Ok(None) => {
                self.finish();
                None
            }
            Err(e) => {
                self.stream = None;
                Some(Err(trap_failure(
                    &self.provider,
                    e,
                    &self.store,
                    &self.limits,
                )))
            }
        }
    }

    fn finish(&mut self) {
        if let Some(s) = self.stream.take() {
            let _ = s.resource_drop(&mut self.store);
        }
    }

    /// The next event, `None` after the last. After an error, the stream is over.
    pub fn next_event(&mut self) -> Option<Result<LlmEvent, LlmFailure>> {
        if let Some(ev) = self.first.take() {
            return Some(Ok(ev));
        }
        self.pull()
    }
}

impl Iterator for Completion {
    type Item = Result<LlmEvent, LlmFailure>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_event()
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        self.finish();
    }
}
