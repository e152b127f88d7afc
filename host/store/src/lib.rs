//! Persistence on embedded libSQL: sessions, their messages in order, and the status of
//! each turn. A message is written before it is used (sent to the model, shown, or acted
//! on), so a session resumes with its full context after a restart, even a `kill -9` in
//! the middle of a turn, and a failed or budget-stopped turn keeps its history.
//!
//! The store speaks plain JSON for message bodies and knows nothing of the layers above.
//! libSQL's API is async; this store runs it on its own current-thread runtime and offers
//! a blocking API, which is what the (synchronous) turn loop wants.
//!
//! # Many processes, one file
//!
//! Several processes (and several [`Store`]s in one process) may open the same file at
//! once. SQLite has one writer at a time; a writer holds the lock for microseconds, and
//! everyone else waits for it: each operation retries while the database is locked, for up
//! to the store's busy timeout ([`DEFAULT_BUSY_TIMEOUT`] unless opened with
//! [`Store::open_with_timeout`]), and only then fails with [`StoreError::Busy`]. Every
//! operation that reads and then writes does so in one `BEGIN IMMEDIATE` transaction (or
//! one statement), so two processes never compute the same sequence or turn number.
//!
//! # Leases: one driver per session
//!
//! Storing is safe from any number of processes, but a session's turns should be driven by
//! one process at a time. [`Store::acquire_lease`] gives one; see [`Lease`] for how a
//! holder that died stops holding it.

mod jobs;
mod memory;

pub use jobs::{JobRow, NextTick, RunRow};
use libsql::{Builder, Connection, params};
pub use memory::{MemoryChanges, MemoryDoc, MemoryWrite};
use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {path}: {message}")]
    Open { path: String, message: String },
    #[error("store: {0}")]
    Db(String),
    /// The session does not exist. (Neutral: the layer above says what to do about it.)
    #[error("no session `{0}`")]
    NoSession(String),
    /// The database stayed locked by other writers for the whole busy timeout.
    #[error("store: the database stayed locked by another writer for {timeout_ms} ms")]
    Busy { timeout_ms: u64 },
    /// Another live holder has the session's lease (see [`Lease`]).
    #[error(
        "session `{session}` is in use by process {holder_pid} (its lease ends in {expires_in_ms} ms unless renewed)"
    )]
    SessionBusy {
        session: String,
        holder_pid: u32,
        expires_in_ms: i64,
    },
    /// The lease being renewed is no longer this holder's: it expired and another process
    /// took it. Whoever still works on the session under it should stop.
    #[error("the lease on session `{0}` was lost: it expired and another process took it")]
    LeaseLost(String),
}

/// How long an operation waits for a locked database before failing with
/// [`StoreError::Busy`].
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How a turn ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TurnStatus {
    Running,
    Completed,
    Failed,
    Budget,
    Cancelled,
}

