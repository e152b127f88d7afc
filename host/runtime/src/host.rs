//! The component host: load components under a grant, keep their `InstancePre`s, and
//! run calls in fresh stores under limits.

use crate::bindings::file_read_write::FileReadWritePre;
use crate::bindings::vault_read_step::VaultReadStepPre;
use crate::bindings::{self, ToolError};
use crate::cache::{CacheOutcome, ComponentCache, sha256_hex};
use crate::capabilities::paths::Workspace;
use crate::engine;
use crate::limits::Limits;
use crate::linker::Linkers;
pub use crate::profiles::Tier;
use crate::profiles::{self, ExportKind, LoadError, Profile, Shape};
use crate::state::CallState;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::Component;
use wasmtime::{Engine, Store, Trap};

/// A tool as the rest of the host sees it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ToolDescriptor {
    pub name: String,
    pub description: String,
    pub parameters: serde_json::Value,
    pub tier: Tier,
    /// One profile per component (two for a two-step tool).
    pub profiles: Vec<Profile>,
}

/// One component to load: its bytes, the profile the operator grants it, its limits.
#[derive(Debug, Clone)]
pub struct ComponentSpec {
    /// Name used in messages (the tool name, or `tool#step`).
    pub name: String,
    pub wasm: Arc<Vec<u8>>,
    pub grant: Profile,
    pub expected_sha256: Option<String>,
}

/// A tool made of one component, or of two steps run in separate instances.
#[derive(Debug, Clone)]
pub struct ToolSpec {
    pub name: String,
    pub components: Vec<ComponentSpec>,
    pub limits: Limits,
}

enum Kind {
    Single(FileReadWritePre<CallState>),
    TwoStep(VaultReadStepPre<CallState>, VaultReadStepPre<CallState>),
}

pub struct LoadedTool {
    pub descriptor: ToolDescriptor,
    pub limits: Limits,
    pub load_report: Vec<ComponentReport>,
    kind: Kind,
}

/// What loading one component did (for `tool list -v` and the benchmark).
#[derive(Debug, Clone)]
pub struct ComponentReport {
    pub name: String,
    pub sha256: String,
    pub cache: CacheOutcome,
    pub shape: Shape,
    pub grant: Profile,
}

/// Why a call did not return a result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The tool ran and reported a failure the model can act on.
    #[error("{0}")]
    Tool(ToolFailure),
    #[error(
        "tool `{tool}` ran past its deadline of {deadline_ms} ms and was stopped; raise deadline_ms in [components.tools.{tool}.limits] if it needs longer"
    )]
    Deadline { tool: String, deadline_ms: u64 },
    #[error(
        "tool `{tool}` tried to grow its memory to {wanted_mib} MiB, past its limit of {limit_mib} MiB, and was stopped; raise memory_mib in [components.tools.{tool}.limits] if it needs more"
    )]
    Memory {
        tool: String,
        wanted_mib: u64,
        limit_mib: u64,
    },
    #[error("tool `{tool}` crashed (trap: {message}){detail}")]
    Trap {
        tool: String,
        message: String,
        detail: String,
    },
    #[error("tool `{tool}` returned {bytes} bytes, more than its output limit of {limit} bytes")]
    OutputTooLarge {
        tool: String,
        bytes: usize,
        limit: usize,
    },
    #[error("tool `{tool}` could not start: {message}")]
    Instantiate { tool: String, message: String },
}

/// A tool's own error value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolFailure {
    pub kind: &'static str,
    pub message: String,
}

impl std::fmt::Display for ToolFailure {
    /// Host capability errors already start with their kind ("denied: /vault/x ..."),
    /// so the kind is not written twice.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.message.starts_with(self.kind) && self.message[self.kind.len()..].starts_with(':') {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.kind, self.message)
        }
    }
}

impl std::error::Error for ToolFailure {}

impl From<ToolError> for ToolFailure {
    fn from(e: ToolError) -> Self {
        let (kind, message) = match e {
            ToolError::InvalidArguments(m) => ("invalid arguments", m),
            ToolError::Denied(m) => ("denied", m),
            ToolError::NotFound(m) => ("not found", m),
            ToolError::TooLarge(m) => ("too large", m),
            ToolError::Failed(m) => ("failed", m),
        };
        ToolFailure { kind, message }
    }
}

pub struct HostConfig {
    /// Where compiled components are cached; `None` keeps them in memory only.
    pub cache_dir: Option<PathBuf>,
    /// Largest memory limit any tool will get (sizes the pool's slots).
    pub max_memory_mib: u64,
}

