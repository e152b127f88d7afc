//! One turn: a user message in, an answer out, with as many provider calls and tool calls
//! as the model needs within its budgets.
//!
//! Every message is persisted before it is used: the user message before the first
//! provider call, the assistant message before its tool calls run, each tool result
//! before the next provider call. A turn that fails or hits a budget keeps its history.

use crate::catalog::ModelInfo;
use crate::scrub::Scrubber;
use oxydra_runtime::delegation::{DelegationOutcome, DelegationRequest, Delegator};
use oxydra_runtime::host::{CallError, Tier};
use oxydra_runtime::llm::LoadedProvider;
use oxydra_runtime::llm::types::{
    ContentPart, LlmEvent, LlmFailure, LlmRequest, Message, Reasoning, Role, StopReason, ToolCall,
    ToolChoice, ToolDefinition, Usage,
};
use oxydra_runtime::{ComponentHost, LoadedTool, Workspace};
use oxydra_store::{Store, TurnStatus};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one turn may spend. Hitting any of them ends the turn with a message naming it.
#[derive(Debug, Clone)]
pub struct Budgets {
    /// Provider calls in one turn (`runtime.max_turns`).
    pub max_steps: u32,
    /// Input + output tokens over the turn.
    pub max_tokens: Option<u64>,
    /// Money (US dollars) over the turn, from the catalog's prices.
    pub max_cost: Option<f64>,
    pub wall_time: Option<Duration>,
}

/// The agent a session runs: its prompt, the tools it may use, its budgets.
#[derive(Debug, Clone)]
pub struct AgentProfile {
    pub name: String,
    pub system_prompt: String,
    /// `None`: every loaded tool.
    pub tools: Option<Vec<String>>,
    pub budgets: Budgets,
}

