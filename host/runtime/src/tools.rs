//! The tool kind: tools (one component, or two steps) loaded through the core on their
//! profile's linker, described once, and called in a fresh store per call.

use crate::bindings::step::StepExportPre;
use crate::bindings::tool::ToolExportPre;
use crate::bindings::{self, ToolError};
use crate::capabilities::paths::Workspace;
use crate::context::CallContext;
use crate::kernel::{self, Checked, ComponentReport, ComponentSpec, Core, Stop};
use crate::limits::Limits;
use crate::linker::Linkers;
use crate::profiles::{ExportKind, LoadError, Profile, Tier};
use crate::state::{CallState, CallWeb};
use std::sync::Arc;
use std::time::Instant;
use wasmtime::component::{Component, InstancePre};
use wasmtime::{Engine, Store};

/// A tool as the rest of the host sees it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ToolDescriptor {
    pub name: String,
    pub description: String,
    pub parameters: serde_json::Value,
    pub tier: Tier,
    /// One profile per component (two for a two-step tool); none for an external tool.
    pub profiles: Vec<Profile>,
    /// Where an external tool comes from (`mcp:<server>`); `None` for a component.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// A tool that is not a component: served by a process the host talks to (an MCP
/// server). The host checks its arguments against its schema, bounds its output and
/// scrubs it like any tool's; `call` runs on the turn's blocking thread.
pub trait ExternalTool: Send + Sync {
    /// The tool's output, or its failure; `deadline` is the tool's `deadline_ms`.
    fn call(&self, arguments: &str, deadline: std::time::Duration) -> Result<String, CallError>;
}

/// Tools whose set changes while the host runs (an MCP server's `tools/list_changed`):
/// asked for the current list at every model call.
pub trait ToolSource: Send + Sync {
    fn tools(&self) -> Vec<Arc<LoadedTool>>;
}

/// A tool made of one component, or of two steps run in separate instances.
#[derive(Debug, Clone)]
pub struct ToolSpec {
    pub name: String,
    pub components: Vec<ComponentSpec>,
    pub limits: Limits,
    /// What a `web`-profile tool may reach, and the tool's settings
    /// (`oxydra:tool/settings`); default: no web access, settings `{}`.
    pub web: CallWeb,
}

enum Kind {
    Single(ToolExportPre<CallState>),
    TwoStep(StepExportPre<CallState>, StepExportPre<CallState>),
    External(Arc<dyn ExternalTool>),
}

pub struct LoadedTool {
    pub descriptor: ToolDescriptor,
    pub limits: Limits,
    pub load_report: Vec<ComponentReport>,
    web: CallWeb,
    kind: Kind,
}

impl LoadedTool {
    /// An external tool under `descriptor` (its `source` set) and `limits`.
    pub fn external(
        descriptor: ToolDescriptor,
        limits: Limits,
        tool: Arc<dyn ExternalTool>,
    ) -> LoadedTool {
        LoadedTool {
            descriptor,
            limits,
            load_report: Vec::new(),
            web: CallWeb::default(),
            kind: Kind::External(tool),
        }
    }

    /// The web policy this tool's calls are held to (`None`: no web access).
    pub fn web_policy(&self) -> Option<&crate::capabilities::web::policy::Policy> {
        self.web.access.as_deref().map(|a| &a.policy)
    }
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

/// The tool kind: one linker per tool profile, and the tool store state [`CallState`].
pub(crate) struct Tools {
    linkers: Linkers,
}

impl Tools {
    pub fn new(engine: &Engine) -> wasmtime::Result<Tools> {
        Ok(Tools {
            linkers: Linkers::new(engine)?,
        })
    }

    fn instance_pre(
        &self,
        spec: &ComponentSpec,
        component: &Component,
    ) -> Result<InstancePre<CallState>, LoadError> {
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

    /// Pre-instantiate a checked component on its grant's linker, typed by `typed`.
    fn link<P>(
        &self,
        spec: &ComponentSpec,
        checked: &Checked,
        typed: impl FnOnce(InstancePre<CallState>) -> wasmtime::Result<P>,
    ) -> Result<P, LoadError> {
        typed(self.instance_pre(spec, &checked.component)?).map_err(|e| LoadError::Link {
            component: spec.name.clone(),
            message: format!("{e:#}"),
        })
    }

    /// Load a tool: check every component against its grant, pre-instantiate it on its
    /// profile's linker, and ask it to describe itself.
    pub fn load(&self, core: &Core, spec: &ToolSpec) -> Result<LoadedTool, LoadError> {
        spec.limits.validate().map_err(|m| LoadError::Other {
            component: spec.name.clone(),
            message: format!("limits: {m}"),
        })?;
        let mut reports = Vec::new();
        let kind = match spec.components.as_slice() {
            [one] => {
                let checked = core.load(one)?;
                let pre = self.link(one, &checked, ToolExportPre::new)?;
                reports.push(checked.report);
                Kind::Single(pre)
            }
            [first, second] => {
                let c1 = core.load(first)?;
                let c2 = core.load(second)?;
                for r in [&c1.report, &c2.report] {
                    if r.shape.export != ExportKind::Step {
                        return Err(LoadError::Exports {
                            component: r.name.clone(),
                            problem:
                                "is part of a two-step tool but does not export oxydra:tool/step"
                                    .into(),
                        });
                    }
                }
                let p1 = self.link(first, &c1, StepExportPre::new)?;
                let p2 = self.link(second, &c2, StepExportPre::new)?;
                reports.push(c1.report);
                reports.push(c2.report);
                Kind::TwoStep(p1, p2)
            }
            _ => {
                return Err(LoadError::Other {
                    component: spec.name.clone(),
                    message: "a tool is one component, or two steps".into(),
                });
            }
        };
        let info = self.describe(core, &spec.name, &kind, &spec.limits)?;
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
            source: None,
        };
        Ok(LoadedTool {
            descriptor,
            limits: spec.limits,
            load_report: reports,
            web: spec.web.clone(),
            kind,
        })
    }

