//! Persistent memory for one user: notes the agent saves, the exchanges of earlier turns
//! and the summaries of archived sessions, found again by hybrid search, plus each
//! session's scratchpad.
//!
//! - **Store of record**: the workspace's libSQL store (`oxydra_store`, tables
//!   `memory_*`): every document with its tags, times, user and embedding. A write is
//!   durable there before anything else happens.
//! - **Derived indexes**, one set per user under `<dir>`: BM25 in tantivy (`fts/`) and
//!   HNSW vectors in usearch (`vectors-<source>.usearch`, one per source so a notes-only
//!   search never filters conversations out afterwards). Each remembers the store
//!   generation it has applied and catches up from the store's change log; one that is
//!   missing, unreadable, of another model, or whose size disagrees with the store is
//!   rebuilt from the store (detected when it is opened, never because a query found
//!   nothing). An index update that fails leaves the document in the store, and the next
//!   operation applies it again.
//! - **Fusion** of the two rankings: reciprocal-rank fusion or weighted scores
//!   ([`Fusion`]).

pub mod embed;
pub mod eval;
mod fts;
pub mod limits;
mod vectors;

use embed::Embedder;
use fts::{Fts, FtsDoc};
use oxydra_store::{MemoryDoc, MemoryWrite, Store, StoreError};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use vectors::Vectors;

#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// Bad input: the message names the field and the limit.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("memory index: {0}")]
    Index(String),
    #[error("{0}")]
    Model(String),
    #[error("{0}")]
    Busy(String),
}

/// Where a document comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    Note,
    Conversation,
    Summary,
}

impl Source {
    pub const ALL: [Source; 3] = [Source::Note, Source::Conversation, Source::Summary];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Note => "note",
            Source::Conversation => "conversation",
            Source::Summary => "summary",
        }
    }

    pub fn parse(s: &str) -> Option<Source> {
        Source::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

/// How the two rankings are combined.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fusion {
    /// Σ 1 / (60 + rank) over the rankings a document is in.
    Rrf,
    /// `vector_weight · cosine + fts_weight · bm25 / best bm25`.
    Weighted { vector_weight: f32, fts_weight: f32 },
}

/// The RRF constant (Cormack et al.).
pub const RRF_K: f32 = 60.0;

/// Which rankings a search uses (hybrid in use; the others for measuring).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Hybrid,
    FtsOnly,
    VectorOnly,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    pub id: String,
    pub content: String,
    pub tags: Vec<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    pub id: String,
    pub source: Source,
    pub content: String,
    pub tags: Vec<String>,
    pub score: f64,
    pub session: Option<String>,
    pub when_ms: i64,
    /// Whether BM25 matched it (a content word in common, stop words aside).
    pub text_match: bool,
    /// Its cosine similarity to the query (0 when the vector search did not reach it).
    pub similarity: f32,
}

/// One search.
#[derive(Debug, Clone)]
pub struct Search {
    pub text: String,
    pub top_k: u32,
    /// Also earlier conversations and session summaries.
    pub include_conversation: bool,
    pub tags: Vec<String>,
    /// Leave out this session's own conversation (it is in the context already).
    pub exclude_session: Option<String>,
    pub mode: Mode,
    /// The memory's own fusion unless set (for measuring).
    pub fusion: Option<Fusion>,
}

impl Search {
    pub fn new(text: &str, top_k: u32) -> Search {
        Search {
            text: text.to_string(),
            top_k,
            include_conversation: false,
            tags: Vec::new(),
            exclude_session: None,
            mode: Mode::Hybrid,
            fusion: None,
        }
    }
}

/// What opening found and did.
#[derive(Debug, Default, Clone)]
pub struct OpenReport {
    /// Indexes rebuilt from the store, each with why.
    pub rebuilt: Vec<String>,
    /// Documents whose embedding is from another model (or missing): not in the vector
    /// index until `memory reindex` embeds them again.
    pub stale_embeddings: u64,
    pub documents: u64,
}

