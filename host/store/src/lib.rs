//! Persistence on embedded libSQL: sessions, their messages in order, and the status of
//! each turn. A message is written before it is used (sent to the model, shown, or acted
//! on), so a session resumes with its full context after a restart, even a `kill -9` in
//! the middle of a turn, and a failed or budget-stopped turn keeps its history.
//!
//! The store speaks plain JSON for message bodies and knows nothing of the layers above.
//! libSQL's API is async; this store runs it on its own current-thread runtime and offers
//! a blocking API, which is what the (synchronous) turn loop wants.

use libsql::{Builder, Connection, params};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {path}: {message}")]
    Open { path: String, message: String },
    #[error("store: {0}")]
    Db(String),
    #[error("no session `{0}`; `oxydra-host run` without --session starts a new one")]
    NoSession(String),
}

impl From<libsql::Error> for StoreError {
    fn from(e: libsql::Error) -> Self {
        StoreError::Db(e.to_string())
    }
}

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

pub struct Store {
    rt: tokio::runtime::Runtime,
    conn: Connection,
    /// One connection, many sessions: operations take turns (SQLite has one writer
    /// anyway). Each holds it for a statement or two, microseconds.
    lock: std::sync::Mutex<()>,
}

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
";

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Store {
    /// Open (creating) the store file.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
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
        let conn = rt.block_on(async {
            let db = Builder::new_local(path).build().await?;
            let conn = db.connect()?;
            // WAL: readers do not block the writer; synchronous=NORMAL is durable across
            // process crashes (kill -9), which is the failure this store must survive.
            conn.query("PRAGMA journal_mode=WAL", ()).await?;
            conn.execute("PRAGMA synchronous=NORMAL", ()).await?;
            conn.execute_batch(SCHEMA).await?;
            Ok::<_, libsql::Error>(conn)
        });
        let conn = conn.map_err(|e| open_err(e.to_string()))?;
        Ok(Store {
            rt,
            conn,
            lock: std::sync::Mutex::new(()),
        })
    }

    /// Every operation goes through here: one connection, so operations take turns
    /// (SQLite has one writer anyway); each holds it for a statement or two.
    fn exec<T, E: Into<StoreError>>(
        &self,
        work: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, StoreError> {
        let _turn = self
            .lock
            .lock()
            .map_err(|_| StoreError::Db("the store lock was poisoned by a crash".into()))?;
        self.rt.block_on(work).map_err(Into::into)
    }

    pub fn create_session(&self, id: &str, agent: &str) -> Result<(), StoreError> {
        let now = now_ms();
        self.exec(self.conn.execute(
            "INSERT INTO sessions (id, agent, created_ms, updated_ms) VALUES (?1, ?2, ?3, ?3)",
            params![id, agent, now],
        ))?;
        Ok(())
    }

    /// The agent a session belongs to, or `NoSession`.
    pub fn session_agent(&self, id: &str) -> Result<String, StoreError> {
        self.exec(async {
            let mut rows = self
                .conn
                .query("SELECT agent FROM sessions WHERE id = ?1", params![id])
                .await?;
            match rows.next().await? {
                Some(row) => Ok(row.get::<String>(0)?),
                None => Err(StoreError::NoSession(id.to_string())),
            }
        })
    }

    /// Append a message; returns its sequence number. Durable when this returns.
    pub fn append(&self, session: &str, turn: i64, body: &str) -> Result<i64, StoreError> {
        let now = now_ms();
        self.exec(async {
            let tx = self.conn.transaction().await?;
            let mut rows = tx
                .query("SELECT COALESCE(MAX(seq), 0) + 1 FROM messages WHERE session_id = ?1", params![session])
                .await?;
            let seq: i64 = match rows.next().await? {
                Some(r) => r.get(0)?,
                None => 1,
            };
            drop(rows);
            tx.execute(
                "INSERT INTO messages (session_id, seq, turn, body, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![session, seq, turn, body, now],
            )
            .await?;
            tx.execute("UPDATE sessions SET updated_ms = ?2 WHERE id = ?1", params![session, now]).await?;
            tx.commit().await?;
            Ok::<_, StoreError>(seq)
        })
    }

    /// Every message of a session, in order.
    pub fn messages(&self, session: &str) -> Result<Vec<StoredMessage>, StoreError> {
        self.exec(async {
            let mut rows = self
                .conn
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
            Ok::<_, StoreError>(out)
        })
    }

    /// Start the next turn of a session; returns its number.
    pub fn begin_turn(&self, session: &str) -> Result<i64, StoreError> {
        let now = now_ms();
        self.exec(async {
            let mut rows = self
                .conn
                .query("SELECT COALESCE(MAX(turn), 0) + 1 FROM turns WHERE session_id = ?1", params![session])
                .await?;
            let turn: i64 = match rows.next().await? {
                Some(r) => r.get(0)?,
                None => 1,
            };
            drop(rows);
            self.conn
                .execute(
                    "INSERT INTO turns (session_id, turn, status, started_ms) VALUES (?1, ?2, 'running', ?3)",
                    params![session, turn, now],
                )
                .await?;
            Ok::<_, StoreError>(turn)
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
        self.exec(self.conn.execute(
            "UPDATE turns SET status = ?3, detail = ?4, cost = ?5, ended_ms = ?6 WHERE session_id = ?1 AND turn = ?2",
            params![session, turn, status.as_str(), detail, cost, now],
        ))?;
        Ok(())
    }

    /// Sessions, most recently active first: (id, agent, number of turns).
    pub fn sessions(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        self.exec(async {
            let mut rows = self
                .conn
                .query(
                    "SELECT s.id, s.agent, (SELECT COUNT(*) FROM turns t WHERE t.session_id = s.id) \
                     FROM sessions s ORDER BY s.updated_ms DESC, s.id",
                    (),
                )
                .await?;
            let mut out = Vec::new();
            while let Some(r) = rows.next().await? {
                out.push((r.get(0)?, r.get(1)?, r.get(2)?));
            }
            Ok::<_, StoreError>(out)
        })
    }

    /// Record a summary of every turn up to and including `upto_turn`.
    pub fn save_summary(
        &self,
        session: &str,
        upto_turn: i64,
        body: &str,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        self.exec(self.conn.execute(
            "INSERT OR REPLACE INTO summaries (session_id, upto_turn, body, created_ms) VALUES (?1, ?2, ?3, ?4)",
            params![session, upto_turn, body, now],
        ))?;
        Ok(())
    }

    /// The newest summary: (the last turn it covers, its text).
    pub fn latest_summary(&self, session: &str) -> Result<Option<(i64, String)>, StoreError> {
        self.exec(async {
            let mut rows = self
                .conn
                .query(
                    "SELECT upto_turn, body FROM summaries WHERE session_id = ?1 ORDER BY upto_turn DESC LIMIT 1",
                    params![session],
                )
                .await?;
            match rows.next().await? {
                Some(r) => Ok::<_, StoreError>(Some((r.get(0)?, r.get(1)?))),
                None => Ok(None),
            }
        })
    }

    /// Turns still marked running when no process runs them (the process was killed):
    /// marked failed, so the history stays and the next turn starts cleanly.
    pub fn mark_interrupted(&self, session: &str) -> Result<u64, StoreError> {
        let now = now_ms();
        self.exec(self.conn.execute(
            "UPDATE turns SET status = 'failed', detail = 'interrupted: the process ended during the turn', ended_ms = ?2 \
             WHERE session_id = ?1 AND status = 'running'",
            params![session, now],
        ))
    }

    pub fn turns(&self, session: &str) -> Result<Vec<TurnRecord>, StoreError> {
        self.exec(async {
            let mut rows = self
                .conn
                .query("SELECT turn, status, detail, cost FROM turns WHERE session_id = ?1 ORDER BY turn", params![session])
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
            Ok::<_, StoreError>(out)
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

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