    fn describe(
        &self,
        core: &Core,
        name: &str,
        kind: &Kind,
        limits: &Limits,
    ) -> Result<bindings::ToolInfo, LoadError> {
        let mut store = new_store(
            core,
            None,
            &CallContext::default(),
            &CallWeb::default(),
            limits,
        );
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
                let mut store2 = new_store(
                    core,
                    None,
                    &CallContext::default(),
                    &CallWeb::default(),
                    limits,
                );
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
            Kind::External(_) => Err(LoadError::Other {
                component: name.to_string(),
                message: "an external tool describes itself where it is made".into(),
            }),
        }
    }

    /// Run one call in a fresh store (a trap poisons an instance, so none is reused),
    /// with the per-call services of `context` (each reachable only by a profile whose
    /// linker has its interface).
    pub fn call(
        &self,
        core: &Core,
        tool: &LoadedTool,
        arguments: &str,
        ws: &Arc<Workspace>,
        context: &CallContext,
    ) -> Result<String, CallError> {
        let name = &tool.descriptor.name;
        let started = Instant::now();
        let out = match &tool.kind {
            Kind::Single(pre) => {
                let mut store = new_store(core, Some(ws.clone()), context, &tool.web, &tool.limits);
                let result = pre
                    .instantiate(&mut store)
                    .and_then(|inst| inst.oxydra_tool_tool().call_invoke(&mut store, arguments));
                finish(name, &tool.limits, &mut store, result)
            }
            Kind::TwoStep(first, second) => {
                let op = operation_id();
                tracing::info!(tool = %name, operation = %op, "two-step call: step 1 (vault-read-step)");
                let mut s1 = new_store(
                    core,
                    Some(ws.clone()),
                    &CallContext::default(),
                    &CallWeb::default(),
                    &tool.limits,
                );
                let r1 = first
                    .instantiate(&mut s1)
                    .and_then(|i| i.oxydra_tool_step().call_run(&mut s1, &op, arguments, &[]));
                let out1 = finish(name, &tool.limits, &mut s1, r1)?;
                drop(s1);
                tracing::info!(tool = %name, operation = %op, bytes = out1.data.len(), "two-step call: step 2 (vault-write-step)");
                let mut s2 = new_store(
                    core,
                    Some(ws.clone()),
                    &CallContext::default(),
                    &CallWeb::default(),
                    &tool.limits,
                );
                let r2 = second.instantiate(&mut s2).and_then(|i| {
                    i.oxydra_tool_step()
                        .call_run(&mut s2, &op, arguments, &out1.data)
                });
                finish(name, &tool.limits, &mut s2, r2).map(|o| o.message)
            }
            Kind::External(t) => t.call(
                arguments,
                std::time::Duration::from_millis(tool.limits.deadline_ms),
            ),
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

fn new_store(
    core: &Core,
    ws: Option<Arc<Workspace>>,
    context: &CallContext,
    web: &CallWeb,
    limits: &Limits,
) -> Store<CallState> {
    core.store(
        CallState::new(ws, context, web, limits),
        limits.deadline_ticks(),
    )
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
    let e = match result {
        Ok(Ok(v)) => return Ok(v),
        Ok(Err(e)) => return Err(CallError::Tool(e.into())),
        Err(e) => e,
    };
    let tool = tool.to_string();
    Err(match kernel::classify(&e, &state.limiter) {
        Stop::Memory { wanted_bytes } => CallError::Memory {
            tool,
            wanted_mib: (wanted_bytes as u64).div_ceil(1 << 20),
            limit_mib: limits.memory_mib,
        },
        Stop::Deadline => CallError::Deadline {
            tool,
            deadline_ms: limits.deadline_ms,
        },
        Stop::Trap(trap) => CallError::Trap {
            tool,
            message: trap.to_string(),
            detail: kernel::said(&stderr),
        },
        Stop::Host => CallError::Instantiate {
            tool,
            message: format!("{e:#}"),
        },
    })
}