impl TurnStatus {
    fn as_str(self) -> &'static str {
        match self {
            TurnStatus::Running => "running",
            TurnStatus::Completed => "completed",
            TurnStatus::Failed => "failed",
            TurnStatus::Budget => "budget",
            TurnStatus::Cancelled => "cancelled",
        }
    }
    fn parse(s: &str) -> TurnStatus {
        match s {
            "completed" => TurnStatus::Completed,
            "failed" => TurnStatus::Failed,
            "budget" => TurnStatus::Budget,
            "cancelled" => TurnStatus::Cancelled,
            _ => TurnStatus::Running,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoredMessage {
    pub seq: i64,
    pub turn: i64,
    /// The message as JSON (the agent's message type).
    pub body: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TurnRecord {
    pub turn: i64,
    pub status: TurnStatus,
    pub detail: String,
    pub cost: f64,
}

/// The right to drive one session's turns, held by one [`Store`] (one process) at a time.
///
/// Semantics:
/// - A lease is recorded in the store file: the session, the holder (this `Store`'s
///   random id, which includes its pid), the holder's pid, and when the lease expires.
/// - [`Store::acquire_lease`] takes it if nobody holds it, if this same `Store` already
///   holds it (that renews it), if it expired, or if its holder is known to be dead;
///   otherwise it fails with [`StoreError::SessionBusy`].
/// - The holder keeps it by calling [`Store::renew_lease`] well within the TTL while it
///   works (a lease that was allowed to expire may be taken by anyone, even if its holder
///   still runs), and gives it up with [`Store::release_lease`].
/// - A holder that died without releasing (`kill -9`, power loss) does not brick the
///   session: its lease expires after the TTL, and on Linux sooner: when the recorded pid
///   no longer exists in this pid namespace, or now belongs to a process started at
///   another time (a reused pid), the lease is stale and may be taken at once.
/// - Expiry uses the wall clock of the processes involved (one machine).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    session: String,
    holder: String,
    expires_ms: i64,
}

impl Lease {
    pub fn session(&self) -> &str {
        &self.session
    }
    /// When the lease ends unless renewed, in milliseconds since the Unix epoch.
    pub fn expires_ms(&self) -> i64 {
        self.expires_ms
    }
}

pub struct Store {
    rt: tokio::runtime::Runtime,
    conn: Connection,
    /// One connection, many sessions: operations take turns (SQLite has one writer
    /// anyway). Each holds it for a statement or two, microseconds.
    lock: std::sync::Mutex<()>,
    busy_timeout: Duration,
    /// This store's identity as a lease holder: unique among live stores.
    holder: String,
    /// This process as the lease table records it (see [`Lease`]).
    me: ProcessId,
    /// The store file, for [`Store::lease_set`]'s own connection.
    path: PathBuf,
}

/// The tables `SCHEMA` creates, and the newest index (a store made before it was added
/// gets it when it is opened).
const SCHEMA_TABLES: i64 = 13;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    session_id TEXT NOT NULL REFERENCES sessions(id),
    seq INTEGER NOT NULL,
    turn INTEGER NOT NULL,
    body TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (session_id, seq)
);
CREATE TABLE IF NOT EXISTS summaries (
    session_id TEXT NOT NULL REFERENCES sessions(id),
    upto_turn INTEGER NOT NULL,
    body TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    PRIMARY KEY (session_id, upto_turn)
);
CREATE TABLE IF NOT EXISTS turns (
    session_id TEXT NOT NULL REFERENCES sessions(id),
    turn INTEGER NOT NULL,
    status TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    cost REAL NOT NULL DEFAULT 0,
    started_ms INTEGER NOT NULL,
    ended_ms INTEGER,
    PRIMARY KEY (session_id, turn)
);
CREATE TABLE IF NOT EXISTS channel_state (
    channel TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (channel, key)
);
CREATE TABLE IF NOT EXISTS leases (
    session_id TEXT PRIMARY KEY REFERENCES sessions(id),
    holder TEXT NOT NULL,
    pid INTEGER NOT NULL,
    pid_ns TEXT NOT NULL DEFAULT '',
    pid_start TEXT NOT NULL DEFAULT '',
    expires_ms INTEGER NOT NULL
);
";

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A random u64 without a dependency: std's hasher keys are random per process and per
/// `RandomState`.
fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

/// Why an attempt at an operation failed: the database was locked (retry), or anything
/// else (give up).
enum Fail {
    Locked,
    Store(StoreError),
}

impl From<libsql::Error> for Fail {
    fn from(e: libsql::Error) -> Self {
        match &e {
            // SQLITE_BUSY (5) and SQLITE_LOCKED (6), with their extended codes.
            libsql::Error::SqliteFailure(code, _) if matches!(code & 0xff, 5 | 6) => Fail::Locked,
            _ => Fail::Store(StoreError::Db(e.to_string())),
        }
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        Fail::Store(e)
    }
}

/// Run `op` until it does not fail for a locked database, for at most `timeout`: SQLite's
/// own busy handler waits inside each attempt (for the time left), and this loop retries
/// the whole operation for the cases it does not cover (a transaction that must restart,
/// WAL recovery, a journal mode change). Between attempts any open transaction is rolled
/// back. A zero timeout means one attempt, no waiting.
fn retrying<T>(
    rt: &tokio::runtime::Runtime,
    conn: &Connection,
    timeout: Duration,
    op: impl AsyncFn(&Connection) -> Result<T, Fail>,
) -> Result<T, StoreError> {
    let start = Instant::now();
    let mut backoff = Duration::from_millis(2);
    loop {
        let left = timeout.saturating_sub(start.elapsed());
        conn.busy_timeout(left)
            .map_err(|e| StoreError::Db(e.to_string()))?;
        let attempt = rt.block_on(async {
            let result = op(conn).await;
            if result.is_err() && !conn.is_autocommit() {
                let _ = conn.execute("ROLLBACK", ()).await;
            }
            result
        });
        match attempt {
            Ok(v) => return Ok(v),
            Err(Fail::Store(e)) => return Err(e),
            Err(Fail::Locked) => {
                let left = timeout.saturating_sub(start.elapsed());
                if left.is_zero() {
                    return Err(StoreError::Busy {
                        timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                    });
                }
                // Jitter, so processes that collided do not collide again in step.
                let jitter = Duration::from_micros(random_u64() % 1000);
                std::thread::sleep((backoff + jitter).min(left));
                backoff = (backoff * 2).min(Duration::from_millis(100));
            }
        }
    }
}

/// `body` in a `BEGIN IMMEDIATE` transaction: the write lock is taken before anything is
/// read, so what is read stays true until the commit (no other writer in between), and a
/// locked database shows at `BEGIN`, where waiting is safe.
async fn immediate<T>(
    conn: &Connection,
    body: impl AsyncFnOnce(&Connection) -> Result<T, Fail>,
) -> Result<T, Fail> {
    conn.execute("BEGIN IMMEDIATE", ()).await?;
    let value = body(conn).await?;
    conn.execute("COMMIT", ()).await?;
    Ok(value)
}

/// A process as recorded with a lease: enough to tell, on Linux, that it has ended.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ProcessId {
    pid: u32,
    /// The pid namespace (`/proc/self/ns/pid`), or empty when unknown: a pid means
    /// nothing in another namespace.
    ns: String,
    /// The process's start time (field 22 of `/proc/<pid>/stat`), or empty when unknown:
    /// a reused pid has another.
    start: String,
}

