//! One turn: a user message in, an answer out, with as many provider calls and tool calls
//! as the model needs within its budgets.
//!
//! Every message is persisted before it is used: the user message before the first
//! provider call, the assistant message before its tool calls run, each tool result
//! before the next provider call. A turn that fails or hits a budget keeps its history.

use crate::budget::add_usage;
pub use crate::budget::{BudgetExceeded, BudgetKeys, BudgetKind, Budgets, Spend};
use crate::catalog::ModelInfo;
use crate::history::{cut_marker, repair_turn};
use crate::scrub::{Scrubber, StreamScrubber};
use oxydra_runtime::delegation::{DelegationOutcome, DelegationRequest, Delegator};
use oxydra_runtime::host::{CallError, Tier};
use oxydra_runtime::llm::types::{
    ContentPart, LlmEvent, LlmFailure, LlmRequest, Message, Reasoning, Role, StopReason,
    TimeoutPhase, ToolCall, ToolChoice, ToolDefinition, Usage,
};
use oxydra_runtime::llm::{CallOptions, CancelFlag, LoadedProvider};
use oxydra_runtime::{CallContext, ComponentHost, LoadedTool, Profile, ToolSource, Workspace};
use oxydra_store::{Store, StoreError, TurnStatus};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

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
    /// Before compacting, this many facts of the turns being condensed were saved as
    /// notes (memory flush).
    MemoryFlush {
        notes: usize,
    },
    /// This many of the oldest turns (after the latest summary) were left out of the
    /// request to fit the context window; the model is told so. Worth a warning.
    ContextTrimmed {
        turns: usize,
    },
    Usage {
        usage: Usage,
        cost: Option<f64>,
    },
}

/// A finished turn. `steps`, `usage` and `cost` include what its delegated tasks spent.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnOutcome {
    pub answer: String,
    pub steps: u32,
    pub usage: Usage,
    pub cost: Option<f64>,
}

/// Cancels a running turn from another thread. Checked before each model call, after
/// each streamed event and between tool calls; a delegated task of the turn stops too.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<std::sync::atomic::AtomicBool>);

impl CancelFlag for CancelToken {
    fn is_cancelled(&self) -> bool {
        CancelToken::is_cancelled(self)
    }
}

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

impl From<LlmFailure> for TurnError {
    fn from(e: LlmFailure) -> Self {
        TurnError::Provider(Box::new(e))
    }
}

