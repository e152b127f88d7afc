//! `[memory]`: persistent memory. Every key is read: by tool assembly (`enabled`), by
//! opening a user's memory (`embedding_backend`, `model_dir`), by the memory tools and the
//! CLI (`retrieval`), and by the turn loop (`retrieval.auto_*`, `record_conversations`).

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

type KeyError = (String, String);

/// What turns text into vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmbeddingBackend {
    /// all-MiniLM-L6-v2 in pure Rust (the model `scripts/build.sh` fetches from PyPI).
    Minilm,
    /// Hashed words and trigrams: no model, matches wording rather than meaning.
    Deterministic,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FusionKind {
    Rrf,
    Weighted,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MemoryConfig {
    /// The memory_* and scratchpad_* tools are offered, turns are remembered and
    /// relevant memory is put into each turn's context.
    pub enabled: bool,
    pub embedding_backend: EmbeddingBackend,
    /// The MiniLM model directory (config.json, tokenizer.json, model.safetensors).
    /// Default: `models/all-MiniLM-L6-v2` beside the binary's directory.
    pub model_dir: Option<PathBuf>,
    /// Each finished turn's exchange (the user's message and the answer) is saved, so
    /// later sessions can find it.
    pub record_conversations: bool,
    /// Before compaction condenses earlier turns, the model lists the facts in them worth
    /// keeping, and each is saved as a note (tag `compaction`).
    pub flush_before_compaction: bool,
    /// A session with no turn for this long is summarised into memory (by `serve`, or
    /// `oxydra-host memory summarize`); its summary is searchable from later sessions.
    /// 0: never by itself.
    pub stale_session_hours: u32,
    pub retrieval: RetrievalConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrievalConfig {
    /// Results of `oxydra-host memory search` (and of auto-retrieval) unless told.
    pub top_k: u32,
    pub fusion: FusionKind,
    /// Weighted fusion only: the share of the cosine similarity and of the BM25 score.
    pub vector_weight: f32,
    pub fts_weight: f32,
    /// Before each turn, up to this many estimated tokens of the most relevant notes
    /// and earlier conversations go into the context (0: none).
    pub auto_max_tokens: u32,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            enabled: false,
            embedding_backend: EmbeddingBackend::Minilm,
            model_dir: None,
            record_conversations: true,
            flush_before_compaction: true,
            stale_session_hours: 48,
            retrieval: RetrievalConfig::default(),
        }
    }
}

impl Default for RetrievalConfig {
    fn default() -> Self {
        RetrievalConfig {
            top_k: 5,
            // Measured on the labelled set (docs/adr/0012-memory-fusion.md).
            fusion: FusionKind::Weighted,
            vector_weight: 0.9,
            fts_weight: 0.1,
            auto_max_tokens: 600,
        }
    }
}

impl MemoryConfig {
    pub fn validate(&self) -> Result<(), KeyError> {
        let r = &self.retrieval;
        if !(1..=oxydra_memory::limits::MAX_TOP_K).contains(&r.top_k) {
            return Err((
                "memory.retrieval.top_k".into(),
                format!("{}: use 1–{}", r.top_k, oxydra_memory::limits::MAX_TOP_K),
            ));
        }
        for (key, w) in [
            ("memory.retrieval.vector_weight", r.vector_weight),
            ("memory.retrieval.fts_weight", r.fts_weight),
        ] {
            if !(w.is_finite() && (0.0..=1.0).contains(&w)) {
                return Err((key.into(), format!("{w}: use a weight from 0 to 1")));
            }
        }
        if r.fusion == FusionKind::Weighted && r.vector_weight + r.fts_weight <= 0.0 {
            return Err((
                "memory.retrieval.vector_weight".into(),
                "with fusion = \"weighted\", vector_weight and fts_weight cannot both be 0".into(),
            ));
        }
        if r.auto_max_tokens > 8_000 {
            return Err((
                "memory.retrieval.auto_max_tokens".into(),
                format!("{}: use 0–8000", r.auto_max_tokens),
            ));
        }
        Ok(())
    }

    pub fn fusion(&self) -> oxydra_memory::Fusion {
        match self.retrieval.fusion {
            FusionKind::Rrf => oxydra_memory::Fusion::Rrf,
            FusionKind::Weighted => oxydra_memory::Fusion::Weighted {
                vector_weight: self.retrieval.vector_weight,
                fts_weight: self.retrieval.fts_weight,
            },
        }
    }

    /// `model_dir`, else `models/all-MiniLM-L6-v2` beside the binary's directory
    /// (`target/models/…` for `target/release/oxydra-host`).
    pub fn model_dir(&self) -> PathBuf {
        if let Some(d) = &self.model_dir {
            return d.clone();
        }
        std::env::current_exe()
            .ok()
            .and_then(|p| {
                p.parent()
                    .and_then(|d| d.parent())
                    .map(|d| d.join("models"))
            })
            .unwrap_or_else(|| PathBuf::from("models"))
            .join("all-MiniLM-L6-v2")
    }
}
