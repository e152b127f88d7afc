//! The agent layer: the pinned model catalog (context windows, output limits,
//! capabilities, prices), the turn loop with its budgets, and delegation to other agents.

pub mod args;
pub mod budget;
pub mod catalog;
pub mod history;
pub mod ids;
pub mod money;
pub mod scrub;
pub mod turn;
