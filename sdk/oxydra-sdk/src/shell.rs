//! Running a command in the shell sidecar through `oxydra:shell/exec`: calling [`run`]
//! makes the component import it, so it needs the `shell` profile. The host forwards the
//! command to the sidecar (a separate container: /shared and /tmp, no vault, no keys, no
//! network); without a sidecar the tool is not registered at all.

use crate::bindings::shell::oxydra::shell::exec;

pub use crate::bindings::shell::oxydra::shell::exec::{Output, Request};

/// Run `req` in the sidecar; an error is a message for the model.
pub fn run(req: &Request) -> Result<Output, String> {
    exec::run(req)
}
