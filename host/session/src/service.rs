//! The session manager: one service per user workspace. It creates, lists, resolves and
//! resumes sessions, keeps one actor per live session with at most one active turn each
//! (run on a thread of its own while it lasts; one lease set renews every live session), caps the user's concurrent turns with a FIFO queue, fans turn events out to
//! subscribers, cancels, and archives idle sessions (they resume from the store).

use crate::compose::{System, store_path};
use crate::config::AgentConfig;
use crate::error::{ServiceError, SetupError};
use crate::events::{SubQueue, Subscription, TurnEvent, TurnSnapshot, TurnSummary};
use crate::origin::Origin;
use oxydra_agent::turn::{
    AgentProfile, Budgets, CancelToken, Runtime, Spend, TurnError, TurnFailure,
};
use oxydra_runtime::CallContext;
use oxydra_store::{Store, TurnStatus};
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

/// The service's limits, from `[gateway]`.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// Turns of this user running at once; more wait in FIFO order
    /// (`gateway.max_concurrent_turns_per_user`).
    pub max_concurrent_turns: u32,
    /// Sessions kept live (an actor and its state in memory); past it the least recently
    /// active idle one is archived (`gateway.max_sessions_per_user`).
    pub max_live_sessions: u32,
    /// A live session idle this long is archived by [`SessionService::archive_idle`]
    /// (`gateway.session_idle_ttl_hours`).
    pub idle_ttl: Duration,
    /// Events buffered per subscriber before it is marked lagged.
    pub subscriber_buffer: usize,
}

impl ServiceOptions {
    pub fn from_config(cfg: &AgentConfig) -> ServiceOptions {
        ServiceOptions {
            max_concurrent_turns: cfg.gateway.max_concurrent_turns_per_user,
            max_live_sessions: cfg.gateway.max_sessions_per_user,
            idle_ttl: Duration::from_secs(u64::from(cfg.gateway.session_idle_ttl_hours) * 3600),
            subscriber_buffer: 1024,
        }
    }
}

/// A session as listed.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionInfo {
    pub id: String,
    pub agent: String,
    pub turns: i64,
    /// Held in memory by an actor.
    pub live: bool,
    /// A turn is queued or running.
    pub active: bool,
}

/// A session attached to the service.
#[derive(Debug, Clone)]
pub struct Attached {
    pub id: String,
    pub agent: String,
    /// Turns found still marked running from a process that ended (kill -9, power loss),
    /// now marked interrupted.
    pub interrupted: u64,
    /// The last turn's number and how it ended.
    pub last_turn: Option<(i64, TurnStatus)>,
}

/// A random session id (96 bits, hex). Never from the clock: without a random source
/// there is no id.
pub fn new_session_id() -> Result<String, ServiceError> {
    oxydra_agent::ids::random_hex(12).map_err(ServiceError::Random)
}

/// A turn's id: unique enough to tell the turns of one session apart in every front end.
pub fn new_turn_id() -> Result<String, ServiceError> {
    oxydra_agent::ids::random_hex(6).map_err(ServiceError::Random)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How a turn is submitted ([`SessionService::submit_with`]).
#[derive(Debug, Clone)]
pub struct SubmitOptions {
    /// Where the turn came from: per-call services that act for the turn (the jobs it
    /// creates report there) take it from here.
    pub origin: Origin,
    /// Budgets tighter than the agent's, for this turn only.
    pub limits: TurnLimits,
}

impl SubmitOptions {
    pub fn from(origin: Origin) -> SubmitOptions {
        SubmitOptions {
            origin,
            limits: TurnLimits::default(),
        }
    }
}

/// Limits of one turn on top of its agent's budgets (the lower of the two applies),
/// each with the name that is reported when it stops the turn.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TurnLimits {
    /// Model calls.
    pub max_steps: Option<(u32, String)>,
    /// US dollars (checked when the model's prices are known).
    pub max_cost: Option<(f64, String)>,
    pub wall_time: Option<(Duration, String)>,
}

impl TurnLimits {
    /// `budgets` with these limits where they are lower.
    pub fn apply(&self, budgets: &Budgets) -> Budgets {
        let mut b = budgets.clone();
        if let Some((n, key)) = &self.max_steps
            && *n < b.max_steps
        {
            b.max_steps = *n;
            b.keys.max_steps = key.clone();
        }
        if let Some((c, key)) = &self.max_cost
            && b.max_cost.is_none_or(|m| *c < m)
        {
            b.max_cost = Some(*c);
            b.keys.max_cost = key.clone();
        }
        if let Some((w, key)) = &self.wall_time
            && b.wall_time.is_none_or(|m| *w < m)
        {
            b.wall_time = Some(*w);
            b.keys.wall_time = key.clone();
        }
        b
    }
}