/// Why a turn did not finish. Messages state what happened; what to do about it (which
/// flag, which command) is the front end's to say.
#[derive(Debug, thiserror::Error)]
pub enum TurnError {
    #[error("the turn was cancelled; what it produced so far is kept")]
    Cancelled,
    #[error(transparent)]
    Budget(#[from] BudgetExceeded),
    /// Boxed: a provider failure carries its whole story (attempts, the last error), and
    /// a turn's result should stay small.
    #[error(transparent)]
    Provider(Box<LlmFailure>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A turn that did not finish, and what it spent until then (also recorded as the
/// turn's cost in the store): a failed, cancelled or budget-stopped turn still cost money.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct TurnFailure {
    pub error: TurnError,
    pub spent: Spend,
}

/// Default of [`Runtime::max_delegation_depth`].
pub const DEFAULT_MAX_DELEGATION_DEPTH: u32 = 1;
/// Default of [`Runtime::delegation_timeout`].
pub const DEFAULT_DELEGATION_TIMEOUT: Duration = Duration::from_secs(300);

/// Everything a turn needs, shared by all sessions of one runtime.
pub struct Runtime {
    pub host: Arc<ComponentHost>,
    pub provider: LoadedProvider,
    pub model: String,
    pub model_info: Option<ModelInfo>,
    pub max_output_tokens: Option<u32>,
    /// (key, JSON value) options for every request (`oxydra.textual_tool_calls` for a
    /// small local model).
    pub request_options: Vec<(String, String)>,
    pub tools: Vec<Arc<LoadedTool>>,
    /// Tools whose set changes while the runtime runs (MCP servers'): asked at the
    /// start of every turn, after `tools` (a name already there is not taken again).
    pub tool_sources: Vec<Arc<dyn ToolSource>>,
    pub workspace: Arc<Workspace>,
    pub store: Store,
    pub scrubber: Scrubber,
    /// Tokens kept free besides the output (`runtime.context_budget.safety_buffer_tokens`).
    pub safety_buffer_tokens: u64,
    pub fallback_context_tokens: u64,
    pub compaction: Compaction,
    /// Agents a `delegate_to_agent` call may hand work to; `Err` says why one cannot be.
    pub agents: BTreeMap<String, Result<AgentProfile, String>>,
    /// How deep delegated tasks may nest (`runtime.max_delegation_depth`; default
    /// [`DEFAULT_MAX_DELEGATION_DEPTH`] = 1: a child may not delegate again; 0: no
    /// delegation). It bounds every tool granted the delegation capability, whatever its
    /// name: at the limit such tools are not offered, and a call to one is refused.
    pub max_delegation_depth: u32,
    /// Deadline of one delegated task (`runtime.delegation_timeout_secs`; default
    /// [`DEFAULT_DELEGATION_TIMEOUT`] = 300 s): the child's wall time is the least of its
    /// own budget, what the delegating turn has left, and this.
    pub delegation_timeout: Duration,
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
    /// Before turns are condensed, ask the model for the facts in them worth keeping and
    /// save each as a note, when the turn has memory (`[memory]
    /// flush_before_compaction`).
    pub flush_to_memory: bool,
}

const FLUSH_INSTRUCTION: &str = "The part of the conversation above is about to be condensed into a short \
summary. Before that, list the facts in it worth remembering beyond this conversation: the user's preferences \
and personal details, decisions, names, paths, numbers and results that would help later. One fact per line, \
each line starting with \"- \", each fact complete on its own. Reply NONE if there is nothing worth keeping.";

/// At most this many facts are saved by one flush.
const MAX_FLUSHED_FACTS: usize = 20;

const SESSION_SUMMARY_INSTRUCTION: &str = "Summarise this conversation so that it can be found and \
understood later without it: what the user wanted, what was done and decided, the facts, names, paths and \
results that matter, and what was left open. A few sentences; reply with the summary only.";

/// The lines of a flush answer that are facts: `- …` (or `* …`), `NONE` meaning none.
fn facts(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter_map(|l| l.strip_prefix("- ").or_else(|| l.strip_prefix("* ")))
        .map(str::trim)
        .filter(|f| !f.is_empty() && !f.eq_ignore_ascii_case("none"))
        .map(str::to_string)
        .collect()
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

/// The turn being run, as its tool calls and delegated tasks see it.
struct TurnScope {
    session: String,
    turn: i64,
    agent: AgentProfile,
    /// 0 for a session a user started; a delegated task's is its parent's + 1.
    depth: u32,
    started: Instant,
    /// What the turn spent so far, its delegated tasks' included: they add to it.
    spent: Mutex<Spend>,
    cancel: CancelToken,
    /// The front end's per-call services for this turn (its user's jobs, …); each tool
    /// call gets them, with its own delegator added.
    services: CallContext,
}

impl TurnScope {
    fn spent(&self) -> MutexGuard<'_, Spend> {
        // A panic while holding the lock leaves a valid Spend: use it.
        self.spent.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Charge one model call's usage (`step`: it counts as a model call).
    fn charge(&self, usage: &Usage, cost: Option<f64>, step: bool) {
        let mut s = self.spent();
        if step {
            s.steps += 1;
        }
        add_usage(&mut s.usage, usage);
        if let (Some(total), Some(c)) = (s.cost.as_mut(), cost) {
            *total += c;
        }
    }

    fn check(&self, before_call: bool) -> Result<(), TurnError> {
        let spent = *self.spent();
        self.agent
            .budgets
            .check(&spent, self.started.elapsed(), before_call)
            .map_err(TurnError::Budget)
    }
}

/// What a provider call streamed, kept when the stream fails halfway.
#[derive(Default)]
struct Streamed {
    text: String,
    reasoning: Vec<Reasoning>,
    calls: BTreeMap<u32, ToolCall>,
    usage: Usage,
    stop: Option<StopReason>,
}

impl Streamed {
    fn message(self) -> Message {
        Message {
            role: Role::Assistant,
            content: if self.text.is_empty() {
                vec![]
            } else {
                vec![ContentPart::Text(self.text)]
            },
            tool_calls: self.calls.into_values().collect(),
            tool_call_id: None,
            tool_name: None,
            reasoning: self.reasoning,
        }
    }
}

impl Runtime {
    /// The tools `agent` may use at delegation `depth`: at the depth limit, none granted
    /// the delegation capability.
    fn tools_for(&self, agent: &AgentProfile, depth: u32) -> Vec<Arc<LoadedTool>> {
        let mut all = self.tools.clone();
        for source in &self.tool_sources {
            for t in source.tools() {
                if !all.iter().any(|a| a.descriptor.name == t.descriptor.name) {
                    all.push(t);
                }
            }
        }
        all.into_iter()
            .filter(|t| {
                agent
                    .tools
                    .as_ref()
                    .is_none_or(|allow| allow.iter().any(|a| a == &t.descriptor.name))
                    && (depth < self.max_delegation_depth || !delegates(t))
            })
            .collect()
    }

    /// Why a session at `depth` may not delegate.
    fn depth_refusal(&self, depth: u32) -> String {
        if self.max_delegation_depth == 0 {
            "delegation is refused: runtime.max_delegation_depth is 0 (no delegated tasks); do the task yourself".into()
        } else {
            format!(
                "delegation is refused: this session is a delegated task {depth} level(s) deep and runtime.max_delegation_depth is {}, so it cannot hand work on; do the task yourself",
                self.max_delegation_depth
            )
        }
    }

    /// The session's turns after its latest summary, and that summary: read once per
    /// model call (and again only after a compaction wrote a new summary). Each turn is
    /// repaired into history a provider accepts (see [`crate::history`]).
    fn history(&self, session: &str, current_turn: i64) -> Result<History, TurnError> {
        let summary = self.store.latest_summary(session)?;
        let upto = summary.as_ref().map_or(0, |(t, _)| *t);
        let mut by_turn: BTreeMap<i64, Vec<Message>> = BTreeMap::new();
        for m in self.store.messages(session)? {
            if m.turn <= upto {
                continue;
            }
            let msg: Message = serde_json::from_str(&m.body).map_err(|e| {
                StoreError::Db(format!(
                    "message {} of session {session} is unreadable: {e}",
                    m.seq
                ))
            })?;
            by_turn.entry(m.turn).or_default().push(msg);
        }
        let by_turn = by_turn
            .into_iter()
            .map(|(t, msgs)| (t, repair_turn(msgs, t == current_turn)))
            .collect();
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
    /// (a tool call and its result always stay together) and persist the summary. What
    /// the summary costs is charged to the turn (not as a model call of its budget).
    /// Returns whether one was written.
    fn maybe_compact(
        &self,
        scope: &TurnScope,
        definitions: &[ToolDefinition],
        history: &History,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<bool, TurnError> {
        let History { summary, by_turn } = history;
        let current_turn = scope.turn;
        let budget = self.usable_window() as f64;
        let fixed = (scope.agent.system_prompt.len() / 4) as u64
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
            return Ok(false);
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
            return Ok(false);
        };
        if self.compaction.flush_to_memory
            && let Some(memory) = &scope.services.memory
        {
            let turns: Vec<Message> = chosen
                .iter()
                .flat_map(|t| by_turn.get(t).cloned().unwrap_or_default())
                .collect();
            let saved = self.flush_to_memory(scope, memory.as_ref(), definitions, turns)?;
            progress(Progress::MemoryFlush { notes: saved });
        }
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
        let mut streamed = Streamed::default();
        let called = self.call_model(scope, &request, &mut |_| {}, None, &mut streamed);
        let usage = streamed.usage;
        scope.charge(&usage, self.cost_of(&usage), false);
        called?;
        let text = text_of(&streamed.message());
        if text.trim().is_empty() {
            return Err(TurnError::from(LlmFailure::Protocol(
                "the model returned an empty summary while compacting the context".into(),
            )));
        }
        // Written with the previous summary in view, the new one replaces it.
        self.store.save_summary(&scope.session, upto, &text)?;
        progress(Progress::Compaction {
            turns: chosen.len(),
            upto_turn: upto,
        });
        Ok(true)
    }

    /// Ask the model which facts of `turns` are worth keeping and save each as a note
    /// (tag `compaction`); returns how many were saved. A note memory refuses is logged
    /// and skipped: the compaction goes on.
    fn flush_to_memory(
        &self,
        scope: &TurnScope,
        memory: &dyn oxydra_runtime::memory::Memory,
        definitions: &[ToolDefinition],
        turns: Vec<Message>,
    ) -> Result<usize, TurnError> {
        let mut messages = vec![Message::text(
            Role::System,
            "You maintain the long-term memory of an agent. The messages that follow are an earlier part of its conversation.",
        )];
        messages.extend(turns);
        messages.push(Message::text(Role::User, FLUSH_INSTRUCTION));
        let request = LlmRequest {
            model: self.model.clone(),
            messages,
            tools: definitions.to_vec(),
            tool_choice: Some(ToolChoice::None),
            max_output_tokens: Some(self.max_output_tokens.unwrap_or(1024).min(1024)),
            ..Default::default()
        };
        let mut streamed = Streamed::default();
        let called = self.call_model(scope, &request, &mut |_| {}, None, &mut streamed);
        let usage = streamed.usage;
        scope.charge(&usage, self.cost_of(&usage), false);
        called?;
        let text = text_of(&streamed.message());
        let mut saved = 0;
        for fact in facts(&text).into_iter().take(MAX_FLUSHED_FACTS) {
            match memory.save(fact, vec!["compaction".into()]) {
                Ok(_) => saved += 1,
                Err(e) => {
                    tracing::warn!(session = %scope.session, "memory flush: a fact was not saved: {e}")
                }
            }
        }
        Ok(saved)
    }

    /// Summarise what `session` holds (its latest summary and every turn after it) for
    /// memory, as `agent`'s model; returns the summary and what it cost. `None` when the
    /// session has no turns.
    pub fn summarize_session(
        self: &Arc<Self>,
        session: &str,
        agent: &AgentProfile,
    ) -> Result<Option<(String, Spend)>, TurnFailure> {
        let nothing = Spend {
            cost: self.model_info.as_ref().map(|_| 0.0),
            ..Spend::default()
        };
        let fail = |error: TurnError, spent: Spend| TurnFailure { error, spent };
        let history = self
            .history(session, i64::MAX)
            .map_err(|e| fail(e, nothing))?;
        if history.by_turn.is_empty() && history.summary.is_none() {
            return Ok(None);
        }
        let scope = TurnScope {
            session: session.to_string(),
            turn: 0,
            agent: agent.clone(),
            depth: 0,
            started: Instant::now(),
            spent: Mutex::new(nothing),
            cancel: CancelToken::default(),
            services: CallContext::default(),
        };
        let mut messages = vec![Message::text(
            Role::System,
            "You maintain the long-term memory of an agent. The messages that follow are a whole conversation, now closed.",
        )];
        if let Some(s) = &history.summary {
            messages.push(Self::summary_message(s));
        }
        for msgs in history.by_turn.into_values() {
            messages.extend(msgs);
        }
        messages.push(Message::text(Role::User, SESSION_SUMMARY_INSTRUCTION));
        let request = LlmRequest {
            model: self.model.clone(),
            messages,
            tool_choice: Some(ToolChoice::None),
            max_output_tokens: Some(self.max_output_tokens.unwrap_or(1024).min(1024)),
            ..Default::default()
        };
        let mut streamed = Streamed::default();
        let called = self.call_model(&scope, &request, &mut |_| {}, None, &mut streamed);
        let usage = streamed.usage;
        scope.charge(&usage, self.cost_of(&usage), true);
        let spent = *scope.spent();
        called.map_err(|e| fail(e, spent))?;
        let text = text_of(&streamed.message());
        if text.trim().is_empty() {
            return Err(fail(
                TurnError::from(LlmFailure::Protocol(
                    "the model returned an empty summary of the session".into(),
                )),
                spent,
            ));
        }
        Ok(Some((text, spent)))
    }

    /// The history that fits the model's window, after the latest summary: whole turns
    /// are dropped from the oldest (a tool call and its result are never split); the
    /// current turn always stays. When turns are dropped, a note says how many; their
    /// number is returned too.
    fn context(&self, history: History, current_turn: i64) -> (Vec<Message>, usize) {
        let History {
            summary,
            mut by_turn,
        } = history;
        let budget = self.usable_window();
        let mut total: u64 = by_turn.values().flatten().map(estimate_tokens).sum();
        let turns: Vec<i64> = by_turn.keys().copied().collect();
        let mut dropped = 0;
        for t in turns {
            if total <= budget || t == current_turn {
                break;
            }
            if let Some(gone) = by_turn.remove(&t) {
                total -= gone.iter().map(estimate_tokens).sum::<u64>();
                dropped += 1;
            }
        }
        let mut out: Vec<Message> = summary
            .as_ref()
            .map(Self::summary_message)
            .into_iter()
            .collect();
        if dropped > 0 {
            out.push(Message::text(
                Role::System,
                format!("{dropped} earlier turn(s) were left out to fit the context window."),
            ));
        }
        out.extend(by_turn.into_values().flatten());
        (out, dropped)
    }

    fn persist(&self, session: &str, turn: i64, m: &Message) -> Result<(), TurnError> {
        let body = serde_json::to_string(m).map_err(|e| StoreError::Db(e.to_string()))?;
        self.store.append(session, turn, &body)?;
        Ok(())
    }

    fn cost_of(&self, usage: &Usage) -> Option<f64> {
        self.model_info.as_ref().map(|m| m.cost(usage))
    }

    /// Run one turn of `session` for `prompt`.
    pub fn run_turn(
        self: &Arc<Self>,
        session: &str,
        agent: &AgentProfile,
        prompt: &str,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<TurnOutcome, TurnFailure> {
        self.run_turn_cancellable(session, agent, prompt, progress, &CancelToken::default())
    }

    /// [`Runtime::run_turn`], stoppable through `cancel`. Whether it finishes or not, the
    /// store records the turn's status and what it really spent (its delegated tasks'
    /// included); a turn that does not finish returns that spend in [`TurnFailure`].
    pub fn run_turn_cancellable(
        self: &Arc<Self>,
        session: &str,
        agent: &AgentProfile,
        prompt: &str,
        progress: &mut dyn FnMut(Progress),
        cancel: &CancelToken,
    ) -> Result<TurnOutcome, TurnFailure> {
        self.run_turn_with(
            session,
            agent,
            prompt,
            progress,
            cancel,
            CallContext::default(),
        )
    }

    /// [`Runtime::run_turn_cancellable`], whose tool calls reach the per-call services
    /// of `services` (the front end's: the turn's user's jobs scoped to its origin, …).
    /// The delegator is the turn's own; one set in `services` is ignored.
    pub fn run_turn_with(
        self: &Arc<Self>,
        session: &str,
        agent: &AgentProfile,
        prompt: &str,
        progress: &mut dyn FnMut(Progress),
        cancel: &CancelToken,
        services: CallContext,
    ) -> Result<TurnOutcome, TurnFailure> {
        self.run_turn_at(session, agent, prompt, progress, cancel, 0, services)
    }

    // The depth and the services are the turn's own; a struct for them would only move
    // the same eight values around.
    #[allow(clippy::too_many_arguments)]
    fn run_turn_at(
        self: &Arc<Self>,
        session: &str,
        agent: &AgentProfile,
        prompt: &str,
        progress: &mut dyn FnMut(Progress),
        cancel: &CancelToken,
        depth: u32,
        services: CallContext,
    ) -> Result<TurnOutcome, TurnFailure> {
        let nothing = Spend {
            cost: self.model_info.as_ref().map(|_| 0.0),
            ..Spend::default()
        };
        let turn = self.store.begin_turn(session).map_err(|e| TurnFailure {
            error: e.into(),
            spent: nothing,
        })?;
        let scope = Arc::new(TurnScope {
            session: session.to_string(),
            turn,
            agent: agent.clone(),
            depth,
            started: Instant::now(),
            spent: Mutex::new(nothing),
            cancel: cancel.clone(),
            services: CallContext {
                delegator: None,
                ..services
            },
        });
        let result = self.turn_inner(&scope, prompt, progress);
        let spent = *scope.spent();
        let (status, detail) = match &result {
            Ok(_) => (TurnStatus::Completed, String::new()),
            Err(e @ TurnError::Budget(_)) => (TurnStatus::Budget, e.to_string()),
            Err(TurnError::Cancelled) => {
                (TurnStatus::Cancelled, "cancelled by the user".to_string())
            }
            Err(e) => (TurnStatus::Failed, e.to_string()),
        };
        let ended = self
            .store
            .end_turn(session, turn, status, &detail, spent.cost.unwrap_or(0.0));
        match (result, ended) {
            (Err(error), _) => Err(TurnFailure { error, spent }),
            (Ok(_), Err(e)) => Err(TurnFailure {
                error: e.into(),
                spent,
            }),
            (Ok(answer), Ok(())) => Ok(TurnOutcome {
                answer,
                steps: spent.steps,
                usage: spent.usage,
                cost: spent.cost,
            }),
        }
    }

    /// The turn's loop; its answer. What it spends goes to `scope.spent` as it goes.
    fn turn_inner(
        self: &Arc<Self>,
        scope: &Arc<TurnScope>,
        prompt: &str,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<String, TurnError> {
        let (session, turn) = (scope.session.as_str(), scope.turn);
        let cancel = &scope.cancel;
        self.persist(session, turn, &Message::text(Role::User, prompt))?;
        let define = |tools: &[Arc<LoadedTool>]| -> Vec<ToolDefinition> {
            tools
                .iter()
                .map(|t| ToolDefinition {
                    name: t.descriptor.name.clone(),
                    description: t.descriptor.description.clone(),
                    parameters_schema: t.descriptor.parameters.to_string(),
                })
                .collect()
        };
        let mut tools = self.tools_for(&scope.agent, scope.depth);
        let mut definitions = define(&tools);
        loop {
            // A tool source (an MCP server) may have changed its tools since the last
            // call (`tools/list_changed`): the model is offered the current set.
            if !self.tool_sources.is_empty() {
                let now = self.tools_for(&scope.agent, scope.depth);
                let same = now.len() == tools.len()
                    && now.iter().zip(&tools).all(|(a, b)| Arc::ptr_eq(a, b));
                if !same {
                    tools = now;
                    definitions = define(&tools);
                }
            }
            // Before each call: every budget, delegated tasks' spending included.
            scope.check(true)?;
            let history = self.history(session, turn)?;
            let compacted = self.maybe_compact(scope, &definitions, &history, progress)?;
            let history = if compacted {
                self.history(session, turn)?
            } else {
                history
            };
            progress(Progress::ProviderCall {
                step: scope.spent().steps + 1,
                max: scope.agent.budgets.max_steps,
            });
            let mut messages = vec![Message::text(
                Role::System,
                scope.agent.system_prompt.clone(),
            )];
            let (context, trimmed) = self.context(history, turn);
            if trimmed > 0 {
                progress(Progress::ContextTrimmed { turns: trimmed });
            }
            messages.extend(context);
            let request = LlmRequest {
                model: self.model.clone(),
                messages,
                tools: definitions.clone(),
                max_output_tokens: self.max_output_tokens,
                options: self.request_options.clone(),
                ..Default::default()
            };
            if cancel.is_cancelled() {
                return Err(TurnError::Cancelled);
            }
            let mut streamed = Streamed::default();
            let called = self.call_model(scope, &request, progress, Some(cancel), &mut streamed);
            let step_usage = streamed.usage;
            let stop = streamed.stop.clone();
            let step_cost = self.cost_of(&step_usage);
            scope.charge(&step_usage, step_cost, true);
            if let Err(e) = called {
                // Keep what was already said, marked as cut, so the history reads true
                // (and the next turn's user message does not follow this one's).
                if !streamed.text.is_empty() {
                    let why = e.to_string();
                    let mut partial = Message {
                        tool_calls: vec![],
                        ..streamed.message()
                    };
                    partial.content.push(ContentPart::Text(cut_marker(&why)));
                    self.persist(session, turn, &partial)?;
                }
                return Err(e);
            }
            let assistant = streamed.message();
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
            progress(Progress::Usage {
                usage: step_usage,
                cost: step_cost,
            });
            self.persist(session, turn, &assistant)?;
            if let Err(stop) = scope.check(false) {
                // The calls will not run: say so in their results, so the history stays
                // one a provider accepts and reads true.
                for c in &assistant.tool_calls {
                    let result = Message {
                        tool_call_id: Some(c.id.clone()),
                        tool_name: Some(c.name.clone()),
                        ..Message::text(Role::Tool, format!("error: not run: {stop}"))
                    };
                    self.persist(session, turn, &result)?;
                }
                return Err(stop);
            }
            if assistant.tool_calls.is_empty() {
                if stop == Some(StopReason::MaxTokens) {
                    progress(Progress::Text(
                        "\n[the answer was cut at the output token limit]",
                    ));
                }
                return Ok(text_of(&assistant));
            }
            for result in self.dispatch(scope, &tools, &assistant.tool_calls, progress) {
                self.persist(session, turn, &result)?;
            }
            if cancel.is_cancelled() {
                return Err(TurnError::Cancelled);
            }
        }
    }

    /// One provider call, streamed into `out`: deltas go to `progress` as they arrive.
    /// On an error, `out` holds what arrived before it.
    fn call_model(
        &self,
        scope: &TurnScope,
        request: &LlmRequest,
        progress: &mut dyn FnMut(Progress),
        cancel: Option<&CancelToken>,
        out: &mut Streamed,
    ) -> Result<(), TurnError> {
        // Every wait of the call ends at the turn's wall budget, and a cancel reaches a
        // call blocked on the network at once.
        let mut opts = match scope.agent.budgets.wall_time {
            Some(w) => CallOptions::until(
                scope.started + w,
                scope.agent.budgets.keys.wall_time.clone(),
            ),
            None => CallOptions::default(),
        };
        if let Some(c) = cancel {
            opts = opts.cancelled_by(Arc::new(c.clone()));
        }
        let wall = |e: LlmFailure| -> TurnError {
            match (&e, scope.agent.budgets.wall_time) {
                (
                    LlmFailure::Timeout {
                        phase: TimeoutPhase::Deadline,
                        ..
                    },
                    Some(limit),
                ) => TurnError::Budget(BudgetExceeded {
                    kind: BudgetKind::WallTime,
                    used: scope.started.elapsed().as_secs_f64(),
                    limit: limit.as_secs_f64(),
                    key: scope.agent.budgets.keys.wall_time.clone(),
                }),
                (LlmFailure::Cancelled, _) => TurnError::Cancelled,
                _ => TurnError::from(e),
            }
        };
        let completion = self
            .host
            .complete_with(&self.provider, request, &opts)
            .map_err(wall)?;
        // What the model writes is scrubbed before anyone sees it: a configured secret
        // it echoes never reaches the front end or the store.
        let exact = self.scrubber.exact();
        let mut scrub = exact.stream();
        let result = (|| {
            for event in completion {
                if cancel.is_some_and(CancelToken::is_cancelled) {
                    break;
                }
                self.take_event(event.map_err(wall)?, progress, &mut scrub, out);
            }
            Ok(())
        })();
        let rest = scrub.finish();
        if !rest.is_empty() {
            progress(Progress::Text(&rest));
            out.text.push_str(&rest);
        }
        for c in out.calls.values_mut() {
            c.arguments = exact.scrub(&c.arguments);
        }
        result
    }

    fn take_event(
        &self,
        event: LlmEvent,
        progress: &mut dyn FnMut(Progress),
        scrub: &mut StreamScrubber<'_>,
        out: &mut Streamed,
    ) {
        {
            match event {
                LlmEvent::TextDelta(t) => {
                    let t = scrub.push(&t);
                    if !t.is_empty() {
                        progress(Progress::Text(&t));
                        out.text.push_str(&t);
                    }
                }
                LlmEvent::ReasoningDelta(t) => {
                    progress(Progress::Reasoning(&t));
                    match out.reasoning.last_mut() {
                        Some(r) if r.signature.is_none() => r.text.push_str(&t),
                        _ => out.reasoning.push(Reasoning {
                            text: t,
                            ..Default::default()
                        }),
                    }
                }
                LlmEvent::ReasoningSignature(s) => match out.reasoning.last_mut() {
                    Some(r) => r.signature = Some(s),
                    None => out.reasoning.push(Reasoning {
                        signature: Some(s),
                        ..Default::default()
                    }),
                },
                LlmEvent::ToolCallStart { index, id, name } => {
                    out.calls.insert(
                        index,
                        ToolCall {
                            id,
                            name,
                            ..Default::default()
                        },
                    );
                }
                LlmEvent::ToolCallArguments { index, fragment } => {
                    if let Some(c) = out.calls.get_mut(&index) {
                        c.arguments.push_str(&fragment);
                    }
                }
                LlmEvent::ToolCallEnd {
                    index,
                    provider_data,
                } => {
                    if let Some(c) = out.calls.get_mut(&index) {
                        c.provider_data = provider_data;
                    }
                }
                LlmEvent::Usage(u) => out.usage = u,
                LlmEvent::Stop(s) => out.stop = Some(s),
            }
        }
    }

    /// Run the calls: consecutive read-only ones in parallel, the others one at a time;
    /// results come back in call order. A failure becomes a result the model can read.
    fn dispatch(
        self: &Arc<Self>,
        scope: &Arc<TurnScope>,
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
                        .map(|c| s.spawn(|| self.run_tool(scope, find(&c.name), tools, c)))
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
                    .map(|c| self.run_tool(scope, find(&c.name), tools, c))
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

    /// One tool call: its output, whether it succeeded, how long it took. A failure's
    /// output starts with `error:` (which [`crate::history`] relies on).
    fn run_tool(
        self: &Arc<Self>,
        scope: &Arc<TurnScope>,
        tool: Option<Arc<LoadedTool>>,
        tools: &[Arc<LoadedTool>],
        call: &ToolCall,
    ) -> (String, bool, Duration) {
        let started = Instant::now();
        let Some(tool) = tool else {
            if self
                .tools
                .iter()
                .any(|t| t.descriptor.name == call.name && delegates(t))
                && scope.depth >= self.max_delegation_depth
            {
                return (
                    format!("error: {}", self.depth_refusal(scope.depth)),
                    false,
                    started.elapsed(),
                );
            }
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
        if let Err(problem) = crate::args::check(&parsed, &tool.descriptor.parameters) {
            return (
                format!("error: invalid arguments: {problem}"),
                false,
                started.elapsed(),
            );
        }
        let context = CallContext {
            delegator: delegates(&tool).then(|| {
                Arc::new(ChildRunner {
                    runtime: self.clone(),
                    parent: scope.clone(),
                }) as Arc<dyn Delegator>
            }),
            ..scope.services.clone()
        };
        let (text, ok) = match self.host.call_with(&tool, args, &self.workspace, &context) {
            Ok(out) => (out, true),
            Err(CallError::Tool(f)) => (format!("error: {f}"), false),
            Err(e) => (format!("error: {e}"), false),
        };
        let text = self.scrubber.scrub(&text);
        // Keep the marker `crate::history` reads even if scrubbing touched the start.
        let text = if ok || text.starts_with("error:") {
            text
        } else {
            format!("error: {text}")
        };
        (text, ok, started.elapsed())
    }
}

/// Whether `tool` is granted the delegation capability (whatever it is called).
fn delegates(tool: &LoadedTool) -> bool {
    tool.descriptor.profiles.contains(&Profile::Delegation)
}

/// Runs a delegated task as a child session of the configured agent, within what the
/// delegating turn (`parent`) has left, and charges what it spends to that turn.
struct ChildRunner {
    runtime: Arc<Runtime>,
    parent: Arc<TurnScope>,
}

/// Lower `*limit` to `candidate` (and its `key`), if that is lower; whether it was.
fn tighten<T: PartialOrd + Copy>(
    limit: &mut Option<T>,
    key: &mut String,
    candidate: Option<T>,
    candidate_key: &str,
) -> bool {
    match (candidate, *limit) {
        (Some(c), Some(l)) if c >= l => false,
        (Some(c), _) => {
            *limit = Some(c);
            *key = candidate_key.to_string();
            true
        }
        (None, _) => false,
    }
}

impl ChildRunner {
    /// The child's budgets: the least of its own, the call's, and what the parent has
    /// left. Also the kinds bounded by the parent's remainder.
    fn child_budgets(&self, own: &Budgets, req: &DelegationRequest) -> (Budgets, Vec<BudgetKind>) {
        let rt = &self.runtime;
        let parent = &self.parent.agent.budgets;
        let spent = *self.parent.spent();
        let mut b = own.clone();
        let mut inherited = Vec::new();
        if let Some(n) = req.max_turns
            && n < b.max_steps
        {
            b.max_steps = n;
            b.keys.max_steps = "the max_turns of the delegation call".into();
        }
        let left = parent.max_steps.saturating_sub(spent.steps);
        if left < b.max_steps {
            b.max_steps = left;
            b.keys.max_steps = parent.keys.max_steps.clone();
            inherited.push(BudgetKind::ModelCalls);
        }
        let left = parent.max_tokens.map(|m| m.saturating_sub(spent.tokens()));
        if tighten(
            &mut b.max_tokens,
            &mut b.keys.max_tokens,
            left,
            &parent.keys.max_tokens,
        ) {
            inherited.push(BudgetKind::Tokens);
        }
        tighten(
            &mut b.max_cost,
            &mut b.keys.max_cost,
            req.max_cost,
            "the max_cost of the delegation call",
        );
        let left = match (parent.max_cost, spent.cost) {
            (Some(m), Some(c)) => Some((m - c).max(0.0)),
            (m, _) => m,
        };
        if tighten(
            &mut b.max_cost,
            &mut b.keys.max_cost,
            left,
            &parent.keys.max_cost,
        ) {
            inherited.push(BudgetKind::Cost);
        }
        let left = parent
            .wall_time
            .map(|w| w.saturating_sub(self.parent.started.elapsed()));
        if tighten(
            &mut b.wall_time,
            &mut b.keys.wall_time,
            left,
            &parent.keys.wall_time,
        ) {
            inherited.push(BudgetKind::WallTime);
        }
        if tighten(
            &mut b.wall_time,
            &mut b.keys.wall_time,
            Some(rt.delegation_timeout),
            "runtime.delegation_timeout_secs",
        ) {
            inherited.retain(|k| *k != BudgetKind::WallTime);
        }
        (b, inherited)
    }
}

impl Delegator for ChildRunner {
    fn delegate(&self, req: DelegationRequest) -> Result<DelegationOutcome, String> {
        let rt = &self.runtime;
        let depth = self.parent.depth;
        if depth >= rt.max_delegation_depth {
            return Err(rt.depth_refusal(depth));
        }
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
        let (budgets, inherited) = self.child_budgets(&profile.budgets, &req);
        profile.budgets = budgets;
        // `sub-<agent>:<random>`: the colon keeps the id readable through the scrubber
        // (no single long token that looks like a credential).
        let session = format!("sub-{}:{}", req.agent, crate::ids::random_hex(8)?);
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
        let result = rt.run_turn_at(
            &session,
            &profile,
            &prompt,
            &mut |_| {},
            &self.parent.cancel,
            depth + 1,
            // A delegated task acts for the same user and origin as its parent.
            self.parent.services.clone(),
        );
        // What the child spent is the parent's too, finished or not.
        let spent = match &result {
            Ok(o) => Spend {
                steps: o.steps,
                usage: o.usage,
                cost: o.cost,
            },
            Err(f) => f.spent,
        };
        self.parent.spent().add(&spent);
        match result {
            Ok(o) => Ok(DelegationOutcome {
                answer: o.answer,
                turns: o.steps,
                cost: o.cost,
                input_tokens: o.usage.input_tokens,
                output_tokens: o.usage.output_tokens,
                session,
            }),
            Err(f) => {
                let bound = match &f.error {
                    TurnError::Budget(b) if inherited.contains(&b.kind) => {
                        " (a delegated task gets at most what the delegating turn has left)"
                    }
                    _ => "",
                };
                Err(format!(
                    "agent `{}` did not finish (session {session}): {}{bound}",
                    req.agent, f.error
                ))
            }
        }
    }
}
