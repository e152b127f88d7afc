//! What a turn may spend, what it spent, and the typed error when it spends too much.

use crate::money::{format_money_pair, format_secs_pair};
use oxydra_runtime::llm::types::Usage;
use std::fmt;
use std::time::Duration;

/// What one turn may spend. Hitting any of them ends the turn with
/// [`crate::turn::TurnError::Budget`] naming the budget's configuration key.
#[derive(Debug, Clone)]
pub struct Budgets {
    /// Provider calls in one turn, its delegated tasks' included.
    pub max_steps: u32,
    /// Input + output tokens over the turn, its delegated tasks' included.
    pub max_tokens: Option<u64>,
    /// Money (US dollars) over the turn, from the catalog's prices, its delegated tasks'
    /// included.
    pub max_cost: Option<f64>,
    pub wall_time: Option<Duration>,
    /// The configuration key that set each budget, named when it stops a turn.
    pub keys: BudgetKeys,
}

/// Which configuration key set each budget of [`Budgets`] (e.g. `runtime.max_turns`,
/// `agents.coder.max_turns`). [`BudgetKeys::default`] is the `runtime.*` keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetKeys {
    pub max_steps: String,
    pub max_tokens: String,
    pub max_cost: String,
    pub wall_time: String,
}

impl Default for BudgetKeys {
    fn default() -> Self {
        BudgetKeys {
            max_steps: "runtime.max_turns".into(),
            max_tokens: "runtime.max_tokens".into(),
            max_cost: "runtime.max_cost".into(),
            wall_time: "runtime.max_wall_secs".into(),
        }
    }
}

impl BudgetKeys {
    pub fn key(&self, kind: BudgetKind) -> &str {
        match kind {
            BudgetKind::ModelCalls => &self.max_steps,
            BudgetKind::Tokens => &self.max_tokens,
            BudgetKind::Cost => &self.max_cost,
            BudgetKind::WallTime => &self.wall_time,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BudgetKind {
    ModelCalls,
    Tokens,
    /// US dollars.
    Cost,
    /// Seconds.
    WallTime,
}

/// A budget a turn ran out of: how much it used (model calls, tokens, US dollars or
/// seconds, by `kind`), the limit, and the configuration key that set the limit.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetExceeded {
    pub kind: BudgetKind,
    pub used: f64,
    pub limit: f64,
    pub key: String,
}

impl fmt::Display for BudgetExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = &self.key;
        match self.kind {
            BudgetKind::ModelCalls => write!(
                f,
                "the turn stopped after {} model call(s): {key} allows {}",
                self.used, self.limit
            ),
            BudgetKind::Tokens => write!(
                f,
                "the turn stopped: it used {} tokens, over the {} allowed by {key}",
                self.used, self.limit
            ),
            BudgetKind::Cost => {
                let (used, limit) = format_money_pair(self.used, self.limit);
                write!(
                    f,
                    "the turn stopped: it cost {used}, over the {limit} allowed by {key}"
                )
            }
            BudgetKind::WallTime => {
                let (used, limit) = format_secs_pair(self.used, self.limit);
                write!(
                    f,
                    "the turn stopped: it ran {used} s, past the {limit} s allowed by {key}"
                )
            }
        }
    }
}

impl std::error::Error for BudgetExceeded {}

/// What a turn spent: model calls, tokens and money (`None` when the model has no price
/// in the catalog), its delegated tasks' included.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Spend {
    pub steps: u32,
    pub usage: Usage,
    pub cost: Option<f64>,
}

impl Spend {
    pub fn tokens(&self) -> u64 {
        self.usage.input_tokens + self.usage.output_tokens
    }

    pub fn add(&mut self, other: &Spend) {
        self.steps += other.steps;
        add_usage(&mut self.usage, &other.usage);
        self.cost = match (self.cost, other.cost) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
    }
}

pub(crate) fn add_usage(to: &mut Usage, u: &Usage) {
    to.input_tokens += u.input_tokens;
    to.output_tokens += u.output_tokens;
    to.cached_tokens += u.cached_tokens;
    to.reasoning_tokens += u.reasoning_tokens;
}

impl Budgets {
    /// The first budget `spent` is past. `before_call`: also the ones that stop the next
    /// model call (all model calls used, wall time past).
    pub(crate) fn check(
        &self,
        spent: &Spend,
        elapsed: Duration,
        before_call: bool,
    ) -> Result<(), BudgetExceeded> {
        let over = |kind, used: f64, limit: f64| BudgetExceeded {
            kind,
            used,
            limit,
            key: self.keys.key(kind).to_string(),
        };
        if before_call && spent.steps >= self.max_steps {
            return Err(over(
                BudgetKind::ModelCalls,
                f64::from(spent.steps),
                f64::from(self.max_steps),
            ));
        }
        if before_call
            && let Some(limit) = self.wall_time
            && elapsed > limit
        {
            return Err(over(
                BudgetKind::WallTime,
                elapsed.as_secs_f64(),
                limit.as_secs_f64(),
            ));
        }
        if let Some(max) = self.max_tokens
            && spent.tokens() > max
        {
            return Err(over(BudgetKind::Tokens, spent.tokens() as f64, max as f64));
        }
        if let (Some(max), Some(cost)) = (self.max_cost, spent.cost)
            && cost > max
        {
            return Err(over(BudgetKind::Cost, cost, max));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(kind: BudgetKind, used: f64, limit: f64, key: &str) -> String {
        BudgetExceeded {
            kind,
            used,
            limit,
            key: key.into(),
        }
        .to_string()
    }

    #[test]
    fn messages_name_the_key_and_readable_amounts() {
        assert_eq!(
            e(BudgetKind::ModelCalls, 3.0, 3.0, "agents.coder.max_turns"),
            "the turn stopped after 3 model call(s): agents.coder.max_turns allows 3"
        );
        assert_eq!(
            e(BudgetKind::Tokens, 1200.0, 1000.0, "runtime.max_tokens"),
            "the turn stopped: it used 1200 tokens, over the 1000 allowed by runtime.max_tokens"
        );
        assert_eq!(
            e(BudgetKind::Cost, 0.000031, 0.00003, "runtime.max_cost"),
            "the turn stopped: it cost $0.000031, over the $0.000030 allowed by runtime.max_cost"
        );
        assert_eq!(
            e(BudgetKind::WallTime, 1.52, 1.0, "runtime.max_wall_secs"),
            "the turn stopped: it ran 1.5 s, past the 1.0 s allowed by runtime.max_wall_secs"
        );
        for m in [
            e(BudgetKind::Cost, 0.00004, 0.00003, "runtime.max_cost"),
            e(BudgetKind::ModelCalls, 1.0, 1.0, "runtime.max_turns"),
        ] {
            assert!(!m.contains("--session") && !m.contains("$0.0000 "), "{m}");
        }
    }
}
