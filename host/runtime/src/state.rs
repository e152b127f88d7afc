//! What one call's `Store` holds: a locked-down WASI context (no preopens, no
//! environment, no arguments, closed stdin, stdout/stderr captured for the logs), the
//! resource limiter, and the per-call contexts of the capabilities (each capability's
//! host traits live in its own module under `capabilities/`).

use crate::bindings::imports::oxydra::tool;
use crate::capabilities::delegate::{DelegateCtx, DelegateView};
use crate::capabilities::jobs::{JobsCtx, JobsView};
use crate::capabilities::memory::{MemoryCtx, MemoryView};
use crate::capabilities::outbox::{OutboxCtx, OutboxView};
use crate::capabilities::paths::{Workspace, WorkspaceCtx, WorkspaceView};
use crate::capabilities::shell::{ShellCtx, ShellView};
use crate::capabilities::web::{WebAccess, WebCtx, WebView};
use crate::context::CallContext;
use crate::limits::Limits;
use std::sync::Arc;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// Store limits that also remember *which* limit stopped the guest, so the error can
/// say "memory limit" instead of a bare `unreachable` trap.
#[derive(Debug)]
pub struct CallLimiter {
    memory_bytes: usize,
    table_elements: usize,
    instances: usize,
    tables: usize,
    memories: usize,
    pub memory_hit: Option<usize>,
}

impl CallLimiter {
    pub fn new(l: &Limits) -> Self {
        CallLimiter {
            memory_bytes: l.memory_bytes(),
            table_elements: l.table_elements,
            instances: l.instances,
            tables: l.tables,
            memories: l.memories,
            memory_hit: None,
        }
    }
}

impl ResourceLimiter for CallLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.memory_hit = Some(desired);
            // memory.grow returns -1; a Rust guest then aborts, and the call reports the limit.
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= self.table_elements)
    }

    fn instances(&self) -> usize {
        self.instances
    }
    fn tables(&self) -> usize {
        self.tables
    }
    fn memories(&self) -> usize {
        self.memories
    }
}

pub struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub limiter: CallLimiter,
    /// `oxydra:fs/*` and `oxydra:vault/read`; no workspace while a component describes
    /// itself, so no file is reachable then.
    workspace: WorkspaceCtx,
    /// `oxydra:agent/delegate`, set for calls of tools in the delegation profile.
    delegate: DelegateCtx,
    /// `oxydra:scheduler/jobs`, set for calls of tools in the scheduler profile.
    jobs: JobsCtx,
    /// `oxydra:memory/store`, set for calls of tools in the memory profile.
    memory: MemoryCtx,
    /// `oxydra:channel/outbox`, set for calls of tools in the chat-media profile.
    outbox: OutboxCtx,
    /// `oxydra:shell/exec`: the process's shell sidecar, when it has one.
    shell: ShellCtx,
    /// `wasi:http` through the web egress policy and `oxydra:tool/settings`, for calls
    /// of tools in the `web` profile (no access otherwise: every request refused).
    web: WebCtx,
    pub stdout: MemoryOutputPipe,
    pub stderr: MemoryOutputPipe,
}

impl CallState {
    pub fn new(
        workspace: Option<Arc<Workspace>>,
        context: &CallContext,
        web: &CallWeb,
        limits: &Limits,
    ) -> Self {
        let stdout = MemoryOutputPipe::new(limits.log_bytes);
        let stderr = MemoryOutputPipe::new(limits.log_bytes);
        // Defaults already mean: no args, no env, no preopens, stdin closed, sockets denied.
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .build();
        // No command runs while a component describes itself (it has no workspace then).
        let in_call = workspace.is_some();
        CallState {
            wasi,
            table: ResourceTable::new(),
            limiter: CallLimiter::new(limits),
            workspace: WorkspaceCtx::new(workspace),
            delegate: DelegateCtx::new(context.delegator.clone()),
            jobs: JobsCtx::new(context.jobs.clone()),
            memory: MemoryCtx::new(context.memory.clone()),
            outbox: OutboxCtx::new(context.outbox.clone()),
            shell: ShellCtx::new(in_call),
            web: WebCtx::new(web.access.clone(), web.settings.clone()),
            stdout,
            stderr,
        }
    }
}

impl crate::kernel::Limited for CallState {
    fn limiter(&mut self) -> &mut CallLimiter {
        &mut self.limiter
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WorkspaceView for CallState {
    fn workspace(&mut self) -> &mut WorkspaceCtx {
        &mut self.workspace
    }
}

impl DelegateView for CallState {
    fn delegate(&mut self) -> &mut DelegateCtx {
        &mut self.delegate
    }
}

impl OutboxView for CallState {
    fn outbox(&mut self) -> &mut OutboxCtx {
        &mut self.outbox
    }
}

impl ShellView for CallState {
    fn shell(&mut self) -> &mut ShellCtx {
        &mut self.shell
    }
}

impl JobsView for CallState {
    fn jobs(&mut self) -> &mut JobsCtx {
        &mut self.jobs
    }
}

impl MemoryView for CallState {
    fn memory(&mut self) -> &mut MemoryCtx {
        &mut self.memory
    }
}

impl wasmtime_wasi_http::WasiHttpView for CallState {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        crate::capabilities::web::http_view(&mut self.web, &mut self.table)
    }
}

impl WebView for CallState {
    fn web(&mut self) -> &mut WebCtx {
        &mut self.web
    }
}

/// A tool's web access and settings, handed to each of its calls.
#[derive(Debug, Clone, Default)]
pub struct CallWeb {
    pub access: Option<Arc<WebAccess>>,
    pub settings: Option<Arc<str>>,
}

/// `oxydra:tool/types`: types only; every tool linker has it.
impl tool::types::Host for CallState {}
