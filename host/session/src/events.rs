//! Turn events as a subscription. Every subscriber of a session receives the same ordered
//! stream; a subscriber that falls behind never slows the turn: past its buffer its queued
//! events are replaced by one [`TurnEvent::Lagged`] carrying the latest state, and the
//! stream goes on from there.

use oxydra_agent::turn::{Progress, TurnFailure, TurnOutcome};
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// How a turn ended, as every subscriber sees it.
#[derive(Debug, Clone)]
pub struct TurnSummary {
    pub session: String,
    /// The id [`crate::SessionService::submit`] gave the turn.
    pub turn_id: String,
    /// A failure carries what the turn spent before it ended.
    pub outcome: Result<TurnOutcome, Arc<TurnFailure>>,
}

/// What a late or lagging subscriber needs to catch up: the active turn so far, and the
/// last turn that ended.
#[derive(Debug, Clone, Default)]
pub struct TurnSnapshot {
    pub session: String,
    /// The active turn's id (or the last turn's, when none is active).
    pub turn_id: Option<String>,
    /// A turn is queued or running.
    pub active: bool,
    /// Position in the user's turn queue while waiting (1 = next).
    pub queued: Option<usize>,
    /// The answer streamed so far in the active turn.
    pub text: String,
    /// Model calls made so far in the active turn.
    pub step: u32,
    /// Tools running now.
    pub tools_running: Vec<String>,
    pub last: Option<TurnSummary>,
}

/// A message for a session's followers that belongs to no turn of it: a scheduled job's
/// result or failure, for the session the job was created in.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub job_id: String,
    pub job_name: String,
    pub run_id: String,
    pub message: String,
}

#[derive(Debug, Clone)]
pub enum TurnEvent {
    /// First event of a subscription made with [`crate::SessionService::subscribe`].
    Snapshot(TurnSnapshot),
    /// The turn waits for one of the user's turn slots (`gateway.max_concurrent_turns_per_user`).
    Queued {
        turn_id: String,
        position: usize,
    },
    /// A turn starts; every event up to the next [`TurnEvent::Finished`] belongs to it.
    Started {
        turn_id: String,
    },
    ProviderCall {
        step: u32,
        max: u32,
    },
    Text(String),
    Reasoning(String),
    ToolStart {
        name: String,
        arguments: String,
    },
    ToolEnd {
        name: String,
        elapsed: Duration,
        ok: bool,
    },
    Compaction {
        turns: usize,
        upto_turn: i64,
    },
    /// Whole earlier turns were left out of the context to fit the window.
    ContextTrimmed {
        turns: usize,
    },
    Usage {
        input_tokens: u64,
        output_tokens: u64,
        cost: Option<f64>,
    },
    /// The terminal event of a turn.
    Finished(TurnSummary),
    /// Not part of any turn (it may come between turns or during one): see [`Notice`].
    Notice(Notice),
    /// This subscriber fell behind by `missed` events; `state` is where the turn is now.
    Lagged {
        missed: u64,
        state: TurnSnapshot,
    },
}

impl TurnEvent {
    /// The owned event for a turn loop's progress report; `None` for what front ends
    /// need not see.
    pub fn of(p: Progress) -> Option<TurnEvent> {
        Some(match p {
            Progress::ProviderCall { step, max } => TurnEvent::ProviderCall { step, max },
            Progress::Text(t) => TurnEvent::Text(t.to_string()),
            Progress::Reasoning(t) => TurnEvent::Reasoning(t.to_string()),
            Progress::ToolStart { name, arguments } => TurnEvent::ToolStart {
                name: name.to_string(),
                arguments: arguments.to_string(),
            },
            Progress::ToolEnd { name, elapsed, ok } => TurnEvent::ToolEnd {
                name: name.to_string(),
                elapsed,
                ok,
            },
            Progress::Compaction { turns, upto_turn } => TurnEvent::Compaction { turns, upto_turn },
            Progress::ContextTrimmed { turns } => TurnEvent::ContextTrimmed { turns },
            // Logged, not shown: the compaction event that follows is.
            Progress::MemoryFlush { notes } => {
                tracing::info!("memory: saved {notes} fact(s) before condensing earlier turns");
                return None;
            }
            Progress::Usage { usage, cost } => TurnEvent::Usage {
                input_tokens: usage.input_tokens,
                output_tokens: usage.output_tokens,
                cost,
            },
        })
    }