#[derive(Debug, PartialEq, Eq)]
enum Liveness {
    Alive,
    Dead,
    Unknown,
}

/// `/proc/<pid>/stat`: Ok(None) when there is no such process or it is a zombie.
fn proc_start(pid: u32) -> std::io::Result<Option<String>> {
    let stat = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    // `pid (comm) state ...`: comm may hold spaces and parentheses; it ends at the last `)`.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state), so field 22 (starttime) is fields[19].
    match (fields.first(), fields.get(19)) {
        (Some(&("Z" | "X" | "x")), _) => Ok(None),
        (Some(_), Some(start)) => Ok(Some((*start).to_string())),
        _ => Err(std::io::Error::other("unexpected /proc/<pid>/stat format")),
    }
}

impl ProcessId {
    fn current() -> ProcessId {
        let pid = std::process::id();
        let ns = std::fs::read_link("/proc/self/ns/pid")
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let start = proc_start(pid).ok().flatten().unwrap_or_default();
        ProcessId { pid, ns, start }
    }

    /// Whether the process `self` recorded is still running, as far as `me` can tell.
    fn liveness(&self, me: &ProcessId) -> Liveness {
        if self.ns.is_empty() || self.start.is_empty() || self.ns != me.ns {
            return Liveness::Unknown;
        }
        match proc_start(self.pid) {
            Ok(Some(start)) if start == self.start => Liveness::Alive,
            Ok(_) => Liveness::Dead,
            Err(_) => Liveness::Unknown,
        }
    }
}

/// A session's lease as recorded.
struct LeaseRow {
    holder: String,
    process: ProcessId,
    expires_ms: i64,
}

async fn lease_row(conn: &Connection, session: &str) -> Result<Option<LeaseRow>, Fail> {
    let mut rows = conn
        .query(
            "SELECT holder, pid, pid_ns, pid_start, expires_ms FROM leases WHERE session_id = ?1",
            params![session],
        )
        .await?;
    match rows.next().await? {
        Some(r) => Ok(Some(LeaseRow {
            holder: r.get(0)?,
            process: ProcessId {
                pid: u32::try_from(r.get::<i64>(1)?).unwrap_or(0),
                ns: r.get(2)?,
                start: r.get(3)?,
            },
            expires_ms: r.get(4)?,
        })),
        None => Ok(None),
    }
}

impl LeaseRow {
    /// Whether another holder than `holder` has this lease and may still be working under
    /// it: not expired, and not known dead.
    fn held_by_other(&self, holder: &str, me: &ProcessId, now: i64) -> bool {
        self.holder != holder
            && self.expires_ms > now
            && self.process.liveness(me) != Liveness::Dead
    }
}

async fn session_exists(conn: &Connection, id: &str) -> Result<bool, Fail> {
    let mut rows = conn
        .query("SELECT 1 FROM sessions WHERE id = ?1", params![id])
        .await?;
    Ok(rows.next().await?.is_some())
}

async fn session_list(conn: &Connection, prefix: &str) -> Result<Vec<(String, String, i64)>, Fail> {
    let mut rows = conn
        .query(
            "SELECT s.id, s.agent, (SELECT COUNT(*) FROM turns t WHERE t.session_id = s.id) \
             FROM sessions s WHERE substr(s.id, 1, length(?1)) = ?1 \
             ORDER BY s.updated_ms DESC, s.id",
            params![prefix],
        )
        .await?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().await? {
        out.push((r.get(0)?, r.get(1)?, r.get(2)?));
    }
    Ok(out)
}

