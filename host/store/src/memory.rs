//! Memory's store of record: every note, conversation exchange and session summary of
//! each user, with its embedding, plus each session's scratchpad. The search indexes
//! (host/memory) are derived from these rows and rebuilt from them.
//!
//! Every write bumps one workspace-wide generation in the same transaction, and each row
//! records the generation that last wrote it (a deletion leaves a tombstone with its
//! generation). An index that remembers the generation it has applied catches up with
//! [`Store::memory_changes`]: nothing written here can be missed by an index, even one
//! that failed to update or belongs to another process.

use super::{Fail, Store, StoreError, immediate, now_ms};
use libsql::{Connection, Row, params};

/// `memory_docs_user_key` serves a user's documents by key (a search's hits, a rebuild's
/// pages): without it SQLite answers `user_id = ? AND key IN (...)` from
/// `memory_docs_user_updated`, reading every one of the user's rows (~10 ms at 100,000
/// notes instead of ~0.1 ms).
pub(crate) const MEMORY_TABLES: &str = "
CREATE TABLE IF NOT EXISTS memory_docs (
    key INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL,
    id TEXT NOT NULL UNIQUE,
    source TEXT NOT NULL,
    session_id TEXT,
    content TEXT NOT NULL,
    tags TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    embedding BLOB,
    model TEXT NOT NULL DEFAULT '',
    gen INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS memory_docs_user_gen ON memory_docs (user_id, gen);
CREATE INDEX IF NOT EXISTS memory_docs_user_updated ON memory_docs (user_id, source, updated_ms);
CREATE INDEX IF NOT EXISTS memory_docs_user_key ON memory_docs (user_id, key);
CREATE TABLE IF NOT EXISTS memory_tombstones (
    key INTEGER PRIMARY KEY,
    user_id TEXT NOT NULL,
    gen INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS memory_tombstones_user_gen ON memory_tombstones (user_id, gen);
CREATE TABLE IF NOT EXISTS memory_meta (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS scratchpads (
    user_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    items TEXT NOT NULL,
    updated_ms INTEGER NOT NULL,
    PRIMARY KEY (user_id, session_id)
);
";

/// One stored memory document. `source` is `note`, `conversation` or `summary`; `tags`
/// is a JSON array; `embedding` is little-endian f32s from the model named `model`.
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryDoc {
    /// The index key: stable for the document's life, never reused.
    pub key: u64,
    pub user: String,
    /// The id tools and the CLI show (`note-…`, `<session>:<turn>`).
    pub id: String,
    pub source: String,
    pub session: Option<String>,
    pub content: String,
    pub tags: String,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub embedding: Option<Vec<u8>>,
    pub model: String,
    pub generation: i64,
}

/// A document to write (a new one, or a new version of `id`).
#[derive(Debug, Clone, Default)]
pub struct MemoryWrite {
    pub id: String,
    pub source: String,
    pub session: Option<String>,
    pub content: String,
    pub tags: String,
    pub embedding: Option<Vec<u8>>,
    pub model: String,
}

/// What changed for a user after a generation: documents written (latest versions) and
/// keys deleted, with the generation they bring the reader to.
#[derive(Debug, Default)]
pub struct MemoryChanges {
    pub docs: Vec<MemoryDoc>,
    pub deleted: Vec<u64>,
    /// The highest generation covered (`since` when nothing changed).
    pub upto: i64,
    /// More changes remain after `upto` (ask again from it).
    pub more: bool,
}

const DOC_COLUMNS: &str = "key, user_id, id, source, session_id, content, tags, created_ms, updated_ms, embedding, model, gen";

fn doc(r: &Row) -> Result<MemoryDoc, Fail> {
    Ok(MemoryDoc {
        key: u64::try_from(r.get::<i64>(0)?).unwrap_or(0),
        user: r.get(1)?,
        id: r.get(2)?,
        source: r.get(3)?,
        session: r.get(4)?,
        content: r.get(5)?,
        tags: r.get(6)?,
        created_ms: r.get(7)?,
        updated_ms: r.get(8)?,
        embedding: r.get(9)?,
        model: r.get(10)?,
        generation: r.get(11)?,
    })
}

async fn next_gen(c: &Connection) -> Result<i64, Fail> {
    c.execute(
        "INSERT INTO memory_meta (name, value) VALUES ('gen', 1) \
         ON CONFLICT(name) DO UPDATE SET value = value + 1",
        (),
    )
    .await?;
    current_gen(c).await
}

async fn current_gen(c: &Connection) -> Result<i64, Fail> {
    let mut rows = c
        .query("SELECT value FROM memory_meta WHERE name = 'gen'", ())
        .await?;
    Ok(match rows.next().await? {
        Some(r) => r.get(0)?,
        None => 0,
    })
}

async fn docs_where(
    c: &Connection,
    clause: &str,
    p: Vec<libsql::Value>,
) -> Result<Vec<MemoryDoc>, Fail> {
    let mut rows = c
        .query(
            &format!("SELECT {DOC_COLUMNS} FROM memory_docs WHERE {clause}"),
            p,
        )
        .await?;
    let mut out = Vec::new();
    while let Some(r) = rows.next().await? {
        out.push(doc(&r)?);
    }
    Ok(out)
}

fn key_i64(key: u64) -> i64 {
    i64::try_from(key).unwrap_or(i64::MAX)
}

impl Store {
    /// The latest memory generation of the workspace (0 before the first write).
    pub fn memory_gen(&self) -> Result<i64, StoreError> {
        self.exec(async |c| current_gen(c).await)
    }

    /// Write `doc` for `user`: a new document, or the new version of the one with its id
    /// (which must be `user`'s). Durable when this returns.
    pub fn memory_put(&self, user: &str, w: &MemoryWrite) -> Result<MemoryDoc, StoreError> {
        let now = now_ms();
        self.exec(async |c| {
            immediate(c, async |c| {
                let gen_ = next_gen(c).await?;
                let owner = docs_where(c, "id = ?1", vec![w.id.clone().into()]).await?;
                if let Some(other) = owner.first()
                    && other.user != user
                {
                    return Err(Fail::Store(StoreError::Db(format!(
                        "memory id `{}` belongs to another user",
                        w.id
                    ))));
                }
                c.execute(
                    "INSERT INTO memory_docs (user_id, id, source, session_id, content, tags, created_ms, updated_ms, embedding, model, gen) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8, ?9, ?10) \
                     ON CONFLICT(id) DO UPDATE SET content = excluded.content, tags = excluded.tags, \
                     updated_ms = excluded.updated_ms, embedding = excluded.embedding, model = excluded.model, gen = excluded.gen",
                    params![
                        user,
                        w.id.as_str(),
                        w.source.as_str(),
                        w.session.clone(),
                        w.content.as_str(),
                        w.tags.as_str(),
                        now,
                        w.embedding.clone(),
                        w.model.as_str(),
                        gen_
                    ],
                )
                .await?;
                let mut got = docs_where(c, "id = ?1", vec![w.id.clone().into()]).await?;
                got.pop()
                    .ok_or_else(|| Fail::Store(StoreError::Db("memory: the write vanished".into())))
            })
            .await
        })
    }

    /// `user`'s document `id`, if any.
    pub fn memory_get(&self, user: &str, id: &str) -> Result<Option<MemoryDoc>, StoreError> {
        self.exec(async |c| {
            Ok(
                docs_where(c, "user_id = ?1 AND id = ?2", vec![user.into(), id.into()])
                    .await?
                    .pop(),
            )
        })
    }

    /// `user`'s documents with these keys, in no particular order (missing keys are
    /// left out).
    pub fn memory_by_keys(&self, user: &str, keys: &[u64]) -> Result<Vec<MemoryDoc>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let list = keys
            .iter()
            .map(|k| key_i64(*k).to_string())
            .collect::<Vec<_>>()
            .join(",");
        self.exec(async |c| {
            docs_where(
                c,
                &format!("user_id = ?1 AND key IN ({list})"),
                vec![user.into()],
            )
            .await
        })
    }

    /// Delete `user`'s document `id`; `false` when there was none.
    pub fn memory_delete(&self, user: &str, id: &str) -> Result<bool, StoreError> {
        self.exec(async |c| {
            immediate(c, async |c| {
                let Some(d) = docs_where(c, "user_id = ?1 AND id = ?2", vec![user.into(), id.into()])
                    .await?
                    .pop()
                else {
                    return Ok(false);
                };
                let gen_ = next_gen(c).await?;
                c.execute("DELETE FROM memory_docs WHERE key = ?1", params![key_i64(d.key)])
                    .await?;
                c.execute(
                    "INSERT OR REPLACE INTO memory_tombstones (key, user_id, gen) VALUES (?1, ?2, ?3)",
                    params![key_i64(d.key), user, gen_],
                )
                .await?;
                Ok(true)
            })
            .await
        })
    }

    /// What changed for `user` after generation `since`, at most `limit` documents at a
    /// time, oldest change first.
    pub fn memory_changes(
        &self,
        user: &str,
        since: i64,
        limit: u32,
    ) -> Result<MemoryChanges, StoreError> {
        self.exec(async |c| {
            let docs = docs_where(
                c,
                &format!("user_id = ?1 AND gen > ?2 ORDER BY gen LIMIT {}", limit.max(1)),
                vec![user.into(), since.into()],
            )
            .await?;
            let more = docs.len() >= limit.max(1) as usize;
            // Deletions up to the last document returned (all of them when it is complete).
            let upto = match (more, docs.last()) {
                (true, Some(d)) => d.generation,
                _ => current_gen(c).await?,
            };
            let mut rows = c
                .query(
                    "SELECT key FROM memory_tombstones WHERE user_id = ?1 AND gen > ?2 AND gen <= ?3",
                    params![user, since, upto],
                )
                .await?;
            let mut deleted = Vec::new();
            while let Some(r) = rows.next().await? {
                deleted.push(u64::try_from(r.get::<i64>(0)?).unwrap_or(0));
            }
            Ok(MemoryChanges {
                docs,
                deleted,
                upto,
                more,
            })
        })
    }

    /// `user`'s documents of `source` in key order after `after`, `limit` at a time (for
    /// rebuilding an index or listing).
    pub fn memory_page(
        &self,
        user: &str,
        source: Option<&str>,
        after: u64,
        limit: u32,
    ) -> Result<Vec<MemoryDoc>, StoreError> {
        self.exec(async |c| {
            let mut p: Vec<libsql::Value> = vec![user.into(), key_i64(after).into()];
            let mut clause = "user_id = ?1 AND key > ?2".to_string();
            if let Some(s) = source {
                clause.push_str(" AND source = ?3");
                p.push(s.into());
            }
            clause.push_str(&format!(" ORDER BY key LIMIT {}", limit.max(1)));
            docs_where(c, &clause, p).await
        })
    }

    /// `user`'s notes, newest first.
    pub fn memory_recent(
        &self,
        user: &str,
        source: &str,
        limit: u32,
        offset: u32,
    ) -> Result<(Vec<MemoryDoc>, u64), StoreError> {
        self.exec(async |c| {
            let docs = docs_where(
                c,
                &format!("user_id = ?1 AND source = ?2 ORDER BY updated_ms DESC, key DESC LIMIT {} OFFSET {offset}", limit.max(1)),
                vec![user.into(), source.into()],
            )
            .await?;
            let mut rows = c
                .query(
                    "SELECT COUNT(*) FROM memory_docs WHERE user_id = ?1 AND source = ?2",
                    params![user, source],
                )
                .await?;
            let total: i64 = match rows.next().await? {
                Some(r) => r.get(0)?,
                None => 0,
            };
            Ok((docs, u64::try_from(total).unwrap_or(0)))
        })
    }

    /// How many documents `user` has, and how many of them carry an embedding from
    /// another model than `model` (or none).
    pub fn memory_counts(&self, user: &str, model: &str) -> Result<(u64, u64), StoreError> {
        self.exec(async |c| {
            let mut rows = c
                .query(
                    "SELECT COUNT(*), COALESCE(SUM(CASE WHEN model = ?2 AND embedding IS NOT NULL THEN 0 ELSE 1 END), 0) \
                     FROM memory_docs WHERE user_id = ?1",
                    params![user, model],
                )
                .await?;
            Ok(match rows.next().await? {
                Some(r) => (
                    u64::try_from(r.get::<i64>(0)?).unwrap_or(0),
                    u64::try_from(r.get::<i64>(1)?).unwrap_or(0),
                ),
                None => (0, 0),
            })
        })
    }

    /// Replace the embedding of document `key` (re-embedding with another model); bumps
    /// the generation so every index picks it up.
    pub fn memory_set_embedding(
        &self,
        key: u64,
        embedding: &[u8],
        model: &str,
    ) -> Result<(), StoreError> {
        self.exec(async |c| {
            immediate(c, async |c| {
                let gen_ = next_gen(c).await?;
                c.execute(
                    "UPDATE memory_docs SET embedding = ?1, model = ?2, gen = ?3 WHERE key = ?4",
                    params![embedding.to_vec(), model, gen_, key_i64(key)],
                )
                .await?;
                Ok(())
            })
            .await
        })
    }

    /// Many documents in one transaction (bulk import and benchmarks); the same as
    /// [`Store::memory_put`] each, for new ids.
    pub fn memory_put_many(&self, user: &str, writes: &[MemoryWrite]) -> Result<i64, StoreError> {
        let now = now_ms();
        self.exec(async |c| {
            immediate(c, async |c| {
                // One generation per document, so paged catch-up never splits one.
                let mut gen_ = 0;
                for w in writes {
                    gen_ = next_gen(c).await?;
                    c.execute(
                        "INSERT INTO memory_docs (user_id, id, source, session_id, content, tags, created_ms, updated_ms, embedding, model, gen) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8, ?9, ?10) \
                         ON CONFLICT(id) DO UPDATE SET content = excluded.content, tags = excluded.tags, \
                         updated_ms = excluded.updated_ms, embedding = excluded.embedding, model = excluded.model, gen = excluded.gen \
                         WHERE memory_docs.user_id = excluded.user_id",
                        params![
                            user,
                            w.id.as_str(),
                            w.source.as_str(),
                            w.session.clone(),
                            w.content.as_str(),
                            w.tags.as_str(),
                            now,
                            w.embedding.clone(),
                            w.model.as_str(),
                            gen_
                        ],
                    )
                    .await?;
                }
                Ok(gen_)
            })
            .await
        })
    }

    /// The scratchpad of `user`'s `session` (a JSON array), if written.
    pub fn scratchpad_get(&self, user: &str, session: &str) -> Result<Option<String>, StoreError> {
        self.exec(async |c| {
            let mut rows = c
                .query(
                    "SELECT items FROM scratchpads WHERE user_id = ?1 AND session_id = ?2",
                    params![user, session],
                )
                .await?;
            Ok(match rows.next().await? {
                Some(r) => Some(r.get(0)?),
                None => None,
            })
        })
    }

    /// Replace (`Some`) or clear (`None`) the scratchpad of `user`'s `session`.
    pub fn scratchpad_set(
        &self,
        user: &str,
        session: &str,
        items: Option<&str>,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        self.exec(async |c| {
            match items {
                Some(items) => {
                    c.execute(
                        "INSERT INTO scratchpads (user_id, session_id, items, updated_ms) VALUES (?1, ?2, ?3, ?4) \
                         ON CONFLICT(user_id, session_id) DO UPDATE SET items = excluded.items, updated_ms = excluded.updated_ms",
                        params![user, session, items, now],
                    )
                    .await?;
                }
                None => {
                    c.execute(
                        "DELETE FROM scratchpads WHERE user_id = ?1 AND session_id = ?2",
                        params![user, session],
                    )
                    .await?;
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn write(id: &str, content: &str) -> MemoryWrite {
        MemoryWrite {
            id: id.into(),
            source: "note".into(),
            content: content.into(),
            tags: "[]".into(),
            ..MemoryWrite::default()
        }
    }

    /// A search's hits are read by key through `memory_docs_user_key`, on a store made
    /// before that index existed too (it is added when the store is opened).
    #[test]
    fn hits_are_read_by_key_on_an_older_store_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let s = Store::open(&path).unwrap();
        s.exec(async |c| {
            c.execute("DROP INDEX memory_docs_user_key", ()).await?;
            Ok(())
        })
        .unwrap();
        drop(s);
        let s = Store::open(&path).unwrap();
        for i in 0..50 {
            s.memory_put("alice", &write(&format!("note-{i}"), "text"))
                .unwrap();
        }
        let (indexed, plan) = s
            .exec(async |c| {
                let mut rows = c
                    .query(
                        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND name = 'memory_docs_user_key'",
                        (),
                    )
                    .await?;
                let indexed: i64 = match rows.next().await? {
                    Some(r) => r.get(0)?,
                    None => 0,
                };
                let keys = (1..=40).map(|k| k.to_string()).collect::<Vec<_>>().join(",");
                let mut rows = c
                    .query(
                        &format!("EXPLAIN QUERY PLAN SELECT * FROM memory_docs WHERE user_id = ?1 AND key IN ({keys})"),
                        params!["alice"],
                    )
                    .await?;
                let mut plan = String::new();
                while let Some(r) = rows.next().await? {
                    plan.push_str(&r.get::<String>(3)?);
                }
                Ok((indexed, plan))
            })
            .unwrap();
        assert_eq!(indexed, 1);
        // Never one of the indexes that lead with the user alone (every row of theirs).
        assert!(
            plan.contains("memory_docs_user_key") || plan.contains("PRIMARY KEY"),
            "{plan}"
        );
    }

    #[test]
    fn changes_follow_writes_and_deletes_per_user() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("store.db")).unwrap();
        assert_eq!(s.memory_gen().unwrap(), 0);
        let a = s.memory_put("alice", &write("note-a", "one")).unwrap();
        let b = s.memory_put("bob", &write("note-b", "two")).unwrap();
        assert!(b.generation > a.generation && b.key != a.key);
        // Another user cannot overwrite alice's id.
        assert!(s.memory_put("bob", &write("note-a", "mine")).is_err());
        let ch = s.memory_changes("alice", 0, 10).unwrap();
        assert_eq!(ch.docs.len(), 1);
        assert_eq!(ch.upto, s.memory_gen().unwrap());
        let updated = s
            .memory_put("alice", &write("note-a", "one, again"))
            .unwrap();
        assert_eq!(updated.key, a.key);
        assert_eq!(updated.created_ms, a.created_ms);
        assert!(s.memory_delete("alice", "note-a").unwrap());
        assert!(!s.memory_delete("alice", "note-a").unwrap());
        let ch2 = s.memory_changes("alice", ch.upto, 10).unwrap();
        assert!(ch2.docs.is_empty());
        assert_eq!(ch2.deleted, vec![a.key]);
        assert!(s.memory_get("bob", "note-b").unwrap().is_some());
        assert!(s.memory_get("alice", "note-b").unwrap().is_none());
        // Paging: one at a time.
        s.memory_put("bob", &write("note-c", "three")).unwrap();
        let first = s.memory_changes("bob", 0, 1).unwrap();
        assert!(first.more);
        let rest = s.memory_changes("bob", first.upto, 1).unwrap();
        assert_eq!(rest.docs.len(), 1);
        assert_ne!(rest.docs[0].id, first.docs[0].id);
    }

    #[test]
    fn scratchpads_are_per_user_and_session() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("store.db")).unwrap();
        s.scratchpad_set("alice", "s1", Some("[\"x\"]")).unwrap();
        assert_eq!(
            s.scratchpad_get("alice", "s1").unwrap().as_deref(),
            Some("[\"x\"]")
        );
        assert_eq!(s.scratchpad_get("alice", "s2").unwrap(), None);
        assert_eq!(s.scratchpad_get("bob", "s1").unwrap(), None);
        s.scratchpad_set("alice", "s1", None).unwrap();
        assert_eq!(s.scratchpad_get("alice", "s1").unwrap(), None);
    }
}