/// What front ends show while a turn runs.
#[derive(Debug)]
pub enum Progress<'a> {
    ProviderCall {
        step: u32,
        max: u32,
    },
    Text(&'a str),
    Reasoning(&'a str),
    ToolStart {
        name: &'a str,
        arguments: &'a str,
    },
    ToolEnd {
        name: &'a str,
        elapsed: Duration,
        ok: bool,
    },
    /// Older turns were summarised by the model to fit the context window.
    Compaction {
        turns: usize,
        upto_turn: i64,
    },
    Usage {
        usage: Usage,
        cost: Option<f64>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct TurnOutcome {
    pub answer: String,
    pub steps: u32,
    pub usage: Usage,
    pub cost: Option<f64>,
}

/// Cancels a running turn from another thread. Checked before each model call, after
/// each streamed event and between tool calls.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<std::sync::atomic::AtomicBool>);

impl CancelToken {
    pub fn cancel(&self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
    pub fn reset(&self) {
        self.0.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TurnError {
    #[error("the turn was cancelled; what it produced so far is kept")]
    Cancelled,
    #[error("{0}")]
    Budget(String),
    #[error("{0}")]
    Provider(String),
    #[error("{0}")]
    Store(String),
}

impl From<oxydra_store::StoreError> for TurnError {
    fn from(e: oxydra_store::StoreError) -> Self {
        TurnError::Store(e.to_string())
    }
}

/// Everything a turn needs, shared by all sessions of one runtime.
pub struct Runtime {
    pub host: Arc<ComponentHost>,
    pub provider: LoadedProvider,
    pub model: String,
    pub model_info: Option<ModelInfo>,
    pub max_output_tokens: Option<u32>,
    pub tools: Vec<Arc<LoadedTool>>,
    pub workspace: Arc<Workspace>,
    pub store: Store,
    pub scrubber: Scrubber,
    /// Tokens kept free besides the output (`runtime.context_budget.safety_buffer_tokens`).
    pub safety_buffer_tokens: u64,
    pub fallback_context_tokens: u64,
    pub compaction: Compaction,
    /// Agents a `delegate_to_agent` call may hand work to; `Err` says why one cannot be.
    pub agents: BTreeMap<String, Result<AgentProfile, String>>,
}

/// A session's history as the context is built from it.
struct History {
    summary: Option<(i64, String)>,
    by_turn: BTreeMap<i64, Vec<Message>>,
}

/// When and how far to compact (`[runtime.context_budget]`, `[runtime.summarization]`).
#[derive(Debug, Clone, Copy)]
pub struct Compaction {
    /// Compact when the context passes this share of the usable window.
    pub trigger_ratio: f64,
    /// Summarise old turns until the context is below this share.
    pub target_ratio: f64,
    /// Only when the session has at least this many earlier turns.
    pub min_turns: u32,
}

const SUMMARY_INSTRUCTION: &str = "Summarise the conversation above for your own later use: the user's goals, \
facts learned, file paths and names, decisions, results of tool calls, and what is still open. Be complete but \
brief. Reply with the summary only.";

/// Rough tokens of a message: 4 characters a token, plus overhead.
fn estimate_tokens(m: &Message) -> u64 {
    let chars: usize = m
        .content
        .iter()
        .map(|c| match c {
            ContentPart::Text(t) => t.len(),
            ContentPart::Image { .. } => 4000,
        })
        .sum::<usize>()
        + m.tool_calls
            .iter()
            .map(|c| c.arguments.len() + c.name.len())
            .sum::<usize>()
        + m.reasoning.iter().map(|r| r.text.len()).sum::<usize>();
    (chars / 4) as u64 + 8
}

fn text_of(m: &Message) -> String {
    m.content
        .iter()
        .filter_map(|c| {
            if let ContentPart::Text(t) = c {
                Some(t.as_str())
            } else {
                None
            }
        })
        .collect()
}

impl Runtime {
    fn tools_for(&self, agent: &AgentProfile) -> Vec<Arc<LoadedTool>> {
        self.tools
            .iter()
            .filter(|t| {
                agent
                    .tools
                    .as_ref()
                    .is_none_or(|allow| allow.iter().any(|a| a == &t.descriptor.name))
            })
            .cloned()
            .collect()
    }

    /// The session's turns after its latest summary, and that summary: read once per
    /// model call (and again only after a compaction wrote a new summary).
    fn history(&self, session: &str) -> Result<History, TurnError> {
        let summary = self.store.latest_summary(session)?;
        let upto = summary.as_ref().map_or(0, |(t, _)| *t);
        let mut by_turn: BTreeMap<i64, Vec<Message>> = BTreeMap::new();
        for m in self.store.messages(session)? {
            if m.turn <= upto {
                continue;
            }
            let msg: Message = serde_json::from_str(&m.body).map_err(|e| {
                TurnError::Store(format!(
                    "message {} of session {session} is unreadable: {e}",
                    m.seq
                ))
            })?;
            by_turn.entry(m.turn).or_default().push(msg);
        }
        Ok(History { summary, by_turn })
    }

    /// Context tokens left after the output and the safety buffer.
    fn usable_window(&self) -> u64 {
        let window = self
            .model_info
            .as_ref()
            .map_or(self.fallback_context_tokens, |m| m.context_window);
        window.saturating_sub(
            u64::from(self.max_output_tokens.unwrap_or(4096)) + self.safety_buffer_tokens,
        )
    }

    fn summary_message(summary: &(i64, String)) -> Message {
        Message::text(
            Role::System,
            format!(
                "Summary of the conversation before turn {}:\n{}",
                summary.0 + 1,
                summary.1
            ),
        )
    }

    /// If the context passes the trigger, have the model summarise the oldest whole turns
    /// (a tool call and its result always stay together) and persist the summary.
    /// Returns what the summary cost, and whether one was written.
    fn maybe_compact(
        &self,
        session: &str,
        current_turn: i64,
        agent: &AgentProfile,
        definitions: &[ToolDefinition],
        history: &History,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<(Usage, bool), TurnError> {
        let History { summary, by_turn } = history;
        let budget = self.usable_window() as f64;
        let fixed = (agent.system_prompt.len() / 4) as u64
            + summary.as_ref().map_or(0, |s| (s.1.len() / 4) as u64);
        let sizes: Vec<(i64, u64)> = by_turn
            .iter()
            .map(|(t, ms)| (*t, ms.iter().map(estimate_tokens).sum()))
            .collect();
        let total = fixed + sizes.iter().map(|(_, n)| n).sum::<u64>();
        let earlier = sizes.iter().filter(|(t, _)| *t != current_turn).count();
        if (total as f64) <= self.compaction.trigger_ratio * budget
            || earlier < self.compaction.min_turns.max(1) as usize
        {
            return Ok((Usage::default(), false));
        }
        let mut remaining = total;
        let mut chosen = Vec::new();
        for (t, n) in &sizes {
            if *t == current_turn || (remaining as f64) <= self.compaction.target_ratio * budget {
                break;
            }
            chosen.push(*t);
            remaining -= n;
        }
        let Some(&upto) = chosen.last() else {
            return Ok((Usage::default(), false));
        };
        let mut messages = vec![Message::text(
            Role::System,
            "You maintain the working memory of an agent. The messages that follow are an earlier part of its conversation.",
        )];
        if let Some(s) = &summary {
            messages.push(Self::summary_message(s));
        }
        for t in &chosen {
            messages.extend(by_turn.get(t).cloned().unwrap_or_default());
        }
        messages.push(Message::text(Role::User, SUMMARY_INSTRUCTION));
        let request = LlmRequest {
            model: self.model.clone(),
            messages,
            tools: definitions.to_vec(),
            tool_choice: Some(ToolChoice::None),
            max_output_tokens: Some(self.max_output_tokens.unwrap_or(2048).min(2048)),
            ..Default::default()
        };
        let (reply, usage, _) = self.call_model(&request, &mut |_| {}, None)?;
        let text = text_of(&reply);
        if text.trim().is_empty() {
            return Err(TurnError::Provider(
                "the model returned an empty summary while compacting the context".into(),
            ));
        }
        // Written with the previous summary in view, the new one replaces it.
        self.store.save_summary(session, upto, &text)?;
        progress(Progress::Compaction {
            turns: chosen.len(),
            upto_turn: upto,
        });
        Ok((usage, true))
    }

    /// The history that fits the model's window, after the latest summary: whole turns
    /// are dropped from the oldest (a tool call and its result are never split); the
    /// current turn always stays.
    fn context(&self, history: History, current_turn: i64) -> Vec<Message> {
        let History {
            summary,
            mut by_turn,
        } = history;
        let budget = self.usable_window();
        let mut total: u64 = by_turn.values().flatten().map(estimate_tokens).sum();
        let turns: Vec<i64> = by_turn.keys().copied().collect();
        for t in turns {
            if total <= budget || t == current_turn {
                break;
            }
            if let Some(dropped) = by_turn.remove(&t) {
                total -= dropped.iter().map(estimate_tokens).sum::<u64>();
            }
        }
        let mut out: Vec<Message> = summary
            .as_ref()
            .map(Self::summary_message)
            .into_iter()
            .collect();
        out.extend(by_turn.into_values().flatten());
        out
    }

    fn persist(&self, session: &str, turn: i64, m: &Message) -> Result<(), TurnError> {
        let body = serde_json::to_string(m).map_err(|e| TurnError::Store(e.to_string()))?;
        self.store.append(session, turn, &body)?;
        Ok(())
    }

    /// Run one turn of `session` for `prompt`.
    pub fn run_turn(
        self: &Arc<Self>,
        session: &str,
        agent: &AgentProfile,
        prompt: &str,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<TurnOutcome, TurnError> {
        self.run_turn_cancellable(session, agent, prompt, progress, &CancelToken::default())
    }

    /// [`Runtime::run_turn`], stoppable through `cancel`.
    pub fn run_turn_cancellable(
        self: &Arc<Self>,
        session: &str,
        agent: &AgentProfile,
        prompt: &str,
        progress: &mut dyn FnMut(Progress),
        cancel: &CancelToken,
    ) -> Result<TurnOutcome, TurnError> {
        let turn = self.store.begin_turn(session)?;
        let result = self.turn_inner(session, turn, agent, prompt, progress, cancel);
        let (status, detail, cost) = match &result {
            Ok(o) => (TurnStatus::Completed, String::new(), o.cost.unwrap_or(0.0)),
            Err(TurnError::Budget(m)) => (TurnStatus::Budget, m.clone(), 0.0),
            Err(TurnError::Cancelled) => (
                TurnStatus::Cancelled,
                "cancelled by the user".to_string(),
                0.0,
            ),
            Err(e) => (TurnStatus::Failed, e.to_string(), 0.0),
        };
        self.store.end_turn(session, turn, status, &detail, cost)?;
        result
    }

    fn turn_inner(
        self: &Arc<Self>,
        session: &str,
        turn: i64,
        agent: &AgentProfile,
        prompt: &str,
        progress: &mut dyn FnMut(Progress),
        cancel: &CancelToken,
    ) -> Result<TurnOutcome, TurnError> {
        let started = Instant::now();
        self.persist(session, turn, &Message::text(Role::User, prompt))?;
        let tools = self.tools_for(agent);
        let definitions: Vec<ToolDefinition> = tools
            .iter()
            .map(|t| ToolDefinition {
                name: t.descriptor.name.clone(),
                description: t.descriptor.description.clone(),
                parameters_schema: t.descriptor.parameters.to_string(),
            })
            .collect();
        let b = &agent.budgets;
        let mut usage = Usage::default();
        let mut cost: Option<f64> = self.model_info.as_ref().map(|_| 0.0);
        let mut step = 0u32;
        loop {
            if step >= b.max_steps {
                return Err(TurnError::Budget(format!(
                    "the turn stopped: it used its {} model calls (max_turns); raise runtime.max_turns (or agents.{}.max_turns), then continue with --session {session}",
                    b.max_steps, agent.name
                )));
            }
            if let Some(limit) = b.wall_time
                && started.elapsed() > limit
            {
                return Err(TurnError::Budget(format!(
                    "the turn stopped: it ran past its wall-time budget of {} s; continue with --session {session}",
                    limit.as_secs()
                )));
            }
            step += 1;
            let history = self.history(session)?;
            let (compaction_usage, compacted) =
                self.maybe_compact(session, turn, agent, &definitions, &history, progress)?;
            let history = if compacted {
                self.history(session)?
            } else {
                history
            };
            usage.input_tokens += compaction_usage.input_tokens;
            usage.output_tokens += compaction_usage.output_tokens;
            if let (Some(c), Some(m)) = (cost.as_mut(), self.model_info.as_ref()) {
                *c += m.cost(&compaction_usage);
            }
            progress(Progress::ProviderCall {
                step,
                max: b.max_steps,
            });
            let mut messages = vec![Message::text(Role::System, agent.system_prompt.clone())];
            messages.extend(self.context(history, turn));
            let request = LlmRequest {
                model: self.model.clone(),
                messages,
                tools: definitions.clone(),
                max_output_tokens: self.max_output_tokens,
                ..Default::default()
            };
            if cancel.is_cancelled() {
                return Err(TurnError::Cancelled);
            }
            let (assistant, step_usage, stop) =
                self.call_model(&request, progress, Some(cancel))?;
            if cancel.is_cancelled() {
                // Keep what was said; drop half-made tool calls, which have no results.
                let partial = Message {
                    tool_calls: vec![],
                    ..assistant
                };
                if !partial.content.is_empty() {
                    self.persist(session, turn, &partial)?;
                }
                return Err(TurnError::Cancelled);
            }
            usage.input_tokens += step_usage.input_tokens;
            usage.output_tokens += step_usage.output_tokens;
            usage.cached_tokens += step_usage.cached_tokens;
            usage.reasoning_tokens += step_usage.reasoning_tokens;
            let step_cost = self.model_info.as_ref().map(|m| m.cost(&step_usage));
            if let (Some(c), Some(s)) = (cost.as_mut(), step_cost) {
                *c += s;
            }
            progress(Progress::Usage {
                usage: step_usage,
                cost: step_cost,
            });
            self.persist(session, turn, &assistant)?;

            if let Some(max) = b.max_tokens
                && usage.input_tokens + usage.output_tokens > max
            {
                return Err(TurnError::Budget(format!(
                    "the turn stopped: it used {} tokens, over its budget of {max}; raise the token budget, then continue with --session {session}",
                    usage.input_tokens + usage.output_tokens
                )));
            }
            if let (Some(max), Some(spent)) = (b.max_cost, cost)
                && spent > max
            {
                return Err(TurnError::Budget(format!(
                    "the turn stopped: it cost ${spent:.4}, over its budget of ${max:.4}; raise runtime.max_cost (or agents.{}.max_cost), then continue with --session {session}",
                    agent.name
                )));
            }
            if assistant.tool_calls.is_empty() {
                if stop == Some(StopReason::MaxTokens) {
                    progress(Progress::Text(
                        "\n[the answer was cut at the output token limit]",
                    ));
                }
                return Ok(TurnOutcome {
                    answer: text_of(&assistant),
                    steps: step,
                    usage,
                    cost,
                });
            }
            for result in self.dispatch(&tools, &assistant.tool_calls, progress) {
                self.persist(session, turn, &result)?;
            }
            if cancel.is_cancelled() {
                return Err(TurnError::Cancelled);
            }
        }
    }

    /// One provider call, streamed: deltas go to `progress` as they arrive.
    fn call_model(
        &self,
        request: &LlmRequest,
        progress: &mut dyn FnMut(Progress),
        cancel: Option<&CancelToken>,
    ) -> Result<(Message, Usage, Option<StopReason>), TurnError> {
        let completion = self
            .host
            .complete(&self.provider, request)
            .map_err(provider_error)?;
        let mut text = String::new();
        let mut reasoning: Vec<Reasoning> = Vec::new();
        let mut calls: BTreeMap<u32, ToolCall> = BTreeMap::new();
        let mut usage = Usage::default();
        let mut stop = None;
        for event in completion {
            if cancel.is_some_and(CancelToken::is_cancelled) {
                break;
            }
            match event.map_err(provider_error)? {
                LlmEvent::TextDelta(t) => {
                    progress(Progress::Text(&t));
                    text.push_str(&t);
                }
                LlmEvent::ReasoningDelta(t) => {
                    progress(Progress::Reasoning(&t));
                    match reasoning.last_mut() {
                        Some(r) if r.signature.is_none() => r.text.push_str(&t),
                        _ => reasoning.push(Reasoning {
                            text: t,
                            ..Default::default()
                        }),
                    }
                }
                LlmEvent::ReasoningSignature(s) => match reasoning.last_mut() {
                    Some(r) => r.signature = Some(s),
                    None => reasoning.push(Reasoning {
                        signature: Some(s),
                        ..Default::default()
                    }),
                },
                LlmEvent::ToolCallStart { index, id, name } => {
                    calls.insert(
                        index,
                        ToolCall {
                            id,
                            name,
                            ..Default::default()
                        },
                    );
                }
                LlmEvent::ToolCallArguments { index, fragment } => {
                    if let Some(c) = calls.get_mut(&index) {
                        c.arguments.push_str(&fragment);
                    }
                }
                LlmEvent::ToolCallEnd {
                    index,
                    provider_data,
                } => {
                    if let Some(c) = calls.get_mut(&index) {
                        c.provider_data = provider_data;
                    }
                }
                LlmEvent::Usage(u) => usage = u,
                LlmEvent::Stop(s) => stop = Some(s),
            }
        }
        let message = Message {
            role: Role::Assistant,
            content: if text.is_empty() {
                vec![]
            } else {
                vec![ContentPart::Text(text)]
            },
            tool_calls: calls.into_values().collect(),
            tool_call_id: None,
            tool_name: None,
            reasoning,
        };
        Ok((message, usage, stop))
    }

    /// Run the calls: consecutive read-only ones in parallel, the others one at a time;
    /// results come back in call order. A failure becomes a result the model can read.
    fn dispatch(
        self: &Arc<Self>,
        tools: &[Arc<LoadedTool>],
        calls: &[ToolCall],
        progress: &mut dyn FnMut(Progress),
    ) -> Vec<Message> {
        let find = |name: &str| tools.iter().find(|t| t.descriptor.name == name).cloned();
        let mut results = Vec::with_capacity(calls.len());
        let mut i = 0;
        while i < calls.len() {
            let read_only =
                |c: &ToolCall| find(&c.name).is_some_and(|t| t.descriptor.tier == Tier::ReadOnly);
            let mut j = i + 1;
            if read_only(&calls[i]) {
                while j < calls.len() && read_only(&calls[j]) {
                    j += 1;
                }
            }
            let batch = &calls[i..j];
            for c in batch {
                progress(Progress::ToolStart {
                    name: &c.name,
                    arguments: &c.arguments,
                });
            }
            let outputs: Vec<(String, bool, Duration)> = if batch.len() > 1 {
                std::thread::scope(|s| {
                    let handles: Vec<_> = batch
                        .iter()
                        .map(|c| s.spawn(|| self.run_tool(find(&c.name), tools, c)))
                        .collect();
                    handles
                        .into_iter()
                        .map(|h| {
                            h.join().unwrap_or_else(|_| {
                                (
                                    "error: the tool call crashed the host thread".into(),
                                    false,
                                    Duration::ZERO,
                                )
                            })
                        })
                        .collect()
                })
            } else {
                batch
                    .iter()
                    .map(|c| self.run_tool(find(&c.name), tools, c))
                    .collect()
            };
            for (c, (text, ok, elapsed)) in batch.iter().zip(outputs) {
                progress(Progress::ToolEnd {
                    name: &c.name,
                    elapsed,
                    ok,
                });
                results.push(Message {
                    tool_call_id: Some(c.id.clone()),
                    tool_name: Some(c.name.clone()),
                    ..Message::text(Role::Tool, text)
                });
            }
            i = j;
        }
        results
    }

    fn run_tool(
        self: &Arc<Self>,
        tool: Option<Arc<LoadedTool>>,
        tools: &[Arc<LoadedTool>],
        call: &ToolCall,
    ) -> (String, bool, Duration) {
        let started = Instant::now();
        let Some(tool) = tool else {
            let names: Vec<&str> = tools.iter().map(|t| t.descriptor.name.as_str()).collect();
            return (
                format!(
                    "error: there is no tool `{}`; the tools are: {}",
                    call.name,
                    names.join(", ")
                ),
                false,
                started.elapsed(),
            );
        };
        let args = if call.arguments.trim().is_empty() {
            "{}"
        } else {
            call.arguments.as_str()
        };
        // Checked here against the schema the tool declared, whatever it was built with;
        // a failure goes back to the model so it can correct the call.
        let parsed = match serde_json::from_str::<serde_json::Value>(args) {
            Ok(v) => v,
            Err(e) => {
                return (
                    format!("error: the arguments are not valid JSON ({e}); send a JSON object"),
                    false,
                    started.elapsed(),
                );
            }
        };
        if let Err(problem) = oxydra_schema::validate(&parsed, &tool.descriptor.parameters) {
            return (
                format!("error: invalid arguments: {problem}"),
                false,
                started.elapsed(),
            );
        }
        let delegator: Option<Arc<dyn Delegator>> = tool
            .descriptor
            .profiles
            .contains(&oxydra_runtime::Profile::Delegation)
            .then(|| {
                Arc::new(ChildRunner {
                    runtime: self.clone(),
                }) as Arc<dyn Delegator>
            });
        let (text, ok) = match self.host.call_with(&tool, args, &self.workspace, delegator) {
            Ok(out) => (out, true),
            Err(CallError::Tool(f)) => (format!("error: {f}"), false),
            Err(e) => (format!("error: {e}"), false),
        };
        (self.scrubber.scrub(&text), ok, started.elapsed())
    }
}

fn provider_error(e: LlmFailure) -> TurnError {
    TurnError::Provider(e.to_string())
}

/// Runs a delegated task as a child session of the configured agent.
struct ChildRunner {
    runtime: Arc<Runtime>,
}

static CHILD_COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Delegator for ChildRunner {
    fn delegate(&self, req: DelegationRequest) -> Result<DelegationOutcome, String> {
        let rt = &self.runtime;
        let mut profile = match rt.agents.get(&req.agent) {
            Some(Ok(p)) => p.clone(),
            Some(Err(why)) => return Err(why.clone()),
            None => {
                let names: Vec<&str> = rt.agents.keys().map(String::as_str).collect();
                return Err(format!(
                    "there is no agent `{}`; the agents are: {}",
                    req.agent,
                    names.join(", ")
                ));
            }
        };
        // One level: a child cannot delegate again.
        let allowed: Vec<String> = match profile.tools.take() {
            Some(list) => list,
            None => rt.tools.iter().map(|t| t.descriptor.name.clone()).collect(),
        };
        profile.tools = Some(
            allowed
                .into_iter()
                .filter(|t| t != "delegate_to_agent")
                .collect(),
        );
        if let Some(n) = req.max_turns {
            profile.budgets.max_steps = profile.budgets.max_steps.min(n);
        }
        if let Some(c) = req.max_cost {
            profile.budgets.max_cost = Some(profile.budgets.max_cost.map_or(c, |own| own.min(c)));
        }
        let n = CHILD_COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let session = format!("sub-{}-{nanos:08x}{n}", req.agent);
        rt.store
            .create_session(&session, &req.agent)
            .map_err(|e| e.to_string())?;
        let mut prompt = req.goal.clone();
        if !req.key_facts.is_empty() {
            prompt.push_str("\n\nKey facts:\n");
            for f in &req.key_facts {
                prompt.push_str(&format!("- {f}\n"));
            }
        }
        match rt.run_turn(&session, &profile, &prompt, &mut |_| {}) {
            Ok(o) => Ok(DelegationOutcome {
                answer: o.answer,
                turns: o.steps,
                cost: o.cost,
                input_tokens: o.usage.input_tokens,
                output_tokens: o.usage.output_tokens,
                session,
            }),
            Err(e) => Err(format!(
                "agent `{}` did not finish (session {session}): {e}",
                req.agent
            )),
        }
    }
}
