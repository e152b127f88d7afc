//! A user's memory as the session layer uses it: opened from `[memory]` for one user
//! workspace, scoped to a session for the memory tools (`oxydra:memory/store`), recording
//! each finished turn's exchange, and giving each turn the relevant notes and earlier
//! conversations within a token budget.

use crate::config::memory::{EmbeddingBackend, MemoryConfig};
use crate::error::SetupError;
use oxydra_memory::embed::{Deterministic, Embedder, MiniLm};
use oxydra_memory::{Memory, MemoryError, Search, Source};
use oxydra_runtime::memory as wit;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `<workspace>/.oxydra/memory/<user>`: the user's derived indexes.
pub fn index_dir(ws_dir: &Path, user: &str) -> PathBuf {
    ws_dir.join(".oxydra").join("memory").join(user)
}

/// The embedder `[memory]` names.
pub fn embedder(cfg: &MemoryConfig) -> Result<Arc<dyn Embedder>, SetupError> {
    Ok(match cfg.embedding_backend {
        EmbeddingBackend::Deterministic => Arc::new(Deterministic::new()),
        EmbeddingBackend::Minilm => {
            Arc::new(MiniLm::load(&cfg.model_dir()).map_err(|e| SetupError::Key {
                key: "memory.embedding_backend".into(),
                message: e.to_string(),
            })?)
        }
    })
}

/// Open `user`'s memory in `ws_dir`; what opening rebuilt or found stale is logged.
pub fn open(cfg: &MemoryConfig, ws_dir: &Path, user: &str) -> Result<Arc<Memory>, SetupError> {
    let (m, report) = Memory::open(
        &crate::compose::store_path(ws_dir),
        &index_dir(ws_dir, user),
        user,
        embedder(cfg)?,
        cfg.fusion(),
    )
    .map_err(|e| SetupError::Refused(format!("memory: {e}")))?;
    for r in &report.rebuilt {
        tracing::warn!(user, "memory: rebuilt from the store: {r}");
    }
    if report.stale_embeddings > 0 {
        tracing::warn!(
            user,
            "memory: {} documents were embedded by another model and are found by full text only until `oxydra-host memory reindex`",
            report.stale_embeddings
        );
    }
    Ok(Arc::new(m))
}

/// RFC 3339 (UTC) of Unix milliseconds.
pub fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn wit_source(s: Source) -> wit::Source {
    match s {
        Source::Note => wit::Source::Note,
        Source::Conversation => wit::Source::Conversation,
        Source::Summary => wit::Source::Summary,
    }
}

fn wit_note(n: oxydra_memory::Note) -> wit::Note {
    wit::Note {
        id: n.id,
        content: n.content,
        tags: n.tags,
        created: rfc3339(n.created_ms),
        updated: rfc3339(n.updated_ms),
    }
}

fn message(e: MemoryError) -> String {
    e.to_string()
}

/// The memory tools' view: the turn's user, and its session for the scratchpad.
pub struct Scoped {
    pub memory: Arc<Memory>,
    pub session: String,
}

impl wit::Memory for Scoped {
    fn search(&self, q: wit::Query) -> Result<Vec<wit::Hit>, String> {
        let hits = self
            .memory
            .search(&Search {
                include_conversation: q.include_conversation,
                tags: q.tags,
                exclude_session: Some(self.session.clone()),
                ..Search::new(&q.text, q.top_k)
            })
            .map_err(message)?;
        Ok(hits
            .into_iter()
            .map(|h| wit::Hit {
                id: h.id,
                source: wit_source(h.source),
                content: h.content,
                tags: h.tags,
                score: h.score,
                session: h.session,
                when: rfc3339(h.when_ms),
            })
            .collect())
    }

    fn save(&self, content: String, tags: Vec<String>) -> Result<wit::Note, String> {
        self.memory
            .save(&content, &tags)
            .map(wit_note)
            .map_err(message)
    }

    fn update(
        &self,
        id: String,
        content: String,
        tags: Option<Vec<String>>,
    ) -> Result<wit::Note, String> {
        self.memory
            .update(&id, &content, tags.as_deref())
            .map(wit_note)
            .map_err(message)
    }

    fn delete(&self, id: String) -> Result<(), String> {
        self.memory.delete(&id).map_err(message)
    }

    fn scratchpad_read(&self) -> Result<Vec<String>, String> {
        self.memory.scratchpad_read(&self.session).map_err(message)
    }

    fn scratchpad_write(&self, items: Vec<String>) -> Result<(), String> {
        self.memory
            .scratchpad_write(&self.session, &items)
            .map_err(message)
    }

    fn scratchpad_clear(&self) -> Result<(), String> {
        self.memory.scratchpad_clear(&self.session).map_err(message)
    }
}

/// The cosine similarity from which a hit with no word in common still counts as
/// related for auto-retrieval (MiniLM puts unrelated sentences below about 0.2).
const MIN_SIMILARITY: f32 = 0.4;

/// About four characters per token (the budget's estimate elsewhere too).
fn tokens(s: &str) -> usize {
    s.chars().count().div_ceil(4)
}

/// What goes into a turn's context before the model sees `prompt`: the most relevant
/// notes and earlier conversations (not `session`'s own), within `max_tokens`. `None`
/// when nothing is relevant, or the budget is 0.
pub fn recall(memory: &Memory, cfg: &MemoryConfig, session: &str, prompt: &str) -> Option<String> {
    let budget = cfg.retrieval.auto_max_tokens as usize;
    let text: String = prompt
        .chars()
        .take(oxydra_memory::limits::MAX_QUERY_CHARS)
        .collect();
    if budget == 0 || text.trim().is_empty() {
        return None;
    }
    let hits = match memory.search(&Search {
        include_conversation: true,
        exclude_session: Some(session.to_string()),
        ..Search::new(&text, cfg.retrieval.top_k)
    }) {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!("memory: auto-retrieval failed (the turn goes on without it): {e}");
            return None;
        }
    };
    let head = "Relevant memory (saved notes and earlier conversations; use it if it helps, and memory_search for more):";
    let mut out = head.to_string();
    let mut used = tokens(head);
    // Only what is related: a content word in common, or close in meaning (the vector
    // search always returns its nearest, related or not).
    for h in hits
        .into_iter()
        .filter(|h| h.text_match || h.similarity >= MIN_SIMILARITY)
    {
        let label = match h.source {
            Source::Note => format!("note {}", h.id),
            Source::Conversation => format!("earlier conversation, {}", rfc3339(h.when_ms)),
            Source::Summary => format!("summary of session {}", h.session.unwrap_or_default()),
        };
        let mut line = format!("\n- [{label}] {}", h.content.replace('\n', " "));
        let left = budget.saturating_sub(used);
        if left < 16 {
            break;
        }
        if tokens(&line) > left {
            line = line.chars().take(left * 4 - 1).collect::<String>() + "…";
        }
        used += tokens(&line);
        out.push_str(&line);
    }
    (out.len() > head.len()).then_some(out)
}
