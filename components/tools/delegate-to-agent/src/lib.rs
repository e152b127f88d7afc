//! `delegate_to_agent` (profile delegation): the host runs the task as another agent in
//! a child session, with that agent's prompt, tools and budgets, and reports what it used.

use oxydra_sdk::agent::{self, Delegation};
use oxydra_sdk::{ToolError, tool};

/// Hand a self-contained task to one of the specialist agents listed in your
/// instructions. It works in its own session with its own tools and budgets and returns
/// its answer with the model calls and cost it used. Give it everything it needs in
/// `goal` and `key_facts`: it does not see this conversation.
#[tool(tier = "side-effecting")]
fn delegate_to_agent(
    /// Name of the agent (from [agents] in the configuration)
    #[arg(min_length = 1)]
    agent_name: String,
    /// The task, stated completely
    #[arg(min_length = 1)]
    goal: String,
    /// Facts the agent needs
    key_facts: Option<Vec<String>>,
    /// At most this many model calls (the agent's own limit applies too)
    #[arg(minimum = 1)]
    max_turns: Option<u32>,
    /// At most this much money in US dollars (the agent's own limit applies too)
    #[arg(minimum = 0)]
    max_cost: Option<f64>,
) -> Result<String, ToolError> {
    let request = Delegation {
        agent: agent_name.clone(),
        goal,
        key_facts: key_facts.unwrap_or_default(),
        max_turns,
        max_cost,
    };
    let o = agent::delegate(&request).map_err(ToolError::Failed)?;
    let cost = o.cost.map(|c| format!(", ${c:.6}")).unwrap_or_default();
    Ok(format!(
        "{}\n\n[{agent_name} used {} model call(s), {} input + {} output tokens{cost}; session {}]",
        o.answer, o.turns, o.input_tokens, o.output_tokens, o.session
    ))
}

oxydra_sdk::export_tool!(DelegateToAgent);
