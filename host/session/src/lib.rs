//! The session service: the one composition root every front end uses.
//!
//! - [`compose`]: layered config → a running [`System`] (engine, tools, providers, agents
//!   and their budgets);
//! - [`SessionService`]: one user's sessions — create, list, resolve by id prefix, resume
//!   after a restart, one actor per live session with one active turn, a per-user cap on
//!   concurrent turns with a FIFO queue, turn events as subscriptions, cancel one or all,
//!   archive idle sessions.
//!
//! Errors are typed ([`SetupError`], [`ServiceError`], the turn loop's `TurnError`); only
//! the front end that shows one turns it into advice.

pub mod compose;
pub mod config;
pub mod error;
pub mod events;
pub mod local;
pub mod mcp;
pub mod memory;
pub mod origin;
pub mod providers;
pub mod registry;
pub mod scheduler;
pub mod service;
pub mod telegram;
pub mod tools;

pub use compose::System;
pub use error::{ServiceError, SetupError};
pub use events::{Notice, Subscription, TryRecv, TurnEvent, TurnSnapshot, TurnSummary, Waker};
pub use origin::{Notifier, Notifiers, Origin};
pub use service::{
    Attached, ServiceOptions, SessionInfo, SessionService, SubmitOptions, TurnLimits,
    new_session_id, new_turn_id,
};