struct Job {
    turn_id: String,
    prompt: String,
    cancel: CancelToken,
    ticket: u64,
    opts: SubmitOptions,
}

struct ActorState {
    agent: String,
    runtime: Arc<AgentRuntime>,
    pending: bool,
    cancel: Option<CancelToken>,
    snapshot: TurnSnapshot,
    subscribers: Vec<Arc<SubQueue>>,
    last_active: Instant,
}

/// How long a session's lease lasts unless renewed; its keeper renews it every third of
/// this, so a process that dies (kill -9) frees its sessions within this time (at once
/// on Linux, where a dead holder's pid is detected).
const LEASE_TTL: Duration = Duration::from_secs(30);

struct Actor {
    id: String,
    /// This process's claim on the session: one process drives a session at a time.
    _lease: oxydra_store::HeldLease,
    state: Mutex<ActorState>,
    /// Archived or stopped: it takes no more turns.
    closed: std::sync::atomic::AtomicBool,
    /// The thread of the turn running now (a live session holds no thread while idle).
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Actor {
    fn publish(&self, e: TurnEvent) {
        Actor::publish_locked(&mut lock(&self.state), e);
    }

    fn publish_locked(st: &mut ActorState, e: TurnEvent) {
        st.snapshot.apply(&e);
        let ActorState {
            snapshot,
            subscribers,
            ..
        } = &mut *st;
        subscribers.retain(|q| q.push(&e, snapshot));
    }

    fn close(&self) {
        Actor::close_locked(&self.closed, &mut lock(&self.state));
    }

    /// Close under the state lock: `submit` checks `closed` under the same lock, so no
    /// turn starts on an actor that is being archived.
    fn close_locked(closed: &std::sync::atomic::AtomicBool, st: &mut ActorState) {
        closed.store(true, std::sync::atomic::Ordering::SeqCst);
        for q in st.subscribers.drain(..) {
            q.close();
        }
    }
}

/// FIFO turn slots for one user.
struct Slots {
    max: u32,
    state: Mutex<SlotState>,
    changed: Condvar,
}

#[derive(Default)]
struct SlotState {
    running: u32,
    queue: VecDeque<u64>,
    next: u64,
}

struct SlotGuard<'a>(&'a Slots);

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        lock(&self.0.state).running -= 1;
        self.0.changed.notify_all();
    }
}

impl Slots {
    /// A place at the back of the queue, taken when the turn is submitted: the order of
    /// submission is the order of service, whichever actor thread runs first.
    fn ticket(&self) -> u64 {
        let mut st = lock(&self.state);
        let ticket = st.next;
        st.next += 1;
        st.queue.push_back(ticket);
        ticket
    }

    /// Give up a ticket whose turn will not run.
    fn forget(&self, ticket: u64) {
        lock(&self.state).queue.retain(|t| *t != ticket);
        self.changed.notify_all();
    }

    /// Wait for a slot in ticket order; `None` if cancelled while waiting.
    /// `position` is told each new place in the queue (1 = next).
    fn acquire(
        &self,
        ticket: u64,
        cancel: &CancelToken,
        mut position: impl FnMut(usize),
    ) -> Option<SlotGuard<'_>> {
        let mut st = lock(&self.state);
        let mut told = None;
        loop {
            // A ticket no longer queued (it cannot happen, but if it did) runs next
            // rather than waiting forever.
            let place = st.queue.iter().position(|t| *t == ticket).unwrap_or(0);
            // Every ticket ahead of this one fits in the free slots too, so taking one
            // now keeps the order; below the cap nobody waits.
            let free = self.max.max(1).saturating_sub(st.running) as usize;
            if place < free {
                st.queue.retain(|t| *t != ticket);
                st.running += 1;
                // The tickets behind move up by one place and lose one free slot: their
                // position is unchanged, so nobody needs waking.
                return Some(SlotGuard(self));
            }
            if cancel.is_cancelled() {
                st.queue.retain(|t| *t != ticket);
                drop(st);
                self.changed.notify_all();
                return None;
            }
            let waiting = place - free + 1;
            if told != Some(waiting) {
                told = Some(waiting);
                drop(st);
                position(waiting);
                st = lock(&self.state);
                continue;
            }
            // A slot given back or a cancel notifies; the timeout is only a safety net.
            st = self
                .changed
                .wait_timeout(st, Duration::from_secs(1))
                .map(|(g, _)| g)
                .unwrap_or_else(|e| e.into_inner().0);
        }
    }
}

