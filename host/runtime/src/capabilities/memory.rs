//! `oxydra:memory/store`: a tool keeps the calling user's notes and the calling
//! session's scratchpad. The runtime keeps none; the layer above passes a [`Memory`]
//! scoped to the turn's user and session for each call (`ComponentHost::call_with`), and
//! only the memory profile links this interface.

use crate::bindings::imports::oxydra::memory::store as wit;
use crate::memory::{Hit, Memory, Note, Query};
use std::sync::Arc;
use wasmtime::component::{HasData, Linker};

/// What a tool is told when its call has no memory.
pub const NO_MEMORY: &str =
    "memory is not available here (memory is disabled in [memory], or this call has no user)";

/// The per-call context of `oxydra:memory/store`: the call's memory, if any.
#[derive(Default)]
pub struct MemoryCtx {
    memory: Option<Arc<dyn Memory>>,
}

impl MemoryCtx {
    pub fn new(memory: Option<Arc<dyn Memory>>) -> MemoryCtx {
        MemoryCtx { memory }
    }

    fn memory(&self) -> Result<&Arc<dyn Memory>, String> {
        self.memory.as_ref().ok_or_else(|| NO_MEMORY.to_string())
    }
}

/// Store data that carries a [`MemoryCtx`].
pub trait MemoryView: Send {
    fn memory(&mut self) -> &mut MemoryCtx;
}

pub struct HasMemory;

impl HasData for HasMemory {
    type Data<'a> = &'a mut MemoryCtx;
}

impl wit::Host for MemoryCtx {
    fn search(&mut self, query: Query) -> Result<Vec<Hit>, String> {
        self.memory()?.search(query)
    }
    fn save(&mut self, content: String, tags: Vec<String>) -> Result<Note, String> {
        self.memory()?.save(content, tags)
    }
    fn update(
        &mut self,
        id: String,
        content: String,
        tags: Option<Vec<String>>,
    ) -> Result<Note, String> {
        self.memory()?.update(id, content, tags)
    }
    fn delete(&mut self, id: String) -> Result<(), String> {
        self.memory()?.delete(id)
    }
    fn scratchpad_read(&mut self) -> Result<Vec<String>, String> {
        self.memory()?.scratchpad_read()
    }
    fn scratchpad_write(&mut self, items: Vec<String>) -> Result<(), String> {
        self.memory()?.scratchpad_write(items)
    }
    fn scratchpad_clear(&mut self) -> Result<(), String> {
        self.memory()?.scratchpad_clear()
    }
}

/// `oxydra:memory/store`.
pub fn add_to_linker<T: MemoryView + 'static>(l: &mut Linker<T>) -> wasmtime::Result<()> {
    wit::add_to_linker::<T, HasMemory>(l, |t| t.memory())
}
