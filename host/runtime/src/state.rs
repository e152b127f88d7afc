//! What one call's `Store` holds: a locked-down WASI context (no preopens, no
//! environment, no arguments, closed stdin, stdout/stderr captured for the logs), the
//! resource limiter, and the capabilities the component's profile links.

use crate::bindings::imports::oxydra::{agent, fs, tool, vault};
use crate::bindings::{Delegation, Entry, FsError, Metadata, Outcome, VaultError};
use crate::capabilities::{self, paths::PathError, paths::Workspace};
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
    /// `None` while a component describes itself: no file is reachable then.
    workspace: Option<Arc<Workspace>>,
    pub stdout: MemoryOutputPipe,
    pub stderr: MemoryOutputPipe,
    /// Set for calls of tools in the delegation profile.
    pub delegator: Option<std::sync::Arc<dyn crate::delegation::Delegator>>,
}

impl CallState {
    pub fn new(workspace: Option<Arc<Workspace>>, limits: &Limits) -> Self {
        let stdout = MemoryOutputPipe::new(limits.log_bytes);
        let stderr = MemoryOutputPipe::new(limits.log_bytes);
        // Defaults already mean: no args, no env, no preopens, stdin closed, sockets denied.
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .build();
        CallState {
            wasi,
            table: ResourceTable::new(),
            limiter: CallLimiter::new(limits),
            workspace,
            stdout,
            stderr,
            delegator: None,
        }
    }
}

impl CallState {
    fn ws(&self) -> Result<&Workspace, PathError> {
        self.workspace.as_deref().ok_or_else(|| PathError::Denied {
            path: String::new(),
            root: "none".into(),
            reason: "no workspace is attached while a component describes itself".into(),
        })
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

impl tool::types::Host for CallState {}
impl fs::types::Host for CallState {}

impl fs::read::Host for CallState {
    fn read_file(&mut self, path: String, max_bytes: u64) -> Result<Vec<u8>, FsError> {
        Ok(capabilities::fs::read_file(self.ws()?, &path, max_bytes)?)
    }
    fn list_dir(&mut self, path: String) -> Result<Vec<Entry>, FsError> {
        Ok(capabilities::fs::list_dir(self.ws()?, &path)?)
    }
    fn stat(&mut self, path: String) -> Result<Metadata, FsError> {
        Ok(capabilities::fs::stat(self.ws()?, &path)?)
    }
}

impl fs::write::Host for CallState {
    fn write_file(&mut self, path: String, data: Vec<u8>) -> Result<(), FsError> {
        Ok(capabilities::fs::write_file(self.ws()?, &path, &data)?)
    }
    fn remove(&mut self, path: String) -> Result<(), FsError> {
        Ok(capabilities::fs::remove(self.ws()?, &path)?)
    }
    fn create_dir(&mut self, path: String) -> Result<(), FsError> {
        Ok(capabilities::fs::create_dir(self.ws()?, &path)?)
    }
}

impl vault::read::Host for CallState {
    fn read_file(&mut self, path: String, max_bytes: u64) -> Result<Vec<u8>, VaultError> {
        Ok(capabilities::vault::read_file(
            self.ws()?,
            &path,
            max_bytes,
        )?)
    }
}

impl agent::delegate::Host for CallState {
    fn delegate(&mut self, request: Delegation) -> Result<Outcome, String> {
        let Some(d) = &self.delegator else {
            return Err(
                "delegation is not available here (no agents are configured for this call)".into(),
            );
        };
        let o = d.delegate(crate::delegation::DelegationRequest {
            agent: request.agent,
            goal: request.goal,
            key_facts: request.key_facts,
            max_turns: request.max_turns,
            max_cost: request.max_cost,
        })?;
        Ok(Outcome {
            answer: o.answer,
            turns: o.turns,
            cost: o.cost,
            input_tokens: o.input_tokens,
            output_tokens: o.output_tokens,
            session: o.session,
        })
    }
}