impl Store {
    /// Open (creating) the store file, with the [`DEFAULT_BUSY_TIMEOUT`].
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_with_timeout(path, DEFAULT_BUSY_TIMEOUT)
    }

    /// Open (creating) the store file; each operation waits up to `busy_timeout` for
    /// other writers before failing with [`StoreError::Busy`].
    pub fn open_with_timeout(path: &Path, busy_timeout: Duration) -> Result<Store, StoreError> {
        let open_err = |m: String| StoreError::Open {
            path: path.display().to_string(),
            message: m,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| open_err(e.to_string()))?;
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .map_err(|e| open_err(e.to_string()))?;
        let conn = rt
            .block_on(async {
                let db = Builder::new_local(path).build().await?;
                db.connect()
            })
            .map_err(|e| open_err(e.to_string()))?;
        retrying(&rt, &conn, busy_timeout, async |c| {
            // WAL: readers do not block the writer; synchronous=NORMAL is durable across
            // process crashes (kill -9), which is the failure this store must survive.
            c.query("PRAGMA journal_mode=WAL", ()).await?;
            c.execute("PRAGMA synchronous=NORMAL", ()).await?;
            // Every connection of a workspace opens the store (sessions, their runtimes,
            // lease keepers): once the schema is there, a read says so, and no write lock
            // is taken that would stall another process's turn.
            let mut rows = c
                .query(
                    "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN \
                     ('sessions', 'messages', 'summaries', 'turns', 'leases', 'channel_state', 'jobs', 'job_runs', \
                     'memory_docs', 'memory_tombstones', 'memory_meta', 'scratchpads') \
                     OR (type = 'index' AND name = 'memory_docs_user_key')",
                    (),
                )
                .await?;
            let present: i64 = match rows.next().await? {
                Some(r) => r.get(0)?,
                None => 0,
            };
            drop(rows);
            if present == SCHEMA_TABLES {
                return Ok(());
            }
            immediate(c, async |c| {
                c.execute_batch(SCHEMA).await?;
                c.execute_batch(jobs::JOB_TABLES).await?;
                c.execute_batch(memory::MEMORY_TABLES).await?;
                Ok(())
            })
            .await
        })
        .map_err(|e| match e {
            StoreError::Busy { .. } => e,
            other => open_err(other.to_string()),
        })?;
        let me = ProcessId::current();
        Ok(Store {
            rt,
            conn,
            lock: std::sync::Mutex::new(()),
            busy_timeout,
            holder: format!("{}-{:016x}", me.pid, random_u64()),
            me,
            path: path.to_path_buf(),
        })
    }

    /// Every operation goes through here: one connection, so operations take turns
    /// (SQLite has one writer anyway); each holds it for a statement or two. A locked
    /// database is waited for (see [`retrying`]), so `op` may run more than once: it must
    /// do all its writes in one transaction or one statement.
    fn exec<T>(&self, op: impl AsyncFn(&Connection) -> Result<T, Fail>) -> Result<T, StoreError> {
        let _turn = self
            .lock
            .lock()
            .map_err(|_| StoreError::Db("the store lock was poisoned by a crash".into()))?;
        retrying(&self.rt, &self.conn, self.busy_timeout, op)
    }

    pub fn create_session(&self, id: &str, agent: &str) -> Result<(), StoreError> {
        let now = now_ms();
        self.exec(async |c| {
            c.execute(
                "INSERT INTO sessions (id, agent, created_ms, updated_ms) VALUES (?1, ?2, ?3, ?3)",
                params![id, agent, now],
            )
            .await?;
            Ok(())
        })
    }

    /// A channel's durable state entry (`channel` names the channel and bot, e.g.
    /// `telegram:alice`).
    pub fn channel_get(&self, channel: &str, key: &str) -> Result<Option<String>, StoreError> {
        self.exec(async |c| {
            let mut rows = c
                .query(
                    "SELECT value FROM channel_state WHERE channel = ?1 AND key = ?2",
                    params![channel, key],
                )
                .await?;
            match rows.next().await? {
                Some(row) => Ok(Some(row.get::<String>(0)?)),
                None => Ok(None),
            }
        })
    }

    /// Set a channel's state entry; durable when this returns.
    pub fn channel_set(&self, channel: &str, key: &str, value: &str) -> Result<(), StoreError> {
        let now = now_ms();
        self.exec(async |c| {
            c.execute(
                "INSERT INTO channel_state (channel, key, value, updated_ms) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (channel, key) DO UPDATE SET value = excluded.value, updated_ms = excluded.updated_ms",
                params![channel, key, value, now],
            )
            .await?;
            Ok(())
        })
    }

    /// The agent a session belongs to, or `NoSession`.
    pub fn session_agent(&self, id: &str) -> Result<String, StoreError> {
        self.exec(async |c| {
            let mut rows = c
                .query("SELECT agent FROM sessions WHERE id = ?1", params![id])
                .await?;
            match rows.next().await? {
                Some(row) => Ok(row.get::<String>(0)?),
                None => Err(StoreError::NoSession(id.to_string()).into()),
            }
        })
    }

    /// Append a message; returns its sequence number. Durable when this returns.
    /// Safe from many processes at once: the next number is computed and used in one
    /// statement, inside the transaction that holds the write lock.
    pub fn append(&self, session: &str, turn: i64, body: &str) -> Result<i64, StoreError> {
        let now = now_ms();
        self.exec(async |c| {
            immediate(c, async |c| {
                let mut rows = c
                    .query(
                        "INSERT INTO messages (session_id, seq, turn, body, created_ms) \
                         SELECT ?1, COALESCE(MAX(seq), 0) + 1, ?2, ?3, ?4 FROM messages WHERE session_id = ?1 \
                         RETURNING seq",
                        params![session, turn, body, now],
                    )
                    .await?;
                let seq: i64 = match rows.next().await? {
                    Some(r) => r.get(0)?,
                    None => return Err(StoreError::Db("append: no sequence number".into()).into()),
                };
                drop(rows);
                c.execute(
                    "UPDATE sessions SET updated_ms = ?2 WHERE id = ?1",
                    params![session, now],
                )
                .await?;
                Ok(seq)
            })
            .await
        })
    }

    /// Every message of a session, in order.
    pub fn messages(&self, session: &str) -> Result<Vec<StoredMessage>, StoreError> {
        self.exec(async |c| {
            let mut rows = c
                .query(
                    "SELECT seq, turn, body FROM messages WHERE session_id = ?1 ORDER BY seq",
                    params![session],
                )
                .await?;
            let mut out = Vec::new();
            while let Some(r) = rows.next().await? {
                out.push(StoredMessage {
                    seq: r.get(0)?,
                    turn: r.get(1)?,
                    body: r.get(2)?,
                });
            }
            Ok(out)
        })
    }

    /// Start the next turn of a session; returns its number. Safe from many processes at
    /// once: the number is computed and used in one statement.
    pub fn begin_turn(&self, session: &str) -> Result<i64, StoreError> {
        let now = now_ms();
        self.exec(async |c| {
            let mut rows = c
                .query(
                    "INSERT INTO turns (session_id, turn, status, started_ms) \
                     SELECT ?1, COALESCE(MAX(turn), 0) + 1, 'running', ?2 FROM turns WHERE session_id = ?1 \
                     RETURNING turn",
                    params![session, now],
                )
                .await?;
            match rows.next().await? {
                Some(r) => Ok(r.get(0)?),
                None => Err(StoreError::Db("begin_turn: no turn number".into()).into()),
            }
        })
    }

    pub fn end_turn(
        &self,
        session: &str,
        turn: i64,
        status: TurnStatus,
        detail: &str,
        cost: f64,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        self.exec(async |c| {
            c.execute(
                "UPDATE turns SET status = ?3, detail = ?4, cost = ?5, ended_ms = ?6 WHERE session_id = ?1 AND turn = ?2",
                params![session, turn, status.as_str(), detail, cost, now],
            )
            .await?;
            Ok(())
        })
    }

    /// Sessions, most recently active first: (id, agent, number of turns).
    pub fn sessions(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        self.exec(async |c| session_list(c, "").await)
    }

    /// Sessions with at least one turn whose last message is older than `before_ms`
    /// (Unix ms), least recently active first: (id, agent, last activity in Unix ms).
    pub fn sessions_idle_since(
        &self,
        before_ms: i64,
    ) -> Result<Vec<(String, String, i64)>, StoreError> {
        self.exec(async |c| {
            let mut rows = c
                .query(
                    "SELECT s.id, s.agent, s.updated_ms FROM sessions s \
                     WHERE s.updated_ms < ?1 AND EXISTS (SELECT 1 FROM turns t WHERE t.session_id = s.id) \
                     ORDER BY s.updated_ms, s.id",
                    params![before_ms],
                )
                .await?;
            let mut out = Vec::new();
            while let Some(r) = rows.next().await? {
                out.push((r.get(0)?, r.get(1)?, r.get(2)?));
            }
            Ok(out)
        })
    }

    /// The sessions whose id starts with `prefix` (exactly, case-sensitively; no
    /// wildcards), most recently active first: (id, agent, number of turns).
    pub fn sessions_with_prefix(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, String, i64)>, StoreError> {
        self.exec(async |c| session_list(c, prefix).await)
    }

    /// Record a summary of every turn up to and including `upto_turn`.
    pub fn save_summary(
        &self,
        session: &str,
        upto_turn: i64,
        body: &str,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        self.exec(async |c| {
            c.execute(
                "INSERT OR REPLACE INTO summaries (session_id, upto_turn, body, created_ms) VALUES (?1, ?2, ?3, ?4)",
                params![session, upto_turn, body, now],
            )
            .await?;
            Ok(())
        })
    }

    /// The newest summary: (the last turn it covers, its text).
    pub fn latest_summary(&self, session: &str) -> Result<Option<(i64, String)>, StoreError> {
        self.exec(async |c| {
            let mut rows = c
                .query(
                    "SELECT upto_turn, body FROM summaries WHERE session_id = ?1 ORDER BY upto_turn DESC LIMIT 1",
                    params![session],
                )
                .await?;
            match rows.next().await? {
                Some(r) => Ok(Some((r.get(0)?, r.get(1)?))),
                None => Ok(None),
            }
        })
    }

    /// Turns still marked running when no process runs them (the process was killed):
    /// marked failed, so the history stays and the next turn starts cleanly. Returns how
    /// many were marked.
    ///
    /// While another live holder has the session's lease (see [`Lease`]), its running
    /// turn is really running: nothing is marked and this returns 0. Otherwise (no lease,
    /// this store's own lease, or an expired or dead holder's) every running turn is
    /// marked. So the exact use is: [`Store::acquire_lease`] first, then this, before
    /// starting turns; without a lease it still cannot fail another leaseholder's turn.
    pub fn mark_interrupted(&self, session: &str) -> Result<u64, StoreError> {
        let now = now_ms();
        self.exec(async |c| {
            immediate(c, async |c| {
                if let Some(lease) = lease_row(c, session).await?
                    && lease.held_by_other(&self.holder, &self.me, now)
                {
                    return Ok(0);
                }
                Ok(c.execute(
                    "UPDATE turns SET status = 'failed', detail = 'interrupted: the process ended during the turn', ended_ms = ?2 \
                     WHERE session_id = ?1 AND status = 'running'",
                    params![session, now],
                )
                .await?)
            })
            .await
        })
    }

    pub fn turns(&self, session: &str) -> Result<Vec<TurnRecord>, StoreError> {
        self.exec(async |c| {
            let mut rows = c
                .query(
                    "SELECT turn, status, detail, cost FROM turns WHERE session_id = ?1 ORDER BY turn",
                    params![session],
                )
                .await?;
            let mut out = Vec::new();
            while let Some(r) = rows.next().await? {
                out.push(TurnRecord {
                    turn: r.get(0)?,
                    status: TurnStatus::parse(&r.get::<String>(1)?),
                    detail: r.get(2)?,
                    cost: r.get(3)?,
                });
            }
            Ok(out)
        })
    }

    /// The session's newest turn still marked running, if any (it may be running in
    /// another process, or have been cut off: see [`Store::mark_interrupted`]).
    pub fn running_turn(&self, session: &str) -> Result<Option<i64>, StoreError> {
        self.exec(async |c| {
            let mut rows = c
                .query(
                    "SELECT MAX(turn) FROM turns WHERE session_id = ?1 AND status = 'running'",
                    params![session],
                )
                .await?;
            match rows.next().await? {
                Some(r) => Ok(r.get::<Option<i64>>(0)?),
                None => Ok(None),
            }
        })
    }

    /// Take the session's lease for `ttl` (see [`Lease`] for when that succeeds). Fails
    /// with [`StoreError::SessionBusy`] while another live holder has it, and with
    /// [`StoreError::NoSession`] for a session that does not exist.
    pub fn acquire_lease(&self, session: &str, ttl: Duration) -> Result<Lease, StoreError> {
        self.exec(async |c| {
            immediate(c, async |c| {
                if !session_exists(c, session).await? {
                    return Err(StoreError::NoSession(session.to_string()).into());
                }
                let now = now_ms();
                if let Some(lease) = lease_row(c, session).await?
                    && lease.held_by_other(&self.holder, &self.me, now)
                {
                    return Err(StoreError::SessionBusy {
                        session: session.to_string(),
                        holder_pid: lease.process.pid,
                        expires_in_ms: lease.expires_ms - now,
                    }
                    .into());
                }
                let expires_ms = now.saturating_add(ms(ttl));
                c.execute(
                    "INSERT OR REPLACE INTO leases (session_id, holder, pid, pid_ns, pid_start, expires_ms) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        session,
                        self.holder.as_str(),
                        i64::from(self.me.pid),
                        self.me.ns.as_str(),
                        self.me.start.as_str(),
                        expires_ms
                    ],
                )
                .await?;
                Ok(Lease {
                    session: session.to_string(),
                    holder: self.holder.clone(),
                    expires_ms,
                })
            })
            .await
        })
    }

    /// Extend a held lease to `ttl` from now. Fails with [`StoreError::LeaseLost`] when
    /// another holder has taken it meanwhile (it had expired, or this holder looked dead);
    /// a lease that expired but was not taken is simply renewed.
    pub fn renew_lease(&self, lease: &mut Lease, ttl: Duration) -> Result<(), StoreError> {
        let expires_ms = now_ms().saturating_add(ms(ttl));
        let renewed = self.exec(async |c| {
            Ok(c.execute(
                "UPDATE leases SET expires_ms = ?3 WHERE session_id = ?1 AND holder = ?2",
                params![lease.session.as_str(), lease.holder.as_str(), expires_ms],
            )
            .await?)
        })?;
        if renewed == 0 {
            return Err(StoreError::LeaseLost(lease.session.clone()));
        }
        lease.expires_ms = expires_ms;
        Ok(())
    }

    /// Give a lease up, so another process may take the session at once. Releasing a
    /// lease that was already lost (or released) does nothing.
    pub fn release_lease(&self, lease: Lease) -> Result<(), StoreError> {
        self.exec(async |c| {
            c.execute(
                "DELETE FROM leases WHERE session_id = ?1 AND holder = ?2",
                params![lease.session.as_str(), lease.holder.as_str()],
            )
            .await?;
            Ok(())
        })
    }
}