struct AgentRuntime {
    runtime: Arc<Runtime>,
    profile: AgentProfile,
}

struct Inner {
    system: Arc<System>,
    user: String,
    ws_dir: PathBuf,
    store: Store,
    /// The leases of this process's live sessions, renewed by one thread.
    leases: oxydra_store::LeaseSet,
    /// [`SessionService::shutdown`] ran: no actor starts again.
    stopped: std::sync::atomic::AtomicBool,
    /// Held while an actor is started.
    starting: Mutex<()>,
    opts: ServiceOptions,
    runtimes: Mutex<BTreeMap<String, Arc<AgentRuntime>>>,
    actors: Mutex<BTreeMap<String, Arc<Actor>>>,
    slots: Slots,
    /// The running chat channels of this user, by name: how a message or a file reaches
    /// a chat outside (or on behalf of) a turn.
    notifiers: crate::origin::Notifiers,
    /// The user's jobs (`[scheduler] enabled`): each turn's tools get them, scoped to the
    /// turn's origin; `serve` runs them.
    scheduler: Option<Arc<crate::scheduler::Scheduler>>,
    /// The user's memory (`[memory] enabled`): the memory tools reach it scoped to the
    /// turn's session; each turn gets what is relevant and is remembered.
    memory: Option<Arc<oxydra_memory::Memory>>,
}

/// One user's sessions. Front ends (`run`, `chat`, the gateway, channels, the scheduler)
/// drive sessions only through this API.
pub struct SessionService {
    inner: Arc<Inner>,
}

impl SessionService {
    /// The service for one user workspace (created if missing, with its store).
    pub fn open(
        system: Arc<System>,
        user: &str,
        ws_dir: &Path,
        opts: ServiceOptions,
    ) -> Result<SessionService, ServiceError> {
        std::fs::create_dir_all(ws_dir).map_err(|e| SetupError::Workspace {
            path: ws_dir.display().to_string(),
            message: e.to_string(),
        })?;
        let store = Store::open(&store_path(ws_dir))?;
        let leases = store.lease_set(LEASE_TTL)?;
        let scheduler = match system.config.scheduler.enabled {
            true => Some(Arc::new(crate::scheduler::Scheduler::open(
                ws_dir,
                system.config.scheduler.clone(),
            )?)),
            false => None,
        };
        let memory = match system.config.memory.enabled {
            true => Some(crate::memory::open(&system.config.memory, ws_dir, user)?),
            false => None,
        };
        let slots = Slots {
            max: opts.max_concurrent_turns,
            state: Mutex::new(SlotState::default()),
            changed: Condvar::new(),
        };
        Ok(SessionService {
            inner: Arc::new(Inner {
                system,
                user: user.to_string(),
                ws_dir: ws_dir.to_path_buf(),
                store,
                leases,
                stopped: std::sync::atomic::AtomicBool::new(false),
                starting: Mutex::new(()),
                opts,
                runtimes: Mutex::new(BTreeMap::new()),
                actors: Mutex::new(BTreeMap::new()),
                slots,
                notifiers: crate::origin::Notifiers::new(),
                scheduler,
                memory,
            }),
        })
    }

    /// The user's memory; `None` when `[memory] enabled = false`.
    pub fn memory(&self) -> Option<Arc<oxydra_memory::Memory>> {
        self.inner.memory.clone()
    }

    pub fn user(&self) -> &str {
        &self.inner.user
    }

    pub fn workspace(&self) -> &Path {
        &self.inner.ws_dir
    }

    /// The user's running chat channels; a channel registers itself here when it starts.
    pub fn notifiers(&self) -> &crate::origin::Notifiers {
        &self.inner.notifiers
    }

    pub fn system(&self) -> &Arc<System> {
        &self.inner.system
    }

    /// The user's jobs; `None` when `[scheduler] enabled = false`.
    pub fn scheduler(&self) -> Option<Arc<crate::scheduler::Scheduler>> {
        self.inner.scheduler.clone()
    }

