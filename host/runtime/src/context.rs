//! The per-call context: the services of the layer above that one tool call may reach,
//! each behind the capability that gives access to it. The runtime cannot run agents or
//! keep jobs; the agent layer hands in implementations for each call
//! (`ComponentHost::call_with`), and only a profile whose linker has the capability's
//! interface can use a field. A field left `None` makes its interface answer "not
//! available here".

use crate::channels::Outbox;
use crate::delegation::Delegator;
use crate::memory::Memory;
use crate::scheduling::Jobs;
use std::sync::Arc;

/// What one tool call may reach beyond its workspace. Named optional fields, one per
/// per-call service; build it with `..CallContext::default()` so a new field needs no
/// change at existing call sites.
#[derive(Clone, Default)]
pub struct CallContext {
    /// `oxydra:agent/delegate` (profile `delegation`): run a task as another agent.
    pub delegator: Option<Arc<dyn Delegator>>,
    /// `oxydra:scheduler/jobs` (profile `scheduler`): the turn's user's jobs, with the
    /// turn's origin for the jobs it creates.
    pub jobs: Option<Arc<dyn Jobs>>,
    /// `oxydra:channel/outbox` (profile `chat-media`): the chat of the calling turn.
    pub outbox: Option<Arc<dyn Outbox>>,
    /// `oxydra:memory/store` (profile `memory`): the turn's user's notes and
    /// conversations, and the turn's session's scratchpad.
    pub memory: Option<Arc<dyn Memory>>,
}

impl std::fmt::Debug for CallContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallContext")
            .field("delegator", &self.delegator.is_some())
            .field("jobs", &self.jobs.is_some())
            .field("outbox", &self.outbox.is_some())
            .field("memory", &self.memory.is_some())
            .finish()
    }
}
