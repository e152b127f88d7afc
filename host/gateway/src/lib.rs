//! The WebSocket gateway (`oxydra-host serve`): protocol version 3 over `/ws`, the user's
//! token, one [`oxydra_session::SessionService`] client per connection.
//!
//! - [`protocol`]: the frames, shared with clients (the TUI);
//! - [`token`]: the user's gateway token and endpoint files;
//! - [`Gateway`]: bind, serve until shut down.

mod convert;
pub mod protocol;
mod server;
pub mod token;

pub use server::{Gateway, GatewayOptions, HELLO_TIMEOUT};