    /// Tell the followers of `session` something that is no turn's (a scheduled job's
    /// result): a [`TurnEvent::Notice`] to each. Returns how many were told (0 when the
    /// session is not live or nobody follows it).
    pub fn notify(&self, session: &str, notice: crate::events::Notice) -> usize {
        let Some(actor) = lock(&self.inner.actors).get(session).cloned() else {
            return 0;
        };
        let mut st = lock(&actor.state);
        let ActorState {
            snapshot,
            subscribers,
            ..
        } = &mut *st;
        let e = TurnEvent::Notice(notice);
        subscribers.retain(|q| q.push(&e, snapshot));
        subscribers.len()
    }

    /// The model an agent runs on (for status lines).
    pub fn model(&self, agent: &str) -> Result<String, ServiceError> {
        Ok(self.inner.runtime_for(agent)?.runtime.model.clone())
    }

    /// A new session for `agent` (`default` when `None`). A `name` leads the id, so
    /// [`SessionService::resolve`] finds it by name.
    pub fn create(
        &self,
        agent: Option<&str>,
        name: Option<&str>,
    ) -> Result<Attached, ServiceError> {
        if self.inner.stopped.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(ServiceError::Stopped);
        }
        let agent = agent.unwrap_or("default");
        // Build the agent's runtime first, and make room: a config that cannot run, or a
        // user with every live session busy, makes no session.
        self.inner.runtime_for(agent)?;
        self.inner.make_room()?;
        let random = new_session_id()?;
        let id = match name {
            None => random,
            Some(n) => {
                let n = n.trim().replace(char::is_whitespace, "-");
                if n.is_empty()
                    || !n
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                {
                    return Err(ServiceError::BadName(n));
                }
                format!("{n}-{}", &random[..8])
            }
        };
        self.inner.store.create_session(&id, agent)?;
        self.inner.actor(&id, agent)?;
        Ok(Attached {
            id,
            agent: agent.to_string(),
            interrupted: 0,
            last_turn: None,
        })
    }

    /// Sessions, most recently active first.
    pub fn list(&self) -> Result<Vec<SessionInfo>, ServiceError> {
        self.list_with(false)
    }

    /// [`SessionService::list`], with delegated sub-agent sessions (`sub-…`) and the
    /// sessions scheduled jobs run in (`sched-…`) when asked.
    pub fn list_with(&self, subagents: bool) -> Result<Vec<SessionInfo>, ServiceError> {
        let stored = self.inner.store.sessions()?;
        let actors = lock(&self.inner.actors);
        Ok(stored
            .into_iter()
            .filter(|(id, _, _)| subagents || !(id.starts_with("sub-") || id.starts_with("sched-")))
            .map(|(id, agent, turns)| {
                let live = actors.get(&id);
                SessionInfo {
                    active: live.is_some_and(|a| lock(&a.state).pending),
                    agent: live.map_or(agent, |a| lock(&a.state).agent.clone()),
                    live: live.is_some(),
                    id,
                    turns,
                }
            })
            .collect())
    }

    /// The session whose id is `prefix`, or the only one whose id starts with it.
    pub fn resolve(&self, prefix: &str) -> Result<String, ServiceError> {
        let prefix = prefix.trim();
        if prefix.is_empty() {
            return Err(ServiceError::NoSession(String::new()));
        }
        let ids: Vec<String> = self
            .inner
            .store
            .sessions()?
            .into_iter()
            .map(|(id, _, _)| id)
            .collect();
        if ids.iter().any(|id| id == prefix) {
            return Ok(prefix.to_string());
        }
        let matches: Vec<String> = ids
            .into_iter()
            .filter(|id| id.starts_with(prefix))
            .collect();
        match matches.len() {
            0 => Err(ServiceError::NoSession(prefix.to_string())),
            1 => Ok(matches.into_iter().next().unwrap_or_default()),
            _ => Err(ServiceError::AmbiguousSession {
                prefix: prefix.to_string(),
                matches,
            }),
        }
    }

    /// Attach a stored session (by id or unique prefix), resuming it after a restart with
    /// its full context; `agent` switches the agent it runs as.
    pub fn attach(
        &self,
        id_or_prefix: &str,
        agent: Option<&str>,
    ) -> Result<Attached, ServiceError> {
        let id = self.resolve(id_or_prefix)?;
        let stored = match self.inner.store.session_agent(&id) {
            Ok(a) => a,
            Err(oxydra_store::StoreError::NoSession(_)) => return Err(ServiceError::NoSession(id)),
            Err(e) => return Err(e.into()),
        };
        let agent = agent.map_or(stored, str::to_string);
        self.inner.runtime_for(&agent)?;
        let (_, interrupted) = self.inner.actor(&id, &agent)?;
        let last_turn = self
            .inner
            .store
            .turns(&id)?
            .last()
            .map(|t| (t.turn, t.status));
        Ok(Attached {
            id,
            agent,
            interrupted,
            last_turn,
        })
    }

    /// Start a turn of `session` (attached or stored) typed in a terminal
    /// ([`Origin::Cli`]): [`SessionService::submit_from`] for other front ends.
    pub fn submit(&self, session: &str, prompt: &str) -> Result<Subscription, ServiceError> {
        self.submit_from(
            session,
            prompt,
            Origin::Cli {
                session: session.to_string(),
            },
        )
    }

    /// Start a turn of `session` that came from `origin`. The subscription sees this
    /// turn's events from its start to its [`TurnEvent::Finished`]. A session runs one
    /// turn at a time: a second submit while one is queued or running is
    /// [`ServiceError::SessionBusy`].
    pub fn submit_from(
        &self,
        session: &str,
        prompt: &str,
        origin: Origin,
    ) -> Result<Subscription, ServiceError> {
        self.submit_with(session, prompt, SubmitOptions::from(origin))
    }

    /// [`SessionService::submit_from`], with limits tighter than the agent's budgets.
    pub fn submit_with(
        &self,
        session: &str,
        prompt: &str,
        opts: SubmitOptions,
    ) -> Result<Subscription, ServiceError> {
        let live = lock(&self.inner.actors)
            .get(session)
            .filter(|a| !a.closed.load(std::sync::atomic::Ordering::SeqCst))
            .cloned();
        let actor = match live {
            Some(a) => a,
            None => {
                let id = self.attach(session, None)?.id;
                lock(&self.inner.actors)
                    .get(&id)
                    .cloned()
                    .ok_or(ServiceError::Stopped)?
            }
        };
        let queue = SubQueue::new(self.inner.opts.subscriber_buffer);
        let mut st = lock(&actor.state);
        if st.pending {
            return Err(ServiceError::SessionBusy {
                session: actor.id.clone(),
            });
        }
        if actor.closed.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(ServiceError::Stopped);
        }
        let cancel = CancelToken::default();
        let turn_id = new_turn_id()?;
        let ticket = self.inner.slots.ticket();
        let job = Job {
            turn_id: turn_id.clone(),
            prompt: prompt.to_string(),
            cancel: cancel.clone(),
            ticket,
            opts,
        };
        // The previous turn's thread has ended (its turn is no longer pending).
        if let Some(old) = lock(&actor.thread).take() {
            let _ = old.join();
        }
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let me = actor.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("turn-{}", &actor.id[..actor.id.len().min(12)]))
            .spawn(move || {
                if let Some(inner) = weak.upgrade() {
                    inner.run_job(&me, job);
                }
            });
        match spawned {
            Ok(h) => *lock(&actor.thread) = Some(h),
            Err(e) => {
                self.inner.slots.forget(ticket);
                return Err(
                    SetupError::Engine(format!("could not start a turn thread: {e}")).into(),
                );
            }
        }
        st.pending = true;
        // A new turn: nothing of the previous one's text or tools (its end stays in
        // `last`), so a client attaching before it starts sees it empty.
        st.snapshot.active = true;
        st.snapshot.turn_id = Some(turn_id.clone());
        st.snapshot.text.clear();
        st.snapshot.step = 0;
        st.snapshot.tools_running.clear();
        st.snapshot.queued = None;
        st.cancel = Some(cancel);
        st.last_active = Instant::now();
        st.subscribers.push(queue.clone());
        Ok(Subscription {
            queue,
            turn_id: Some(turn_id),
        })
    }

    /// Follow a session's events from now on. The first event is a
    /// [`TurnEvent::Snapshot`]: the active turn so far and the last turn that ended.
    pub fn subscribe(&self, session: &str) -> Result<Subscription, ServiceError> {
        let actor = lock(&self.inner.actors)
            .get(session)
            .cloned()
            .ok_or_else(|| ServiceError::NoSession(session.to_string()))?;
        let queue = SubQueue::new(self.inner.opts.subscriber_buffer);
        let mut st = lock(&actor.state);
        queue.push(&TurnEvent::Snapshot(st.snapshot.clone()), &st.snapshot);
        st.subscribers.push(queue.clone());
        Ok(Subscription {
            queue,
            turn_id: None,
        })
    }

    /// The session's current state, as a late subscriber would see it.
    pub fn snapshot(&self, session: &str) -> Option<TurnSnapshot> {
        let actor = lock(&self.inner.actors).get(session).cloned()?;
        let snap = lock(&actor.state).snapshot.clone();
        Some(snap)
    }

    /// Cancel the session's queued or running turn; false if it had none.
    pub fn cancel(&self, session: &str) -> bool {
        let Some(actor) = lock(&self.inner.actors).get(session).cloned() else {
            return false;
        };
        let st = lock(&actor.state);
        match (&st.cancel, st.pending) {
            (Some(c), true) => {
                c.cancel();
                // Under the slots' lock, so a turn about to wait for a slot sees it.
                let slots = lock(&self.inner.slots.state);
                self.inner.slots.changed.notify_all();
                drop(slots);
                true
            }
            _ => false,
        }
    }

    /// Cancel every queued or running turn of this user; returns how many.
    pub fn cancel_all(&self) -> usize {
        let ids: Vec<String> = lock(&self.inner.actors).keys().cloned().collect();
        ids.iter().filter(|id| self.cancel(id)).count()
    }

    /// Archive live sessions idle longer than `gateway.session_idle_ttl_hours` that no
    /// one follows: their actor and in-memory state go; they resume from the store on
    /// next use.
    pub fn archive_idle(&self) -> Vec<String> {
        let ttl = self.inner.opts.idle_ttl;
        self.inner.archive_where(|_, st| {
            st.last_active.elapsed() >= ttl && st.subscribers.iter().all(|q| q.is_closed())
        })
    }

    /// Summarise into memory each session with no turn for `idle` whose summary is
    /// missing or older than its last turn, as the session's agent; returns the ids
    /// summarised. One whose turn is running, whose agent is gone, or whose summary fails
    /// is skipped (and logged), and tried again next time. Nothing without memory.
    pub fn summarize_stale(&self, idle: Duration) -> Result<Vec<String>, ServiceError> {
        let Some(memory) = &self.inner.memory else {
            return Ok(Vec::new());
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let cutoff = now.saturating_sub(i64::try_from(idle.as_millis()).unwrap_or(i64::MAX));
        let mut done = Vec::new();
        for (id, agent, last) in self
            .inner
            .store
            .sessions_idle_since(cutoff.saturating_add(1))?
        {
            let busy = lock(&self.inner.actors)
                .get(&id)
                .is_some_and(|a| lock(&a.state).pending);
            let current = memory
                .summary_time(&id)
                .map_err(|e| ServiceError::Memory(e.to_string()))?
                .is_some_and(|t| t >= last);
            if busy || current {
                continue;
            }
            let rt = match self.inner.runtime_for(&agent) {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::warn!(session = %id, "memory: not summarised: {e}");
                    continue;
                }
            };
            match rt.runtime.summarize_session(&id, &rt.profile) {
                Ok(Some((text, _))) => match memory.record_summary(&id, &text) {
                    Ok(()) => done.push(id),
                    Err(e) => tracing::warn!(session = %id, "memory: summary not saved: {e}"),
                },
                Ok(None) => {}
                Err(f) => tracing::warn!(session = %id, "memory: not summarised: {}", f.error),
            }
        }
        Ok(done)
    }

    /// How many sessions have a live actor.
    pub fn live_sessions(&self) -> usize {
        lock(&self.inner.actors).len()
    }

    /// Cancel every turn, let the actors finish (partial output persisted), and stop.
    pub fn shutdown(&self) {
        self.inner
            .stopped
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.cancel_all();
        let actors: Vec<Arc<Actor>> = std::mem::take(&mut *lock(&self.inner.actors))
            .into_values()
            .collect();
        for a in &actors {
            let st = lock(&a.state);
            a.closed.store(true, std::sync::atomic::Ordering::SeqCst);
            drop(st);
        }
        for a in &actors {
            if let Some(t) = lock(&a.thread).take() {
                let _ = t.join();
            }
            a.close();
        }
    }
}

