//! LLM providers as components: load one under the `llm-provider` profile, start a
//! completion, pull its events as the HTTP body arrives, and retry failures that happen
//! before the first event.
//!
//! The host never parses a provider's wire format and never buffers a whole response:
//! each `next()` runs the component until it has one event.

mod convert;
mod retry;
pub mod types;

use crate::bindings::llm_provider::{LlmProvider, LlmProviderPre};
use crate::cache::sha256_hex;
use crate::capabilities::http::{AuthScheme, Egress, Origin};
use crate::host::ComponentHost;
use crate::limits::Limits;
use crate::linker::add_wasi_base;
use crate::profiles::{self, LoadError, Profile};
use crate::state::CallLimiter;
pub use retry::RetryPolicy;
use std::sync::{Arc, Mutex};
use types::{LlmEvent, LlmFailure, LlmRequest, ProviderInfo};
use wasmtime::component::{Linker, ResourceAny, ResourceTable};
use wasmtime::{Engine, Store, Trap};
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

/// The `llm-provider` linker: WASI base + `wasi:http` (types, outgoing-handler).
pub(crate) fn provider_linker(engine: &Engine) -> wasmtime::Result<Linker<ProviderState>> {
    let mut l = Linker::new(engine);
    add_wasi_base(&mut l)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_sync(&mut l)?;
    Ok(l)
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
    base_url: String,
    origin: Origin,
    auth: AuthScheme,
    pre: LlmProviderPre<ProviderState>,
}

impl LoadedProvider {
    pub fn base_url(&self) -> &str {
        &self.base_url
    }
}

/// A completion in progress. Dropping it drops the component's stream and store.
pub struct Completion {
    store: Store<ProviderState>,
    bindings: LlmProvider,
    stream: Option<ResourceAny>,
    first: Option<LlmEvent>,
    provider: String,
    deadline_ticks: u64,
    /// How many attempts it took to get the first event.
    pub attempts: u32,
}

impl ComponentHost {
    fn provider_store(
        &self,
        p: &LoadedProvider,
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
        let mut store = Store::new(self.engine(), state);
        store.limiter(|s| &mut s.limiter);
        store.set_epoch_deadline(p.spec.limits.deadline_ticks());
        Ok((store, denied))
    }

    /// Load a provider adapter under the `llm-provider` profile.
    pub fn load_provider(&self, spec: ProviderSpec) -> Result<LoadedProvider, LoadError> {
        let name = format!("provider {}", spec.name);
        let sha = sha256_hex(&spec.wasm);
        if let Some(expected) = &spec.expected_sha256
            && !expected.eq_ignore_ascii_case(&sha)
        {
            return Err(LoadError::Checksum {
                component: name,
                expected: expected.clone(),
                actual: sha,
            });
        }
        let (component, _) =
            self.cache()
                .load(self.engine(), &spec.wasm)
                .map_err(|e| LoadError::Invalid {
                    component: name.clone(),
                    message: format!("{e:#}"),
                })?;
        let shape = profiles::inspect(self.engine(), &name, &component)?;
        shape.check_grant(&name, Profile::LlmProvider)?;
        let pre = self
            .provider_linker()
            .instantiate_pre(&component)
            .and_then(LlmProviderPre::new)
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
            base_url: String::new(),
            origin: nowhere,
            auth: AuthScheme::None,
            pre: pre.clone(),
        };
        let other = |m: String| LoadError::Other {
            component: name.clone(),
            message: m,
        };
        let (mut store, _) = self
            .provider_store(&probe)
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
            base_url,
            origin,
            auth,
            pre,
        })
    }

    /// Start a completion: retried (with backoff) until the first event arrives, never after.
    pub fn complete(
        &self,
        p: &LoadedProvider,
        request: &LlmRequest,
    ) -> Result<Completion, LlmFailure> {
        if p.spec.api_key.is_none() && p.auth != AuthScheme::None && !is_loopback(&p.origin) {
            return Err(LlmFailure::MissingKey {
                provider: p.spec.name.clone(),
                env: p.spec.api_key_env.clone(),
            });
        }
        let wit_request = convert::request(request);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let outcome = self.attempt(p, &wit_request);
            match outcome {
                Ok(mut c) => {
                    c.attempts = attempt;
                    return Ok(c);
                }
                Err(e) => match p.spec.retry.delay(attempt, &e) {
                    Some(delay) => {
                        tracing::warn!(provider = %p.spec.name, attempt, delay_ms = delay.as_millis() as u64, error = %e, "retrying");
                        std::thread::sleep(delay);
                    }
                    None => return Err(e.explain(p)),
                },
            }
        }
    }

    fn attempt(
        &self,
        p: &LoadedProvider,
        request: &crate::bindings::llm_provider::oxydra::llm::types::Request,
    ) -> Result<Completion, LlmFailure> {
        let (mut store, denied) = self.provider_store(p)?;
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
            Ok(Err(e)) => return Err(with_denials(convert::error(e), &denied)),
            Err(e) => return Err(trap(e, &store)),
        };
        let mut c = Completion {
            store,
            bindings,
            stream: Some(stream),
            first: None,
            provider: p.spec.name.clone(),
            deadline_ticks: p.spec.limits.deadline_ticks(),
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
    if s.limiter.memory_hit.is_some() {
        return LlmFailure::Crashed(format!(
            "provider `{provider}` exceeded its memory limit of {} MiB",
            limits.memory_mib
        ));
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => LlmFailure::Crashed(format!(
            "provider `{provider}` ran past its deadline of {} ms for one event",
            limits.deadline_ms
        )),
        _ => {
            let said = String::from_utf8_lossy(&s.stderr.contents())
                .trim()
                .to_string();
            LlmFailure::Crashed(format!(
                "provider `{provider}` crashed: {e}{}",
                if said.is_empty() {
                    String::new()
                } else {
                    format!(": {said}")
                }
            ))
        }
    }
}

impl Completion {
    fn pull(&mut self) -> Option<Result<LlmEvent, LlmFailure>> {
        let stream = self.stream?;
        self.store.set_epoch_deadline(self.deadline_ticks);
        let r = self
            .bindings
            .oxydra_llm_provider()
            .completion_stream()
            .call_next(&mut self.store, stream);
        match r {
            Ok(Some(Ok(ev))) => Some(Ok(convert::event(ev))),
            Ok(Some(Err(e))) => {
                self.finish();
                Some(Err(convert::error(e)))
            }
            Ok(None) => {
                self.finish();
                None
            }
            Err(e) => {
                self.stream = None;
                let limits = Limits::default();
                Some(Err(trap_failure(&self.provider, e, &self.store, &limits)))
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
