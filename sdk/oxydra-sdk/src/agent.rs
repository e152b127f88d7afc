//! Delegation through `oxydra:agent/delegate`: calling [`delegate`] makes the component
//! import it, so it needs the `delegation` profile.

use crate::bindings::oxydra::agent::delegate;

pub use delegate::{Delegation, Outcome};

/// Ask the host to run `request` as another agent, in a child session.
pub fn delegate(request: &Delegation) -> Result<Outcome, String> {
    delegate::delegate(request)
}
