//! The component host: the public face over the core (`kernel`) and the kinds
//! built on it (`tools`, [`crate::llm`]). It holds one of each and forwards; it
//! does no kind's work itself.

use crate::cache::CacheOutcome;
use crate::capabilities::paths::Workspace;
use crate::channels::{
    Action, ChannelFailure, ChannelKv, ChannelSpec, Channels, Inbound, LoadedChannel,
};
use crate::context::CallContext;
use crate::engine;
use crate::kernel::Core;
use crate::llm::types::{LlmFailure, LlmRequest};
use crate::llm::{CallOptions, Completion, HttpLimits, LoadedProvider, ProviderSpec, Providers};
use crate::profiles::{self, LoadError, Shape};
use crate::tools::Tools;
use std::path::PathBuf;
use std::sync::Arc;
use wasmtime::Engine;

pub use crate::kernel::{ComponentReport, ComponentSpec};
pub use crate::profiles::Tier;
pub use crate::tools::{
    CallError, ExternalTool, LoadedTool, ToolDescriptor, ToolFailure, ToolSource, ToolSpec,
};

pub struct HostConfig {
    /// Where compiled components are cached; `None` keeps them in memory only.
    pub cache_dir: Option<PathBuf>,
    /// Largest memory limit any tool will get (sizes the pool's slots).
    pub max_memory_mib: u64,
}

pub struct ComponentHost {
    core: Core,
    tools: Tools,
    providers: Providers,
    channels: Channels,
}

impl ComponentHost {
    pub fn new(config: HostConfig) -> wasmtime::Result<ComponentHost> {
        let engine = engine::build(config.max_memory_mib)?;
        let tools = Tools::new(&engine)?;
        let providers = Providers::new(&engine)?;
        let channels = Channels::new(&engine)?;
        Ok(ComponentHost {
            core: Core::new(engine, config.cache_dir),
            tools,
            providers,
            channels,
        })
    }

    pub fn engine(&self) -> &Engine {
        self.core.engine()
    }

    /// Compile (or fetch from the cache) and inspect, without checking any grant.
    pub fn inspect(&self, name: &str, wasm: &[u8]) -> Result<(Shape, CacheOutcome), LoadError> {
        let (component, outcome) = self.core.compile(name, wasm)?;
        Ok((
            profiles::inspect(self.core.engine(), name, &component)?,
            outcome,
        ))
    }

    /// Raw import and export names, for display even when the component is refused.
    pub fn interfaces(
        &self,
        name: &str,
        wasm: &[u8],
    ) -> Result<(Vec<String>, Vec<String>), LoadError> {
        let (component, _) = self.core.compile(name, wasm)?;
        let engine = self.core.engine();
        let ty = component.component_type();
        Ok((
            ty.imports(engine).map(|(n, _)| n.to_string()).collect(),
            ty.exports(engine).map(|(n, _)| n.to_string()).collect(),
        ))
    }

    /// Load a tool: check every component against its grant, pre-instantiate it on its
    /// profile's linker, and ask it to describe itself.
    pub fn load(&self, spec: &ToolSpec) -> Result<LoadedTool, LoadError> {
        self.tools.load(&self.core, spec)
    }

    /// Run one call in a fresh store (a trap poisons an instance, so none is reused).
    pub fn call(
        &self,
        tool: &LoadedTool,
        arguments: &str,
        ws: &Arc<Workspace>,
    ) -> Result<String, CallError> {
        self.tools
            .call(&self.core, tool, arguments, ws, &CallContext::default())
    }

    /// [`ComponentHost::call`], with the per-call services of `context`: the delegator
    /// a `delegation`-profile tool reaches through `oxydra:agent/delegate`, and so on
    /// (a profile without a service's interface cannot import it).
    pub fn call_with(
        &self,
        tool: &LoadedTool,
        arguments: &str,
        ws: &Arc<Workspace>,
        context: &CallContext,
    ) -> Result<String, CallError> {
        self.tools.call(&self.core, tool, arguments, ws, context)
    }

    /// Load a channel component under the `chat-channel` profile; it may reach only
    /// `spec.api_base_url`, with the token substituted by the host.
    pub fn load_channel(&self, spec: ChannelSpec) -> Result<LoadedChannel, LoadError> {
        self.channels.load(&self.core, spec)
    }

    /// One long poll: the messages the channel emitted (its offset advanced in `kv`).
    pub fn channel_poll(
        &self,
        ch: &LoadedChannel,
        kv: Arc<dyn ChannelKv>,
    ) -> Result<Vec<Inbound>, ChannelFailure> {
        self.channels.poll(&self.core, ch, kv)
    }

    /// One outbound action; the platform's message id.
    pub fn channel_deliver(
        &self,
        ch: &LoadedChannel,
        kv: Arc<dyn ChannelKv>,
        action: Action,
    ) -> Result<String, ChannelFailure> {
        self.channels.deliver(&self.core, ch, kv, action)
    }

    /// Download an inbound file, at most `max_bytes`.
    pub fn channel_fetch_file(
        &self,
        ch: &LoadedChannel,
        kv: Arc<dyn ChannelKv>,
        file_id: &str,
        max_bytes: u64,
    ) -> Result<Vec<u8>, ChannelFailure> {
        self.channels
            .fetch_file(&self.core, ch, kv, file_id, max_bytes)
    }

    /// Load a provider adapter under the `llm-provider` profile, with the default
    /// [`HttpLimits`].
    pub fn load_provider(&self, spec: ProviderSpec) -> Result<LoadedProvider, LoadError> {
        self.load_provider_with(spec, HttpLimits::default())
    }

    /// Load a provider adapter whose HTTP exchanges are bounded by `http`.
    pub fn load_provider_with(
        &self,
        spec: ProviderSpec,
        http: HttpLimits,
    ) -> Result<LoadedProvider, LoadError> {
        self.providers.load(&self.core, spec, http)
    }

    /// Start a completion: retried (with backoff) until the first event arrives, never after.
    /// Bounded by the per-phase timeouts and `limits.deadline_ms` per event only; see
    /// [`ComponentHost::complete_with`].
    pub fn complete(
        &self,
        p: &LoadedProvider,
        request: &LlmRequest,
    ) -> Result<Completion, LlmFailure> {
        self.complete_with(p, request, &CallOptions::default())
    }

    /// Start a completion bounded by `options`: every wait and all computing of the call,
    /// its retries included, end by `options.deadline`, and at once when `options.cancel`
    /// is set. Retried (with backoff) until the first event arrives, never after.
    pub fn complete_with(
        &self,
        p: &LoadedProvider,
        request: &LlmRequest,
        options: &CallOptions,
    ) -> Result<Completion, LlmFailure> {
        self.providers.complete(&self.core, p, request, options)
    }
}
