//! The agent layer. Today: the pinned model catalog (context windows, output limits,
//! capabilities, prices) that config validation, request defaults and money budgets use.

pub mod catalog;
pub mod scrub;
pub mod turn;