/// What a reindex did.
#[derive(Debug, Default, Clone)]
pub struct ReindexReport {
    pub documents: u64,
    pub re_embedded: u64,
    pub model: String,
    pub elapsed: Duration,
}

struct Indexes {
    fts: Fts,
    vecs: BTreeMap<Source, Vectors>,
    /// The store generation both indexes have applied.
    applied: i64,
    /// Vectors applied but not yet saved, since when.
    unsaved_since: Option<Instant>,
}

/// One user's memory.
pub struct Memory {
    store: Store,
    user: String,
    dir: PathBuf,
    embedder: Arc<dyn Embedder>,
    fusion: Fusion,
    ix: Mutex<Indexes>,
}

/// A vector index this small is saved after every write; a larger one at most every
/// [`SAVE_EVERY`] (and when the memory is dropped): what is not saved is applied again
/// from the store's embeddings on the next open, never embedded again.
const SAVE_ALWAYS_BELOW: usize = 20_000;
const SAVE_EVERY: Duration = Duration::from_secs(10);

fn vec_path(dir: &Path, s: Source) -> PathBuf {
    dir.join(format!("vectors-{}.usearch", s.as_str()))
}

fn tags_of(doc: &MemoryDoc) -> Vec<String> {
    serde_json::from_str(&doc.tags).unwrap_or_default()
}

