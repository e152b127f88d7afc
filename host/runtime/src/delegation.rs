//! Delegation as a capability: `oxydra:agent/delegate` lets a tool ask the host to run a
//! task as another agent. The runtime cannot run agents (that is the layer above), so it
//! defines this trait and the agent layer plugs in its implementation for each call.

/// What a tool asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct DelegationRequest {
    pub agent: String,
    pub goal: String,
    pub key_facts: Vec<String>,
    pub max_turns: Option<u32>,
    pub max_cost: Option<f64>,
}

/// What the child session really used.
#[derive(Debug, Clone, PartialEq)]
pub struct DelegationOutcome {
    pub answer: String,
    pub turns: u32,
    pub cost: Option<f64>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub session: String,
}

pub trait Delegator: Send + Sync {
    /// Run the request to completion (or its budgets); `Err` is a message for the model.
    fn delegate(&self, request: DelegationRequest) -> Result<DelegationOutcome, String>;
}
