//! `oxydra:agent/delegate`: a tool asks the host to run a task as another agent. The
//! runtime cannot run agents; the agent layer passes a [`Delegator`] for each call
//! (`ComponentHost::call_with`), and only the delegation profile links this interface.

use crate::bindings::imports::oxydra::agent::delegate;
use crate::bindings::{Delegation, Outcome};
use crate::delegation::{DelegationRequest, Delegator};
use std::sync::Arc;
use wasmtime::component::{HasData, Linker};

/// The per-call context of `oxydra:agent/delegate`: the call's delegator, if any.
#[derive(Default)]
pub struct DelegateCtx {
    delegator: Option<Arc<dyn Delegator>>,
}

impl DelegateCtx {
    pub fn new(delegator: Option<Arc<dyn Delegator>>) -> DelegateCtx {
        DelegateCtx { delegator }
    }
}

/// Store data that carries a [`DelegateCtx`].
pub trait DelegateView: Send {
    fn delegate(&mut self) -> &mut DelegateCtx;
}

pub struct HasDelegate;

impl HasData for HasDelegate {
    type Data<'a> = &'a mut DelegateCtx;
}

impl delegate::Host for DelegateCtx {
    fn delegate(&mut self, request: Delegation) -> Result<Outcome, String> {
        let Some(d) = &self.delegator else {
            return Err(
                "delegation is not available here (no agents are configured for this call)".into(),
            );
        };
        let o = d.delegate(DelegationRequest {
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

/// `oxydra:agent/delegate`.
pub fn add_to_linker<T: DelegateView + 'static>(l: &mut Linker<T>) -> wasmtime::Result<()> {
    delegate::add_to_linker::<T, HasDelegate>(l, |t| t.delegate())
}