fn note_of(d: &MemoryDoc) -> Note {
    Note {
        id: d.id.clone(),
        content: d.content.clone(),
        tags: tags_of(d),
        created_ms: d.created_ms,
        updated_ms: d.updated_ms,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A fresh note id: `note-` and 16 hex digits.
fn new_note_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    format!("note-{:016x}", h.finish())
}

impl Memory {
    /// Open `user`'s memory: the store at `store_path`, the indexes under `dir`
    /// (created, caught up or rebuilt as needed).
    pub fn open(
        store_path: &Path,
        dir: &Path,
        user: &str,
        embedder: Arc<dyn Embedder>,
        fusion: Fusion,
    ) -> Result<(Memory, OpenReport), MemoryError> {
        let store = Store::open(store_path)?;
        std::fs::create_dir_all(dir)
            .map_err(|e| MemoryError::Index(format!("create {}: {e}", dir.display())))?;
        let mut report = OpenReport::default();
        let db_gen = store.memory_gen()?;
        let model = embedder.id().to_string();
        let dims = embedder.dims();
        let fts = match Fts::open(&dir.join("fts"))? {
            Some((f, g)) if g <= db_gen => Some((f, g)),
            Some(_) => {
                report
                    .rebuilt
                    .push("full-text index: ahead of the store (a different store?)".into());
                None
            }
            None => {
                if dir.join("fts").exists() {
                    report.rebuilt.push("full-text index: unreadable".into());
                }
                None
            }
        };
        let mut vecs = BTreeMap::new();
        let mut vec_gen = i64::MAX;
        let mut vec_ok = true;
        for s in Source::ALL {
            let path = vec_path(dir, s);
            match Vectors::load(&path, &model, dims)? {
                Some((v, g)) if g <= db_gen => {
                    vec_gen = vec_gen.min(g);
                    vecs.insert(s, v);
                }
                other => {
                    if path.exists() || other.is_some() {
                        report.rebuilt.push(format!(
                            "vector index ({}): unreadable, of another model, or not the size it recorded",
                            s.as_str()
                        ));
                    }
                    vec_ok = false;
                }
            }
        }
        let memory = |fts: Fts, vecs, applied| Memory {
            store,
            user: user.to_string(),
            dir: dir.to_path_buf(),
            embedder: embedder.clone(),
            fusion,
            ix: Mutex::new(Indexes {
                fts,
                vecs,
                applied,
                unsaved_since: None,
            }),
        };
        let m = match (fts, vec_ok) {
            (Some((f, g)), true) => memory(f, vecs, g.min(vec_gen)),
            (fts, _) => {
                let f = match fts {
                    Some((f, _)) => f,
                    None => Fts::create(&dir.join("fts"))?,
                };
                let m = memory(f, BTreeMap::new(), 0);
                m.rebuild(None)?;
                m
            }
        };
        {
            let mut ix = lock(&m.ix);
            // Another process writing these indexes keeps them up to date itself.
            let synced = match m.sync(&mut ix) {
                Ok(()) => true,
                Err(MemoryError::Busy(_)) => false,
                Err(e) => return Err(e),
            };
            // The sizes must agree with the store: otherwise an index lost writes (or was
            // copied from elsewhere), and it is rebuilt.
            let (docs, stale) = m.store.memory_counts(&m.user, &model)?;
            let vec_total: usize = ix.vecs.values().map(|v| v.len()).sum();
            if synced && (ix.fts.num_docs() != docs || vec_total as u64 != docs - stale) {
                report.rebuilt.push(format!(
                    "indexes: {} full-text and {vec_total} vectors for {docs} documents ({stale} without a {model} embedding)",
                    ix.fts.num_docs()
                ));
                drop(ix);
                m.rebuild(None)?;
            }
            report.documents = docs;
            report.stale_embeddings = stale;
        }
        Ok((m, report))
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn model(&self) -> &str {
        self.embedder.id()
    }

    pub fn fusion(&self) -> Fusion {
        self.fusion
    }

    /// Rebuild both indexes from the store. With `progress`, documents without an
    /// embedding of the current model are embedded again first (`memory reindex`);
    /// without, they stay out of the vector index.
    fn rebuild(
        &self,
        mut progress: Option<&mut dyn FnMut(u64, u64)>,
    ) -> Result<ReindexReport, MemoryError> {
        let started = Instant::now();
        let mut ix = lock(&self.ix);
        // Never under another process that writes these indexes.
        ix.fts.lock()?;
        let gen_at_start = self.store.memory_gen()?;
        let model = self.embedder.id().to_string();
        let (total, _) = self.store.memory_counts(&self.user, &model)?;
        let reembed = progress.is_some();
        // Embed first, so the indexes are built from what the store then holds.
        let mut re_embedded = 0;
        if reembed {
            let mut after = 0;
            let mut done = 0;
            loop {
                let page = self.store.memory_page(&self.user, None, after, 64)?;
                let Some(last) = page.last() else { break };
                after = last.key;
                let todo: Vec<&MemoryDoc> = page
                    .iter()
                    .filter(|d| d.model != model || d.embedding.is_none())
                    .collect();
                if !todo.is_empty() {
                    let texts: Vec<&str> = todo.iter().map(|d| d.content.as_str()).collect();
                    let vs = self.embedder.embed(&texts)?;
                    for (d, v) in todo.iter().zip(vs) {
                        self.store
                            .memory_set_embedding(d.key, &embed::to_bytes(&v), &model)?;
                        re_embedded += 1;
                    }
                }
                done += page.len() as u64;
                if let Some(p) = progress.as_mut() {
                    p(done, total);
                }
            }
        }
        let mut fts = Fts::create(&self.dir.join("fts"))?;
        let mut vecs = BTreeMap::new();
        // (The old index's writer went with its directory.)
        for s in Source::ALL {
            vecs.insert(
                s,
                Vectors::new(&vec_path(&self.dir, s), self.embedder.dims())?,
            );
        }
        let mut after = 0;
        let mut count = 0;
        loop {
            let page = self.store.memory_page(&self.user, None, after, 1000)?;
            let Some(last) = page.last() else { break };
            after = last.key;
            let tags: Vec<Vec<String>> = page.iter().map(tags_of).collect();
            let docs: Vec<FtsDoc> = page
                .iter()
                .zip(&tags)
                .map(|(d, t)| FtsDoc {
                    key: d.key,
                    content: &d.content,
                    tags: t,
                    source: &d.source,
                })
                .collect();
            fts.apply(&docs, &[])?;
            for d in &page {
                if let (Some(s), Some(e)) = (Source::parse(&d.source), &d.embedding)
                    && d.model == model
                    && let Some(v) = vecs.get_mut(&s)
                {
                    v.upsert(d.key, &embed::from_bytes(e))?;
                }
            }
            count += page.len() as u64;
        }
        fts.commit(gen_at_start)?;
        for v in vecs.values() {
            v.save(gen_at_start, &model)?;
        }
        *ix = Indexes {
            fts,
            vecs,
            applied: gen_at_start,
            unsaved_since: None,
        };
        // Whatever was written while rebuilding.
        self.sync(&mut ix)?;
        Ok(ReindexReport {
            documents: count,
            re_embedded,
            model,
            elapsed: started.elapsed(),
        })
    }

    /// `memory reindex`: embed what lacks an embedding of the current model, then
    /// rebuild both indexes; `progress(done, total)` as documents are embedded.
    pub fn reindex(
        &self,
        progress: &mut dyn FnMut(u64, u64),
    ) -> Result<ReindexReport, MemoryError> {
        self.rebuild(Some(progress))
    }

    /// Apply what the store holds beyond what the indexes applied.
    fn sync(&self, ix: &mut Indexes) -> Result<(), MemoryError> {
        let db_gen = self.store.memory_gen()?;
        if db_gen <= ix.applied {
            return Ok(());
        }
        let model = self.embedder.id().to_string();
        let mut from = ix.applied;
        let mut touched = false;
        loop {
            let ch = self.store.memory_changes(&self.user, from, 1000)?;
            if !ch.docs.is_empty() || !ch.deleted.is_empty() {
                touched = true;
                let tags: Vec<Vec<String>> = ch.docs.iter().map(tags_of).collect();
                let docs: Vec<FtsDoc> = ch
                    .docs
                    .iter()
                    .zip(&tags)
                    .map(|(d, t)| FtsDoc {
                        key: d.key,
                        content: &d.content,
                        tags: t,
                        source: &d.source,
                    })
                    .collect();
                ix.fts.apply(&docs, &ch.deleted)?;
                for k in &ch.deleted {
                    for v in ix.vecs.values_mut() {
                        v.remove(*k)?;
                    }
                }
                for d in &ch.docs {
                    let Some(s) = Source::parse(&d.source) else {
                        continue;
                    };
                    let Some(v) = ix.vecs.get_mut(&s) else {
                        continue;
                    };
                    match &d.embedding {
                        Some(e) if d.model == model => v.upsert(d.key, &embed::from_bytes(e))?,
                        _ => v.remove(d.key)?,
                    }
                }
            }
            from = ch.upto;
            if !ch.more {
                break;
            }
        }
        if touched {
            ix.fts.commit(from)?;
            ix.unsaved_since.get_or_insert_with(Instant::now);
        }
        ix.applied = from;
        self.save_vectors(ix, false)?;
        Ok(())
    }

    fn save_vectors(&self, ix: &mut Indexes, force: bool) -> Result<(), MemoryError> {
        let Some(since) = ix.unsaved_since else {
            return Ok(());
        };
        let size: usize = ix.vecs.values().map(|v| v.len()).sum();
        if force || size < SAVE_ALWAYS_BELOW || since.elapsed() >= SAVE_EVERY {
            for v in ix.vecs.values() {
                v.save(ix.applied, self.embedder.id())?;
            }
            ix.unsaved_since = None;
        }
        Ok(())
    }

    /// Save what is unsaved (the vector indexes).
    pub fn flush(&self) -> Result<(), MemoryError> {
        let mut ix = lock(&self.ix);
        self.save_vectors(&mut ix, true)
    }

    /// After a write to the store: bring the indexes up to it. A failure here is
    /// logged, not returned: the document is in the store, and the next operation
    /// applies it again.
    fn after_write(&self) {
        let mut ix = lock(&self.ix);
        if let Err(e) = self.sync(&mut ix) {
            tracing::warn!(user = %self.user, "memory index update failed (retried on the next operation): {e}");
        }
    }

    fn embed_one(&self, text: &str) -> Result<Vec<u8>, MemoryError> {
        let v = self.embedder.embed(&[text])?;
        v.into_iter()
            .next()
            .map(|v| embed::to_bytes(&v))
            .ok_or_else(|| MemoryError::Model("the embedder returned nothing".into()))
    }

    /// Save a new note. Durable when this returns.
    pub fn save(&self, content: &str, tags: &[String]) -> Result<Note, MemoryError> {
        let content = limits::note(content)?;
        let tags = limits::tags(tags)?;
        let doc = self.store.memory_put(
            &self.user,
            &MemoryWrite {
                id: new_note_id(),
                source: Source::Note.as_str().into(),
                session: None,
                content: content.clone(),
                tags: serde_json::to_string(&tags).unwrap_or_else(|_| "[]".into()),
                embedding: Some(self.embed_one(&content)?),
                model: self.embedder.id().into(),
            },
        )?;
        self.after_write();
        Ok(note_of(&doc))
    }

    fn own_note(&self, id: &str) -> Result<MemoryDoc, MemoryError> {
        let id = id.trim();
        match self.store.memory_get(&self.user, id)? {
            Some(d) if d.source == Source::Note.as_str() => Ok(d),
            _ => Err(MemoryError::NotFound(format!(
                "no note `{id}` (note ids look like note-…; memory_search shows them)"
            ))),
        }
    }

    /// Replace a note's content, and its tags when given.
    pub fn update(
        &self,
        id: &str,
        content: &str,
        tags: Option<&[String]>,
    ) -> Result<Note, MemoryError> {
        let old = self.own_note(id)?;
        let content = limits::note(content)?;
        let tags = match tags {
            Some(t) => limits::tags(t)?,
            None => tags_of(&old),
        };
        let doc = self.store.memory_put(
            &self.user,
            &MemoryWrite {
                id: old.id.clone(),
                source: old.source.clone(),
                session: None,
                content: content.clone(),
                tags: serde_json::to_string(&tags).unwrap_or_else(|_| "[]".into()),
                embedding: Some(self.embed_one(&content)?),
                model: self.embedder.id().into(),
            },
        )?;
        self.after_write();
        Ok(note_of(&doc))
    }

    pub fn delete(&self, id: &str) -> Result<(), MemoryError> {
        let old = self.own_note(id)?;
        self.store.memory_delete(&self.user, &old.id)?;
        self.after_write();
        Ok(())
    }

    /// The user's notes, newest first, and how many there are.
    pub fn list(&self, limit: u32, offset: u32) -> Result<(Vec<Note>, u64), MemoryError> {
        let (docs, total) =
            self.store
                .memory_recent(&self.user, Source::Note.as_str(), limit, offset)?;
        Ok((docs.iter().map(note_of).collect(), total))
    }

    /// Remember one exchange of `session`'s turn `turn` (searchable from later sessions).
    pub fn record_exchange(
        &self,
        session: &str,
        turn: &str,
        user: &str,
        answer: &str,
    ) -> Result<(), MemoryError> {
        let text = limits::clip(&format!(
            "user: {}\nassistant: {}",
            user.trim(),
            answer.trim()
        ));
        if text.trim().is_empty() {
            return Ok(());
        }
        self.put_other(
            Source::Conversation,
            format!("{session}:{turn}"),
            session,
            &text,
        )
    }

    /// When `session`'s summary was last written (Unix ms), if it has one.
    pub fn summary_time(&self, session: &str) -> Result<Option<i64>, MemoryError> {
        Ok(self
            .store
            .memory_get(&self.user, &format!("{session}:summary"))?
            .map(|d| d.updated_ms))
    }

    /// Remember the summary of an archived session.
    pub fn record_summary(&self, session: &str, summary: &str) -> Result<(), MemoryError> {
        let text = limits::clip(summary);
        if text.trim().is_empty() {
            return Ok(());
        }
        self.put_other(
            Source::Summary,
            format!("{session}:summary"),
            session,
            &text,
        )
    }

    fn put_other(
        &self,
        source: Source,
        id: String,
        session: &str,
        text: &str,
    ) -> Result<(), MemoryError> {
        self.store.memory_put(
            &self.user,
            &MemoryWrite {
                id,
                source: source.as_str().into(),
                session: Some(session.to_string()),
                content: text.to_string(),
                tags: "[]".into(),
                embedding: Some(self.embed_one(text)?),
                model: self.embedder.id().into(),
            },
        )?;
        self.after_write();
        Ok(())
    }

    /// Many notes at once (benchmarks and imports): embedded in batches, one store
    /// transaction, one index update.
    pub fn save_many(&self, notes: &[(String, Vec<String>)]) -> Result<(), MemoryError> {
        let mut writes = Vec::with_capacity(notes.len());
        for chunk in notes.chunks(256) {
            let texts: Vec<String> = chunk
                .iter()
                .map(|(c, _)| limits::note(c))
                .collect::<Result<_, _>>()?;
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let vs = self.embedder.embed(&refs)?;
            for ((text, (_, tags)), v) in texts.into_iter().zip(chunk).zip(vs) {
                writes.push(MemoryWrite {
                    id: new_note_id(),
                    source: Source::Note.as_str().into(),
                    session: None,
                    content: text,
                    tags: serde_json::to_string(&limits::tags(tags)?)
                        .unwrap_or_else(|_| "[]".into()),
                    embedding: Some(embed::to_bytes(&v)),
                    model: self.embedder.id().into(),
                });
            }
        }
        {
            let mut ix = lock(&self.ix);
            if let Some(v) = ix.vecs.get_mut(&Source::Note) {
                v.reserve(writes.len())?;
            }
        }
        self.store.memory_put_many(&self.user, &writes)?;
        self.after_write();
        Ok(())
    }

    /// Hybrid search (see [`Search`]).
    pub fn search(&self, q: &Search) -> Result<Vec<Hit>, MemoryError> {
        let text = limits::query(&q.text)?;
        let top_k = limits::top_k(q.top_k)?;
        let tags = if q.tags.is_empty() {
            Vec::new()
        } else {
            limits::tags(&q.tags)?
        };
        let sources: Vec<Source> = if q.include_conversation {
            Source::ALL.to_vec()
        } else {
            vec![Source::Note]
        };
        let names: Vec<&str> = sources.iter().map(|s| s.as_str()).collect();
        let query_vec = match q.mode {
            Mode::FtsOnly => None,
            _ => self.embedder.embed(&[text.as_str()])?.into_iter().next(),
        };
        let want = (top_k as usize * 4).max(40);
        let (fts_hits, vec_hits) = {
            let mut ix = lock(&self.ix);
            if let Err(e) = self.sync(&mut ix) {
                tracing::warn!(user = %self.user, "memory index update failed (searching what is indexed): {e}");
            }
            let fts_hits = match q.mode {
                Mode::VectorOnly => Vec::new(),
                _ => ix.fts.search(&text, &names, &tags, want)?,
            };
            let mut vec_hits = Vec::new();
            if let Some(qv) = &query_vec {
                let keep = if tags.is_empty() {
                    None
                } else {
                    Some(ix.fts.keys_with(&names, &tags)?)
                };
                for s in &sources {
                    if let Some(v) = ix.vecs.get(s) {
                        vec_hits.extend(v.search(qv, want, keep.as_ref())?);
                    }
                }
                vec_hits.sort_by(|a, b| b.1.total_cmp(&a.1));
                vec_hits.truncate(want);
            }
            (fts_hits, vec_hits)
        };
        let fused = fuse(&fts_hits, &vec_hits, q.fusion.unwrap_or(self.fusion));
        let keys: Vec<u64> = fused.iter().map(|(k, _)| *k).take(want).collect();
        let docs: HashMap<u64, MemoryDoc> = self
            .store
            .memory_by_keys(&self.user, &keys)?
            .into_iter()
            .map(|d| (d.key, d))
            .collect();
        let texts: HashSet<u64> = fts_hits.iter().map(|(k, _)| *k).collect();
        let sims: HashMap<u64, f32> = vec_hits.iter().copied().collect();
        let mut out = Vec::new();
        for (k, score) in fused {
            let Some(d) = docs.get(&k) else { continue };
            if q.exclude_session.is_some() && d.session == q.exclude_session {
                continue;
            }
            let Some(source) = Source::parse(&d.source) else {
                continue;
            };
            out.push(Hit {
                id: d.id.clone(),
                source,
                content: d.content.clone(),
                tags: tags_of(d),
                score: f64::from(score),
                session: d.session.clone(),
                when_ms: d.updated_ms,
                text_match: texts.contains(&k),
                similarity: sims.get(&k).copied().unwrap_or(0.0),
            });
            if out.len() >= top_k as usize {
                break;
            }
        }
        Ok(out)
    }

    /// The scratchpad of `session` (empty when never written).
    pub fn scratchpad_read(&self, session: &str) -> Result<Vec<String>, MemoryError> {
        Ok(match self.store.scratchpad_get(&self.user, session)? {
            Some(j) => serde_json::from_str(&j).unwrap_or_default(),
            None => Vec::new(),
        })
    }

    pub fn scratchpad_write(&self, session: &str, items: &[String]) -> Result<(), MemoryError> {
        let items = limits::scratchpad(items)?;
        let json = serde_json::to_string(&items)
            .map_err(|e| MemoryError::Invalid(format!("items: {e}")))?;
        Ok(self
            .store
            .scratchpad_set(&self.user, session, Some(&json))?)
    }

    pub fn scratchpad_clear(&self, session: &str) -> Result<(), MemoryError> {
        Ok(self.store.scratchpad_set(&self.user, session, None)?)
    }
}

impl Drop for Memory {
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            tracing::warn!(user = %self.user, "saving the vector index failed (it is applied again from the store on the next open): {e}");
        }
    }
}

/// Combine a BM25 ranking and a vector ranking (each best first) into one, best first.
pub fn fuse(fts: &[(u64, f32)], vec: &[(u64, f32)], fusion: Fusion) -> Vec<(u64, f32)> {
    let mut score: HashMap<u64, f32> = HashMap::new();
    match fusion {
        Fusion::Rrf => {
            for list in [fts, vec] {
                for (rank, (k, _)) in list.iter().enumerate() {
                    *score.entry(*k).or_default() += 1.0 / (RRF_K + rank as f32 + 1.0);
                }
            }
        }
        Fusion::Weighted {
            vector_weight,
            fts_weight,
        } => {
            let best = fts.iter().map(|(_, s)| *s).fold(0f32, f32::max);
            for (k, s) in fts {
                let norm = if best > 0.0 { s / best } else { 0.0 };
                *score.entry(*k).or_default() += fts_weight * norm;
            }
            for (k, s) in vec {
                *score.entry(*k).or_default() += vector_weight * s.clamp(0.0, 1.0);
            }
        }
    }
    let mut seen = HashSet::new();
    let mut out: Vec<(u64, f32)> = score.into_iter().filter(|(k, _)| seen.insert(*k)).collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    out
}

#[cfg(test)]
mod tests;