pub struct ComponentHost {
    engine: Engine,
    linkers: Linkers,
    provider_linker: wasmtime::component::Linker<crate::llm::ProviderState>,
    cache: ComponentCache,
}

fn tier_of(t: bindings::SafetyTier) -> Tier {
    match t {
        bindings::SafetyTier::ReadOnly => Tier::ReadOnly,
        bindings::SafetyTier::SideEffecting => Tier::SideEffecting,
        bindings::SafetyTier::Privileged => Tier::Privileged,
    }
}

/// A tool runs at least at the tier floor of every profile its components are granted:
/// one that may write is side-effecting whatever it declares.
fn floored_tier(tool: &str, declared: Tier, reports: &[ComponentReport]) -> Tier {
    let floor = reports
        .iter()
        .map(|r| r.grant.tier_floor())
        .max()
        .unwrap_or(Tier::ReadOnly);
    if floor > declared {
        tracing::info!(
            tool,
            declared = declared.name(),
            runs_as = floor.name(),
            "tool declares a tier below its profile's floor; it runs at the floor"
        );
    }
    declared.max(floor)
}

impl ComponentHost {
    pub fn new(config: HostConfig) -> wasmtime::Result<ComponentHost> {
        let engine = engine::build(config.max_memory_mib)?;
        let linkers = Linkers::new(&engine)?;
        let provider_linker = crate::llm::provider_linker(&engine)?;
        let cache = ComponentCache::new(&engine, config.cache_dir);
        Ok(ComponentHost {
            engine,
            linkers,
            provider_linker,
            cache,
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub(crate) fn cache(&self) -> &ComponentCache {
        &self.cache
    }

    pub(crate) fn provider_linker(
        &self,
    ) -> &wasmtime::component::Linker<crate::llm::ProviderState> {
        &self.provider_linker
    }

    /// Compile (or fetch from the cache) and inspect, without checking any grant.
    pub fn inspect(&self, name: &str, wasm: &[u8]) -> Result<(Shape, CacheOutcome), LoadError> {
        let (component, outcome) = self.compile(name, wasm)?;
        Ok((profiles::inspect(&self.engine, name, &component)?, outcome))
    }

    /// Raw import and export names, for display even when the component is refused.
    pub fn interfaces(
        &self,
        name: &str,
        wasm: &[u8],
    ) -> Result<(Vec<String>, Vec<String>), LoadError> {
        let (component, _) = self.compile(name, wasm)?;
        let ty = component.component_type();
        Ok((
            ty.imports(&self.engine)
                .map(|(n, _)| n.to_string())
                .collect(),
            ty.exports(&self.engine)
                .map(|(n, _)| n.to_string())
                .collect(),
        ))
    }

    fn compile(&self, name: &str, wasm: &[u8]) -> Result<(Component, CacheOutcome), LoadError> {
        self.cache
            .load(&self.engine, wasm)
            .map_err(|e| LoadError::Invalid {
                component: name.to_string(),
                message: format!("{e:#}"),
            })
    }

    fn load_component(
        &self,
        spec: &ComponentSpec,
    ) -> Result<(ComponentReport, Component), LoadError> {
        let sha256 = sha256_hex(&spec.wasm);
        if let Some(expected) = &spec.expected_sha256
            && !expected.eq_ignore_ascii_case(&sha256)
        {
            return Err(LoadError::Checksum {
                component: spec.name.clone(),
                expected: expected.clone(),
                actual: sha256,
            });
        }
        let (component, cache) = self.compile(&spec.name, &spec.wasm)?;
        let shape = profiles::inspect(&self.engine, &spec.name, &component)?;
        shape.check_grant(&spec.name, spec.grant)?;
        Ok((
            ComponentReport {
                name: spec.name.clone(),
                sha256,
                cache,
                shape,
                grant: spec.grant,
            },
            component,
        ))
    }

    fn instance_pre(
        &self,
        spec: &ComponentSpec,
        component: &Component,
    ) -> Result<wasmtime::component::InstancePre<CallState>, LoadError> {
        let linker = self
            .linkers
            .get(spec.grant)
            .ok_or_else(|| LoadError::Other {
                component: spec.name.clone(),
                message: format!("no linker for profile {}", spec.grant),
            })?;
        // The second key: the grant's linker holds nothing outside the grant, so even a
        // component that slipped past `check_grant` could not link.
        linker
            .instantiate_pre(component)
            .map_err(|e| LoadError::Link {
                component: spec.name.clone(),
                message: format!("{e:#}"),
            })
    }

    /// Load a tool: check every component against its grant, pre-instantiate it on its
    /// profile's linker, and ask it to describe itself.
    pub fn load(&self, spec: &ToolSpec) -> Result<LoadedTool, LoadError> {
        spec.limits.validate().map_err(|m| LoadError::Other {
            component: spec.name.clone(),
            message: format!("limits: {m}"),
        })?;
        let mut reports = Vec::new();
        let kind = match spec.components.as_slice() {
            [one] => {
                let (report, component) = self.load_component(one)?;
                let pre =
                    FileReadWritePre::new(self.instance_pre(one, &component)?).map_err(|e| {
                        LoadError::Link {
                            component: one.name.clone(),
                            message: format!("{e:#}"),
                        }
                    })?;
                reports.push(report);
                Kind::Single(pre)
            }
            [first, second] => {
                let (r1, c1) = self.load_component(first)?;
                let (r2, c2) = self.load_component(second)?;
                for r in [&r1, &r2] {
                    if r.shape.export != ExportKind::Step {
                        return Err(LoadError::Exports {
                            component: r.name.clone(),
                            problem:
                                "is part of a two-step tool but does not export oxydra:tool/step"
                                    .into(),
                        });
                    }
                }
                let p1 = VaultReadStepPre::new(self.instance_pre(first, &c1)?).map_err(|e| {
                    LoadError::Link {
                        component: first.name.clone(),
                        message: format!("{e:#}"),
                    }
                })?;
                let p2 = VaultReadStepPre::new(self.instance_pre(second, &c2)?).map_err(|e| {
                    LoadError::Link {
                        component: second.name.clone(),
                        message: format!("{e:#}"),
                    }
                })?;
                reports.push(r1);
                reports.push(r2);
                Kind::TwoStep(p1, p2)
            }
            _ => {
                return Err(LoadError::Other {
                    component: spec.name.clone(),
                    message: "a tool is one component, or two steps".into(),
                });
            }
        };
        let info = self.describe(&spec.name, &kind, &spec.limits)?;
        let parameters: serde_json::Value =
            serde_json::from_str(&info.parameters_schema).map_err(|e| LoadError::Other {
                component: spec.name.clone(),
                message: format!("its parameter schema is not JSON: {e}"),
            })?;
        if info.name != spec.name {
            return Err(LoadError::Other {
                component: spec.name.clone(),
                message: format!(
                    "it describes itself as `{}`; configure it under that name",
                    info.name
                ),
            });
        }
        let tier = floored_tier(&spec.name, tier_of(info.tier), &reports);
        let descriptor = ToolDescriptor {
            name: info.name,
            description: info.description,
            parameters,
            tier,
            profiles: reports.iter().map(|r| r.grant).collect(),
        };
        Ok(LoadedTool {
            descriptor,
            limits: spec.limits,
            load_report: reports,
            kind,
        })
    }

    fn describe(
        &self,
        name: &str,
        kind: &Kind,
        limits: &Limits,
    ) -> Result<bindings::ToolInfo, LoadError> {
        let mut store = self.store(None, limits);
        let other = |e: wasmtime::Error| LoadError::Other {
            component: name.to_string(),
            message: format!("describe failed: {e:#}"),
        };
        match kind {
            Kind::Single(pre) => {
                let inst = pre.instantiate(&mut store).map_err(other)?;
                inst.oxydra_tool_tool()
                    .call_describe(&mut store)
                    .map_err(other)
            }
            Kind::TwoStep(first, second) => {
                let a = first.instantiate(&mut store).map_err(other)?;
                let info = a
                    .oxydra_tool_step()
                    .call_describe(&mut store)
                    .map_err(other)?;
                let mut store2 = self.store(None, limits);
                let b = second.instantiate(&mut store2).map_err(other)?;
                let info2 = b
                    .oxydra_tool_step()
                    .call_describe(&mut store2)
                    .map_err(other)?;
                if info2.name != info.name {
                    return Err(LoadError::Other {
                        component: name.to_string(),
                        message: format!(
                            "its steps disagree on the tool name: `{}` and `{}`",
                            info.name, info2.name
                        ),
                    });
                }
                Ok(info)
            }
        }
    }

    fn store(&self, ws: Option<Arc<Workspace>>, limits: &Limits) -> Store<CallState> {
        let mut store = Store::new(&self.engine, CallState::new(ws, limits));
        store.limiter(|s| &mut s.limiter);
        // Set before instantiation: with epochs on, a zero deadline traps at once.
        store.set_epoch_deadline(limits.deadline_ticks());
        store
    }

    /// Run one call in a fresh store (a trap poisons an instance, so none is reused).
    pub fn call(
        &self,
        tool: &LoadedTool,
        arguments: &str,
        ws: &Arc<Workspace>,
    ) -> Result<String, CallError> {
        self.call_with(tool, arguments, ws, None)
    }

    /// [`ComponentHost::call`], with the delegator a `delegation`-profile tool reaches
    /// through `oxydra:agent/delegate` (other profiles cannot import it).
    pub fn call_with(
        &self,
        tool: &LoadedTool,
        arguments: &str,
        ws: &Arc<Workspace>,
        delegator: Option<Arc<dyn crate::delegation::Delegator>>,
    ) -> Result<String, CallError> {
        let name = &tool.descriptor.name;
        let started = Instant::now();
        let out = match &tool.kind {
            Kind::Single(pre) => {
                let mut store = self.store(Some(ws.clone()), &tool.limits);
                store.data_mut().delegator = delegator;
                let result = pre
                    .instantiate(&mut store)
                    .and_then(|inst| inst.oxydra_tool_tool().call_invoke(&mut store, arguments));
                finish(name, &tool.limits, &mut store, result)
            }
            Kind::TwoStep(first, second) => {
                let op = operation_id();
                tracing::info!(tool = %name, operation = %op, "two-step call: step 1 (vault-read-step)");
                let mut s1 = self.store(Some(ws.clone()), &tool.limits);
                let r1 = first
                    .instantiate(&mut s1)
                    .and_then(|i| i.oxydra_tool_step().call_run(&mut s1, &op, arguments, &[]));
                let out1 = finish(name, &tool.limits, &mut s1, r1)?;
                drop(s1);
                tracing::info!(tool = %name, operation = %op, bytes = out1.data.len(), "two-step call: step 2 (vault-write-step)");
                let mut s2 = self.store(Some(ws.clone()), &tool.limits);
                let r2 = second.instantiate(&mut s2).and_then(|i| {
                    i.oxydra_tool_step()
                        .call_run(&mut s2, &op, arguments, &out1.data)
                });
                finish(name, &tool.limits, &mut s2, r2).map(|o| o.message)
            }
        }?;
        tracing::debug!(tool = %name, elapsed_us = started.elapsed().as_micros() as u64, "call finished");
        if out.len() > tool.limits.max_output_bytes {
            return Err(CallError::OutputTooLarge {
                tool: name.clone(),
                bytes: out.len(),
                limit: tool.limits.max_output_bytes,
            });
        }
        Ok(out)
    }
}

fn operation_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("op-{:x}-{}", nanos, N.fetch_add(1, Ordering::Relaxed))
}

/// Turn a call's outcome into a result, logging the guest's stdout/stderr.
fn finish<T>(
    tool: &str,
    limits: &Limits,
    store: &mut Store<CallState>,
    result: wasmtime::Result<Result<T, ToolError>>,
) -> Result<T, CallError> {
    let state = store.data();
    let stdout = state.stdout.contents();
    let stderr = state.stderr.contents();
    for (stream, bytes) in [("stdout", &stdout), ("stderr", &stderr)] {
        for line in String::from_utf8_lossy(bytes)
            .lines()
            .filter(|l| !l.trim().is_empty())
        {
            tracing::info!(component = %tool, stream, "{line}");
        }
    }
    match result {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(CallError::Tool(e.into())),
        Err(e) => {
            if let Some(wanted) = state.limiter.memory_hit {
                return Err(CallError::Memory {
                    tool: tool.to_string(),
                    wanted_mib: (wanted as u64).div_ceil(1 << 20),
                    limit_mib: limits.memory_mib,
                });
            }
            match e.downcast_ref::<Trap>() {
                Some(Trap::Interrupt) => Err(CallError::Deadline {
                    tool: tool.to_string(),
                    deadline_ms: limits.deadline_ms,
                }),
                Some(trap) => {
                    let said = String::from_utf8_lossy(&stderr).trim().to_string();
                    let detail = if said.is_empty() {
                        String::new()
                    } else {
                        format!(": {said}")
                    };
                    Err(CallError::Trap {
                        tool: tool.to_string(),
                        message: trap.to_string(),
                        detail,
                    })
                }
                None => Err(CallError::Instantiate {
                    tool: tool.to_string(),
                    message: format!("{e:#}"),
                }),
            }
        }
    }
}