impl Drop for SessionService {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Inner {
    fn runtime_for(&self, agent: &str) -> Result<Arc<AgentRuntime>, ServiceError> {
        if let Some(r) = lock(&self.runtimes).get(agent) {
            return Ok(r.clone());
        }
        if !self.system.has_agent(agent) {
            return Err(SetupError::UnknownAgent {
                name: agent.to_string(),
                known: self.system.agent_names(),
            }
            .into());
        }
        // Each runtime has its own connection to the workspace's store.
        let store = Store::open(&store_path(&self.ws_dir))?;
        let (runtime, profile) = self.system.runtime(&self.ws_dir, agent, store)?;
        let r = Arc::new(AgentRuntime {
            runtime: Arc::new(runtime),
            profile,
        });
        lock(&self.runtimes).insert(agent.to_string(), r.clone());
        Ok(r)
    }

    /// Remove live actors with no active turn whose state matches; returns their ids.
    fn archive_where(&self, idle: impl Fn(&str, &ActorState) -> bool) -> Vec<String> {
        let mut actors = lock(&self.actors);
        let mut ids = Vec::new();
        for (id, a) in actors.iter() {
            let mut st = lock(&a.state);
            if !st.pending && idle(id, &st) {
                // Closed in the same critical section that saw it idle.
                Actor::close_locked(&a.closed, &mut st);
                ids.push(id.clone());
            }
        }
        let gone: Vec<Arc<Actor>> = ids.iter().filter_map(|id| actors.remove(id)).collect();
        drop(actors);
        // Their leases are released (a store write) outside the map's lock.
        drop(gone);
        ids
    }