    pub fn is_terminal(&self) -> bool {
        matches!(self, TurnEvent::Finished(_))
    }
}

impl TurnSnapshot {
    /// Fold one event into the state.
    pub(crate) fn apply(&mut self, e: &TurnEvent) {
        match e {
            TurnEvent::Queued { turn_id, position } => {
                self.active = true;
                self.turn_id = Some(turn_id.clone());
                self.queued = Some(*position);
            }
            TurnEvent::Started { turn_id } => {
                self.active = true;
                self.turn_id = Some(turn_id.clone());
                self.queued = None;
                self.text.clear();
                self.step = 0;
                self.tools_running.clear();
            }
            TurnEvent::ProviderCall { step, .. } => self.step = *step,
            TurnEvent::Text(t) => self.text.push_str(t),
            TurnEvent::ToolStart { name, .. } => self.tools_running.push(name.clone()),
            TurnEvent::ToolEnd { name, .. } => {
                if let Some(i) = self.tools_running.iter().position(|n| n == name) {
                    self.tools_running.remove(i);
                }
            }
            TurnEvent::Finished(s) => {
                self.active = false;
                self.queued = None;
                self.tools_running.clear();
                // The answer is in `last`: an idle session keeps it once.
                self.text.clear();
                self.last = Some(s.clone());
            }
            TurnEvent::Snapshot(_)
            | TurnEvent::Lagged { .. }
            | TurnEvent::Reasoning(_)
            | TurnEvent::Compaction { .. }
            | TurnEvent::ContextTrimmed { .. }
            | TurnEvent::Notice(_)
            | TurnEvent::Usage { .. } => {}
        }
    }
}

#[derive(Debug, Default)]
struct QueueState {
    events: VecDeque<TurnEvent>,
    closed: bool,
}

/// Called when a subscription has something to read (or ended): how an async front end
/// waits without a thread per subscription.
pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// Terminal events of earlier turns a collapsed queue keeps.
const KEPT_TERMINALS: usize = 16;

/// One subscriber's bounded buffer.
pub(crate) struct SubQueue {
    state: Mutex<QueueState>,
    ready: Condvar,
    capacity: usize,
    waker: Mutex<Option<Waker>>,
}

impl std::fmt::Debug for SubQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubQueue")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl SubQueue {
    pub(crate) fn new(capacity: usize) -> Arc<SubQueue> {
        Arc::new(SubQueue {
            state: Mutex::new(QueueState::default()),
            ready: Condvar::new(),
            capacity: capacity.max(2),
            waker: Mutex::new(None),
        })
    }

    fn wake(&self) {
        let w = self.waker.lock().ok().and_then(|w| w.clone());
        if let Some(w) = w {
            w();
        }
    }

    /// Never blocks. Past capacity, everything queued collapses into one `Lagged` with
    /// `latest` (the state after `e`); a terminal event is kept after it. Returns false
    /// once the subscriber is gone.
    pub(crate) fn push(&self, e: &TurnEvent, latest: &TurnSnapshot) -> bool {
        let Ok(mut q) = self.state.lock() else {
            return false;
        };
        if q.closed {
            return false;
        }
        if q.events.len() >= self.capacity {
            let mut missed = 0u64;
            // A turn's terminal event is never collapsed away, even an earlier turn's.
            let mut kept = Vec::new();
            for old in q.events.drain(..) {
                match old {
                    TurnEvent::Lagged { missed: m, .. } => missed += m,
                    // Nor is a notice: it is no turn's, and no snapshot carries it.
                    TurnEvent::Finished(_) | TurnEvent::Notice(_) => kept.push(old),
                    _ => missed += 1,
                }
            }
            // (The last few: a subscriber that reads nothing for many turns is gone.)
            let skip = kept.len().saturating_sub(KEPT_TERMINALS);
            missed += skip as u64;
            q.events.extend(kept.into_iter().skip(skip));
            let terminal = e.is_terminal() || matches!(e, TurnEvent::Notice(_));
            if !terminal {
                missed += 1;
            }
            q.events.push_back(TurnEvent::Lagged {
                missed,
                state: latest.clone(),
            });
            if terminal {
                q.events.push_back(e.clone());
            }
        } else {
            q.events.push_back(e.clone());
        }
        drop(q);
        self.ready.notify_all();
        self.wake();
        true
    }

    /// The subscriber dropped its subscription.
    pub(crate) fn is_closed(&self) -> bool {
        self.state.lock().map_or(true, |q| q.closed)
    }

    pub(crate) fn close(&self) {
        if let Ok(mut q) = self.state.lock() {
            q.closed = true;
        }
        self.ready.notify_all();
        self.wake();
    }
}

