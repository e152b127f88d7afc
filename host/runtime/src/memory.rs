//! Memory as a capability: `oxydra:memory/store` lets a tool keep the calling user's
//! notes, search them (and the user's earlier conversations), and keep the calling
//! session's scratchpad. The runtime keeps no memory (the session layer does); it
//! defines this trait, and the layer above passes an implementation scoped to the turn's
//! user and session for each call ([`crate::CallContext::memory`]).

pub use crate::bindings::memory::{Hit, Note, Query, Source};

/// The calling user's memory (and the calling session's scratchpad). Every `Err` is a
/// message for the model naming the field and the limit.
pub trait Memory: Send + Sync {
    fn search(&self, query: Query) -> Result<Vec<Hit>, String>;
    fn save(&self, content: String, tags: Vec<String>) -> Result<Note, String>;
    fn update(
        &self,
        id: String,
        content: String,
        tags: Option<Vec<String>>,
    ) -> Result<Note, String>;
    fn delete(&self, id: String) -> Result<(), String>;
    fn scratchpad_read(&self) -> Result<Vec<String>, String>;
    fn scratchpad_write(&self, items: Vec<String>) -> Result<(), String>;
    fn scratchpad_clear(&self) -> Result<(), String>;
}
