//! Retrieval quality on a labelled set (`eval/labelled.json`: notes, and queries with
//! the notes that answer them): recall@5 and mean reciprocal rank for BM25 alone,
//! vectors alone, and each fusion. The benchmark prints the table; the fusion default
//! was chosen from it (docs/adr/0012-memory-fusion.md).

use crate::embed::Embedder;
use crate::{Fusion, Memory, MemoryError, Mode, Search};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

#[derive(Deserialize)]
pub struct Labelled {
    pub notes: Vec<LabelledNote>,
    pub queries: Vec<LabelledQuery>,
}

#[derive(Deserialize)]
pub struct LabelledNote {
    pub id: String,
    pub text: String,
}

#[derive(Deserialize)]
pub struct LabelledQuery {
    pub id: String,
    /// `paraphrase`, `keyword` (words the note has) or `identifier` (a code, serial,
    /// hash or number the note has, among near-misses).
    pub kind: String,
    pub text: String,
    pub relevant: Vec<String>,
}

/// The labelled set in this crate's source tree (`host/memory/eval/labelled.json`).
pub fn bundled() -> Result<Labelled, MemoryError> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/eval/labelled.json");
    let text =
        std::fs::read_to_string(path).map_err(|e| MemoryError::Invalid(format!("{path}: {e}")))?;
    serde_json::from_str(&text).map_err(|e| MemoryError::Invalid(format!("{path}: {e}")))
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Scores {
    pub recall_at_5: f64,
    pub mrr: f64,
    pub queries: usize,
}

/// One configuration's scores: all queries, then each kind.
#[derive(Debug, Clone)]
pub struct Row {
    pub name: String,
    pub all: Scores,
    pub paraphrase: Scores,
    pub keyword: Scores,
    pub identifier: Scores,
}

/// A memory in `dir` holding the labelled notes; the map turns its note ids into the
/// set's.
pub fn load(
    set: &Labelled,
    dir: &Path,
    embedder: Arc<dyn Embedder>,
) -> Result<(Memory, HashMap<String, String>), MemoryError> {
    let (m, _) = Memory::open(
        &dir.join("store.db"),
        &dir.join("memory"),
        "eval",
        embedder,
        Fusion::Rrf,
    )?;
    let mut ids = HashMap::new();
    for n in &set.notes {
        let note = m.save(&n.text, &[])?;
        ids.insert(note.id, n.id.clone());
    }
    Ok((m, ids))
}

/// Score each `(name, mode, fusion)` on every query of `set`.
pub fn run(
    set: &Labelled,
    m: &Memory,
    ids: &HashMap<String, String>,
    configs: &[(&str, Mode, Fusion)],
) -> Result<Vec<Row>, MemoryError> {
    let mut rows = Vec::new();
    for (name, mode, fusion) in configs {
        let mut per: HashMap<&str, (f64, f64, usize)> = HashMap::new();
        for q in &set.queries {
            let hits = m.search(&Search {
                mode: *mode,
                fusion: Some(*fusion),
                ..Search::new(&q.text, 20)
            })?;
            let ranked: Vec<&str> = hits
                .iter()
                .filter_map(|h| ids.get(&h.id).map(String::as_str))
                .collect();
            let found = q
                .relevant
                .iter()
                .filter(|r| ranked.iter().take(5).any(|x| x == r))
                .count();
            let recall = found as f64 / q.relevant.len().max(1) as f64;
            let rr = ranked
                .iter()
                .position(|x| q.relevant.iter().any(|r| r == x))
                .map(|p| 1.0 / (p as f64 + 1.0))
                .unwrap_or(0.0);
            for key in ["all", q.kind.as_str()] {
                let e = per.entry(key).or_default();
                e.0 += recall;
                e.1 += rr;
                e.2 += 1;
            }
        }
        let score = |k: &str| {
            per.get(k)
                .map(|(r, m, n)| Scores {
                    recall_at_5: r / (*n).max(1) as f64,
                    mrr: m / (*n).max(1) as f64,
                    queries: *n,
                })
                .unwrap_or_default()
        };
        rows.push(Row {
            name: name.to_string(),
            all: score("all"),
            paraphrase: score("paraphrase"),
            keyword: score("keyword"),
            identifier: score("identifier"),
        });
    }
    Ok(rows)
}

/// The configurations the benchmark compares.
pub fn configs() -> Vec<(&'static str, Mode, Fusion)> {
    let rrf = Fusion::Rrf;
    vec![
        ("BM25 only", Mode::FtsOnly, rrf),
        ("vectors only", Mode::VectorOnly, rrf),
        ("RRF (k = 60)", Mode::Hybrid, rrf),
        (
            "weighted 0.5 / 0.5",
            Mode::Hybrid,
            Fusion::Weighted {
                vector_weight: 0.5,
                fts_weight: 0.5,
            },
        ),
        (
            "weighted 0.7 / 0.3",
            Mode::Hybrid,
            Fusion::Weighted {
                vector_weight: 0.7,
                fts_weight: 0.3,
            },
        ),
        (
            "weighted 0.8 / 0.2",
            Mode::Hybrid,
            Fusion::Weighted {
                vector_weight: 0.8,
                fts_weight: 0.2,
            },
        ),
        (
            "weighted 0.9 / 0.1",
            Mode::Hybrid,
            Fusion::Weighted {
                vector_weight: 0.9,
                fts_weight: 0.1,
            },
        ),
    ]
}

/// The table, as markdown.
pub fn table(rows: &[Row]) -> String {
    let mut s = String::from(
        "| Retrieval | recall@5 | MRR | recall@5 paraphrase | MRR paraphrase | recall@5 keyword | MRR keyword | recall@5 identifier | MRR identifier |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for r in rows {
        s.push_str(&format!(
            "| {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |\n",
            r.name,
            r.all.recall_at_5,
            r.all.mrr,
            r.paraphrase.recall_at_5,
            r.paraphrase.mrr,
            r.keyword.recall_at_5,
            r.keyword.mrr,
            r.identifier.recall_at_5,
            r.identifier.mrr
        ));
    }
    s
}