    /// Below `max_live_sessions` live actors, or one idle session archived to get there
    /// (the least recently active, preferring one nobody follows); else `TooManySessions`.
    fn make_room(&self) -> Result<(), ServiceError> {
        let count = lock(&self.actors).len();
        let max = self.opts.max_live_sessions.max(1) as usize;
        if count >= max {
            // The least recently active idle session, preferring one nobody follows.
            let oldest = lock(&self.actors)
                .iter()
                .filter(|(_, a)| !lock(&a.state).pending)
                .min_by_key(|(_, a)| {
                    let st = lock(&a.state);
                    let followed = st.subscribers.iter().any(|q| !q.is_closed());
                    (followed, st.last_active)
                })
                .map(|(id, _)| id.clone());
            match oldest {
                Some(o) => {
                    self.archive_where(|id, _| id == o);
                }
                None => {
                    return Err(ServiceError::TooManySessions {
                        user: self.user.clone(),
                        limit: self.opts.max_live_sessions,
                    });
                }
            }
        }
        Ok(())
    }

    /// The live actor of `id`, started if needed (archiving the least recently active
    /// idle session past `max_live_sessions`), and how many cut-off turns starting it
    /// marked interrupted.
    fn actor(self: &Arc<Self>, id: &str, agent: &str) -> Result<(Arc<Actor>, u64), ServiceError> {
        if self.stopped.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(ServiceError::Stopped);
        }
        let runtime = self.runtime_for(agent)?;
        let live = |runtime: &Arc<AgentRuntime>| {
            let a = lock(&self.actors).get(id).cloned()?;
            let mut st = lock(&a.state);
            st.agent = agent.to_string();
            st.runtime = runtime.clone();
            drop(st);
            Some(a)
        };
        if let Some(a) = live(&runtime) {
            return Ok((a, 0));
        }
        // One actor is started at a time: two attaches of one session racing (two
        // clients reconnecting together) must end with one actor and one lease.
        let _starting = lock(&self.starting);
        if let Some(a) = live(&runtime) {
            return Ok((a, 0));
        }
        self.make_room()?;
        // The lease first: only then is a turn still marked running known to be cut off
        // (kill -9, power loss) rather than another process's; its messages stay and the
        // turn is marked interrupted.
        let lease = match self.store.acquire_lease(id, LEASE_TTL) {
            Ok(l) => l,
            Err(oxydra_store::StoreError::SessionBusy {
                session,
                holder_pid,
                ..
            }) => {
                return Err(ServiceError::SessionBusyElsewhere {
                    session,
                    pid: holder_pid,
                });
            }
            Err(oxydra_store::StoreError::NoSession(s)) => return Err(ServiceError::NoSession(s)),
            Err(e) => return Err(e.into()),
        };
        let interrupted = self.store.mark_interrupted(id)?;
        let held = self.leases.keep(lease);
        let actor = Arc::new(Actor {
            id: id.to_string(),
            _lease: held,
            state: Mutex::new(ActorState {
                agent: agent.to_string(),
                runtime,
                pending: false,
                cancel: None,
                snapshot: TurnSnapshot {
                    session: id.to_string(),
                    ..Default::default()
                },
                subscribers: Vec::new(),
                last_active: Instant::now(),
            }),
            closed: std::sync::atomic::AtomicBool::new(false),
            thread: Mutex::new(None),
        });
        lock(&self.actors).insert(id.to_string(), actor.clone());
        Ok((actor, interrupted))
    }