/// A stream of a session's turn events. Dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    pub(crate) queue: Arc<SubQueue>,
    pub(crate) turn_id: Option<String>,
}

/// What [`Subscription::try_recv`] found. Short-lived, on the stack: not boxed.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum TryRecv {
    Event(TurnEvent),
    /// Nothing yet; the waker (if set) is called when something comes.
    Empty,
    /// The session was archived or the service stopped, and nothing is left to read.
    Closed,
}

impl Subscription {
    /// The turn this subscription was made for (by `submit`); `None` for `subscribe`.
    pub fn turn_id(&self) -> Option<&str> {
        self.turn_id.as_deref()
    }

    /// The next event without waiting.
    pub fn try_recv(&self) -> TryRecv {
        let Ok(mut q) = self.queue.state.lock() else {
            return TryRecv::Closed;
        };
        match q.events.pop_front() {
            Some(e) => TryRecv::Event(e),
            None if q.closed => TryRecv::Closed,
            None => TryRecv::Empty,
        }
    }

    /// Call `waker` whenever an event arrives or the stream ends (and once now, so
    /// nothing already queued is missed). It must not block and must not call the
    /// service: it runs on the turn's thread, under the session's lock.
    pub fn set_waker(&self, waker: Waker) {
        if let Ok(mut w) = self.queue.waker.lock() {
            *w = Some(waker);
        }
        self.queue.wake();
    }

    /// The next event; `None` when the session was archived or the service stopped and
    /// nothing is left to read.
    pub fn recv(&self) -> Option<TurnEvent> {
        let mut q = self.queue.state.lock().ok()?;
        loop {
            if let Some(e) = q.events.pop_front() {
                return Some(e);
            }
            if q.closed {
                return None;
            }
            q = self.queue.ready.wait(q).ok()?;
        }
    }

    /// [`Subscription::recv`], waiting at most `timeout`: `Ok(None)` when the stream ended,
    /// `Err(())` when nothing came in time.
    #[allow(clippy::result_unit_err)]
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Option<TurnEvent>, ()> {
        let deadline = std::time::Instant::now() + timeout;
        let mut q = self.queue.state.lock().map_err(|_| ())?;
        loop {
            if let Some(e) = q.events.pop_front() {
                return Ok(Some(e));
            }
            if q.closed {
                return Ok(None);
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Err(());
            }
            q = self
                .queue
                .ready
                .wait_timeout(q, deadline - now)
                .map_err(|_| ())?
                .0;
        }
    }

    /// Events until (and including) the turn's terminal event: the summary, or `None`
    /// if the stream ended first.
    pub fn wait_finished(&self, mut each: impl FnMut(&TurnEvent)) -> Option<TurnSummary> {
        while let Some(e) = self.recv() {
            each(&e);
            if let TurnEvent::Finished(s) = e {
                return Some(s);
            }
        }
        None
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Ok(mut w) = self.queue.waker.lock() {
            w.take();
        }
        self.queue.close();
    }
}