/// Many leases of one process, kept renewed by one thread with one connection of its
/// own (so renewals go on while turns are busy in long model calls), from
/// [`Store::lease_set`]. A live session costs a row, not a thread and a connection.
pub struct LeaseSet {
    inner: std::sync::Arc<LeaseSetInner>,
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct LeaseSetInner {
    store: Store,
    ttl: Duration,
    /// Each held lease with the generation of the handle that holds it.
    held: Mutex<BTreeMap<String, (u64, Lease)>>,
    lost: Mutex<std::collections::BTreeSet<String>>,
    next: std::sync::atomic::AtomicU64,
}

/// One lease in a [`LeaseSet`]; dropping it releases the lease.
pub struct HeldLease {
    set: std::sync::Arc<LeaseSetInner>,
    session: String,
    /// A later handle for the same session (which should not happen) is not released by
    /// this one's drop.
    generation: u64,
}

impl HeldLease {
    pub fn session(&self) -> &str {
        &self.session
    }
    /// The lease could not be renewed in time and another process took it.
    pub fn is_lost(&self) -> bool {
        lock(&self.set.lost).contains(&self.session)
    }
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        let mine = {
            let mut held = lock(&self.set.held);
            match held.get(&self.session) {
                Some((g, _)) if *g == self.generation => held.remove(&self.session),
                _ => None,
            }
        };
        if let Some((_, lease)) = mine {
            lock(&self.set.lost).remove(&self.session);
            let _ = self.set.store.release_lease(lease);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl LeaseSetInner {
    fn renew_all(&self) {
        let sessions: Vec<String> = lock(&self.held).keys().cloned().collect();
        for s in sessions {
            let Some((generation, mut lease)) = lock(&self.held).get(&s).cloned() else {
                continue;
            };
            let same = |held: &BTreeMap<String, (u64, Lease)>| {
                held.get(&s).is_some_and(|(g, _)| *g == generation)
            };
            match self.store.renew_lease(&mut lease, self.ttl) {
                Ok(()) => {
                    let mut held = lock(&self.held);
                    if same(&held)
                        && let Some((_, l)) = held.get_mut(&s)
                    {
                        l.expires_ms = lease.expires_ms;
                    }
                }
                Err(StoreError::LeaseLost(_)) => {
                    let mut held = lock(&self.held);
                    if same(&held) {
                        held.remove(&s);
                        lock(&self.lost).insert(s);
                    }
                }
                // A locked database: tried again at the next tick.
                Err(_) => {}
            }
        }
    }
}

impl Store {
    /// A [`LeaseSet`] renewing its leases every third of `ttl`.
    pub fn lease_set(&self, ttl: Duration) -> Result<LeaseSet, StoreError> {
        let inner = std::sync::Arc::new(LeaseSetInner {
            store: Store::open_with_timeout(&self.path, self.busy_timeout)?,
            ttl,
            held: Mutex::new(BTreeMap::new()),
            lost: Mutex::new(Default::default()),
            next: std::sync::atomic::AtomicU64::new(0),
        });
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let period = (ttl / 3).max(Duration::from_millis(1));
        let me = inner.clone();
        let thread = std::thread::Builder::new()
            .name("leases".into())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(period)
                {
                    me.renew_all();
                }
            })
            .map_err(|e| StoreError::Db(format!("cannot start the lease thread: {e}")))?;
        Ok(LeaseSet {
            inner,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl LeaseSet {
    /// Keep `lease` (taken with this set's TTL) renewed until the handle is dropped.
    pub fn keep(&self, lease: Lease) -> HeldLease {
        let session = lease.session.clone();
        let generation = self
            .inner
            .next
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        lock(&self.inner.lost).remove(&session);
        lock(&self.inner.held).insert(session.clone(), (generation, lease));
        HeldLease {
            set: self.inner.clone(),
            session,
            generation,
        }
    }

    /// How many leases it holds.
    pub fn len(&self) -> usize {
        lock(&self.inner.held).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for LeaseSet {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// Hold the database's write lock on `s`'s connection until `unlock`.
    fn lock_db(s: &Store) {
        s.exec(async |c| {
            c.execute("BEGIN IMMEDIATE", ()).await?;
            Ok(())
        })
        .unwrap();
    }
    fn unlock_db(s: &Store) {
        s.exec(async |c| {
            c.execute("COMMIT", ()).await?;
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn a_database_locked_past_the_timeout_is_a_busy_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let holder = Store::open(&path).unwrap();
        holder.create_session("s", "a").unwrap();
        let waiter = Store::open_with_timeout(&path, Duration::from_millis(200)).unwrap();
        lock_db(&holder);
        let err = waiter.append("s", 1, "x").unwrap_err();
        assert!(
            matches!(err, StoreError::Busy { timeout_ms: 200 }),
            "{err:?}"
        );
        assert!(err.to_string().contains("200 ms"), "{err}");
        // Reads are not blocked by a writer (WAL).
        assert!(waiter.messages("s").unwrap().is_empty());
        unlock_db(&holder);
        assert_eq!(waiter.append("s", 1, "x").unwrap(), 1);
    }

    #[test]
    fn a_writer_waits_for_another_writer_instead_of_failing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let holder = Store::open(&path).unwrap();
        holder.create_session("s", "a").unwrap();
        let waiter = Store::open(&path).unwrap();
        lock_db(&holder);
        std::thread::scope(|scope| {
            let w = scope.spawn(|| (waiter.append("s", 1, "x"), waiter.begin_turn("s")));
            // Let the waiter find the database locked, then let it go.
            std::thread::sleep(Duration::from_millis(50));
            unlock_db(&holder);
            let (seq, turn) = w.join().unwrap();
            assert_eq!(seq.unwrap(), 1);
            assert_eq!(turn.unwrap(), 1);
        });
    }

    #[test]
    fn leases_in_a_set_are_renewed_by_one_thread_and_released_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let a = Store::open(&path).unwrap();
        let b = Store::open(&path).unwrap();
        a.create_session("s", "x").unwrap();
        a.create_session("t", "x").unwrap();
        let ttl = Duration::from_millis(300);
        let set = a.lease_set(ttl).unwrap();
        let lease = a.acquire_lease("s", ttl).unwrap();
        let first = lease.expires_ms();
        let held = set.keep(lease);
        let other = set.keep(a.acquire_lease("t", ttl).unwrap());
        assert_eq!((held.session(), set.len()), ("s", 2));
        let expiry = |s: &'static str| {
            b.exec(async |c| Ok(lease_row(c, s).await?.map(|l| l.expires_ms)))
                .unwrap()
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while expiry("s").unwrap() <= first {
            assert!(Instant::now() < deadline, "the set never renewed");
            std::thread::sleep(Duration::from_millis(20));
        }
        // Renewed past its first TTL: another holder still cannot take it.
        std::thread::sleep(ttl);
        assert!(matches!(
            b.acquire_lease("s", ttl),
            Err(StoreError::SessionBusy { .. })
        ));
        assert!(!held.is_lost());
        drop(held);
        assert_eq!(expiry("s"), None);
        assert_eq!(set.len(), 1);
        b.acquire_lease("s", Duration::from_secs(3600)).unwrap();
        assert!(expiry("t").is_some());
        drop(other);
        assert!(set.is_empty());
    }

    #[test]
    fn this_process_is_alive_and_a_reaped_child_is_dead() {
        let me = ProcessId::current();
        if me.ns.is_empty() {
            return; // not Linux: liveness is unknown, leases rely on their TTL
        }
        assert_eq!(me.liveness(&me), Liveness::Alive);
        let mut reused = me.clone();
        reused.start.push('0');
        assert_eq!(reused.liveness(&me), Liveness::Dead);
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let gone = ProcessId { pid, ..me.clone() };
        assert_eq!(gone.liveness(&me), Liveness::Dead);
        let elsewhere = ProcessId {
            ns: "pid:[1]".into(),
            ..me.clone()
        };
        assert_eq!(elsewhere.liveness(&me), Liveness::Unknown);
    }

    #[test]
    fn concurrent_sessions_do_not_trip_over_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("store.db")).unwrap();
        std::thread::scope(|scope| {
            for t in 0..8 {
                let s = &s;
                scope.spawn(move || {
                    let id = format!("s{t}");
                    s.create_session(&id, "a").unwrap();
                    let turn = s.begin_turn(&id).unwrap();
                    for i in 0..50 {
                        s.append(&id, turn, &format!("{i}")).unwrap();
                    }
                    s.end_turn(&id, turn, TurnStatus::Completed, "", 0.0)
                        .unwrap();
                });
            }
        });
        for t in 0..8 {
            let seqs: Vec<i64> = s
                .messages(&format!("s{t}"))
                .unwrap()
                .iter()
                .map(|m| m.seq)
                .collect();
            assert_eq!(seqs, (1..=50).collect::<Vec<_>>());
        }
    }

    #[test]
    fn messages_survive_reopening_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        {
            let s = Store::open(&path).unwrap();
            s.create_session("s1", "default").unwrap();
            let t = s.begin_turn("s1").unwrap();
            assert_eq!(t, 1);
            assert_eq!(s.append("s1", t, "{\"a\":1}").unwrap(), 1);
            assert_eq!(s.append("s1", t, "{\"b\":2}").unwrap(), 2);
            s.end_turn("s1", t, TurnStatus::Budget, "max turns", 0.01)
                .unwrap();
        }
        let s = Store::open(&path).unwrap();
        let m = s.messages("s1").unwrap();
        assert_eq!(
            m.iter().map(|m| m.body.as_str()).collect::<Vec<_>>(),
            vec!["{\"a\":1}", "{\"b\":2}"]
        );
        assert_eq!(s.turns("s1").unwrap()[0].status, TurnStatus::Budget);
        assert_eq!(s.begin_turn("s1").unwrap(), 2);
        assert!(matches!(
            s.session_agent("nope"),
            Err(StoreError::NoSession(_))
        ));
    }
}