    /// The per-call services of a turn from `origin`, run by `rt`'s agent.
    fn call_context(&self, session: &str, origin: &Origin, rt: &AgentRuntime) -> CallContext {
        // Jobs this turn creates run on its agent's model: without its prices a job's
        // money budget cannot be enforced, and the jobs service says so.
        let unpriced = rt
            .runtime
            .model_info
            .is_none()
            .then(|| rt.runtime.model.clone());
        CallContext {
            // The user's jobs; the ones this turn creates report to `origin`.
            jobs: self
                .scheduler
                .as_ref()
                .map(|s| s.jobs_for(origin.clone(), &rt.profile.name, unpriced)),
            // Files go to the turn's chat only (`send_media`); a turn from the CLI or the
            // gateway has none, and the outbox says so.
            outbox: crate::origin::ChatOutbox::for_turn(origin, &self.notifiers),
            // The user's memory; the scratchpad is this session's.
            memory: self.memory.as_ref().map(|m| {
                Arc::new(crate::memory::Scoped {
                    memory: m.clone(),
                    session: session.to_string(),
                }) as Arc<dyn oxydra_runtime::memory::Memory>
            }),
            ..CallContext::default()
        }
    }

    fn run_job(&self, actor: &Actor, job: Job) {
        let rt = lock(&actor.state).runtime.clone();
        let outcome = match self.slots.acquire(job.ticket, &job.cancel, |position| {
            actor.publish(TurnEvent::Queued {
                turn_id: job.turn_id.clone(),
                position,
            })
        }) {
            // Cancelled while queued: it never reached the model and spent nothing.
            None => Err(Arc::new(TurnFailure {
                error: TurnError::Cancelled,
                spent: Spend::default(),
            })),
            Some(_slot) => {
                actor.publish(TurnEvent::Started {
                    turn_id: job.turn_id.clone(),
                });
                // What memory holds that is relevant to this message goes in with the
                // system prompt, for this turn only.
                let recalled = self.memory.as_ref().and_then(|m| {
                    crate::memory::recall(m, &self.system.config.memory, &actor.id, &job.prompt)
                });
                let profile = AgentProfile {
                    budgets: job.opts.limits.apply(&rt.profile.budgets),
                    system_prompt: match recalled {
                        Some(r) => format!("{}\n\n{r}", rt.profile.system_prompt),
                        None => rt.profile.system_prompt.clone(),
                    },
                    ..rt.profile.clone()
                };
                rt.runtime
                    .run_turn_with(
                        &actor.id,
                        &profile,
                        &job.prompt,
                        &mut |p| {
                            if let Some(e) = TurnEvent::of(p) {
                                actor.publish(e);
                            }
                        },
                        &job.cancel,
                        self.call_context(&actor.id, &job.opts.origin, &rt),
                    )
                    .map_err(Arc::new)
            }
        };
        // A finished turn is remembered, so later sessions can find it.
        if let (Some(m), Ok(done)) = (&self.memory, &outcome)
            && self.system.config.memory.record_conversations
            && let Err(e) = m.record_exchange(&actor.id, &job.turn_id, &job.prompt, &done.answer)
        {
            tracing::warn!(session = %actor.id, "memory: the turn was not remembered: {e}");
        }
        let summary = TurnSummary {
            session: actor.id.clone(),
            turn_id: job.turn_id,
            outcome,
        };
        // The turn ends and says so in one step: a next turn (on its own thread) can
        // start only once every subscriber has this one's terminal event.
        let mut st = lock(&actor.state);
        st.pending = false;
        st.cancel = None;
        st.last_active = Instant::now();
        Actor::publish_locked(&mut st, TurnEvent::Finished(summary));
    }
}
