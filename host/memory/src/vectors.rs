//! The HNSW vector index (usearch) of one user's documents of one source, cosine metric.
//! It lives in memory and is saved to a file beside a small JSON state (the generation
//! it covers, the model, the count), checked when it is loaded.

use crate::MemoryError;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

pub(crate) struct Vectors {
    index: Index,
    path: PathBuf,
    dims: usize,
}

#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct State {
    generation: i64,
    model: String,
    dims: usize,
    count: usize,
}

fn options(dims: usize) -> IndexOptions {
    IndexOptions {
        dimensions: dims,
        metric: MetricKind::Cos,
        quantization: ScalarKind::F32,
        connectivity: 16,
        expansion_add: 128,
        expansion_search: 64,
        multi: false,
    }
}

fn err<E: std::fmt::Display>(what: &str) -> impl Fn(E) -> MemoryError + '_ {
    move |e| MemoryError::Index(format!("vector index: {what}: {e}"))
}

fn state_path(path: &Path) -> PathBuf {
    path.with_extension("json")
}

impl Vectors {
    pub fn new(path: &Path, dims: usize) -> Result<Vectors, MemoryError> {
        let index = Index::new(&options(dims)).map_err(err("create"))?;
        Ok(Vectors {
            index,
            path: path.to_path_buf(),
            dims,
        })
    }

    /// The saved index at `path` if it is whole and of `model`: `Ok(None)` when missing,
    /// unreadable, of another model or dimension, or not the size its state says.
    pub fn load(
        path: &Path,
        model: &str,
        dims: usize,
    ) -> Result<Option<(Vectors, i64)>, MemoryError> {
        let Ok(raw) = std::fs::read(state_path(path)) else {
            return Ok(None);
        };
        let Ok(state) = serde_json::from_slice::<State>(&raw) else {
            return Ok(None);
        };
        if state.model != model || state.dims != dims || !path.is_file() {
            return Ok(None);
        }
        let v = Vectors::new(path, dims)?;
        let Some(p) = path.to_str() else {
            return Ok(None);
        };
        if v.index.load(p).is_err() || v.index.size() != state.count || v.index.dimensions() != dims
        {
            return Ok(None);
        }
        Ok(Some((v, state.generation)))
    }

    pub fn len(&self) -> usize {
        self.index.size()
    }

    pub fn upsert(&mut self, key: u64, vector: &[f32]) -> Result<(), MemoryError> {
        if vector.len() != self.dims {
            return Err(MemoryError::Index(format!(
                "vector index: a vector of {} dimensions for an index of {}",
                vector.len(),
                self.dims
            )));
        }
        if self.index.contains(key) {
            self.index.remove(key).map_err(err("remove"))?;
        }
        if self.index.size() + 1 > self.index.capacity() {
            let want = (self.index.capacity() * 2).max(1024);
            self.index.reserve(want).map_err(err("reserve"))?;
        }
        self.index.add(key, vector).map_err(err("add"))
    }

    pub fn reserve(&mut self, more: usize) -> Result<(), MemoryError> {
        let want = self.index.size() + more;
        if want > self.index.capacity() {
            self.index.reserve(want).map_err(err("reserve"))?;
        }
        Ok(())
    }

    pub fn remove(&mut self, key: u64) -> Result<(), MemoryError> {
        if self.index.contains(key) {
            self.index.remove(key).map_err(err("remove"))?;
        }
        Ok(())
    }

    /// The `limit` nearest keys with their cosine similarity, nearest first; only keys
    /// `keep` accepts when given.
    pub fn search(
        &self,
        query: &[f32],
        limit: usize,
        keep: Option<&std::collections::HashSet<u64>>,
    ) -> Result<Vec<(u64, f32)>, MemoryError> {
        if self.index.size() == 0 || limit == 0 {
            return Ok(Vec::new());
        }
        let m = match keep {
            Some(set) => self
                .index
                .filtered_search(query, limit, |k| set.contains(&k))
                .map_err(err("search"))?,
            None => self.index.search(query, limit).map_err(err("search"))?,
        };
        Ok(m.keys
            .into_iter()
            .zip(m.distances)
            .map(|(k, d)| (k, 1.0 - d))
            .collect())
    }

    /// Write the index and then its state (the state last: a crash between the two
    /// leaves a state that does not match, and the index is rebuilt).
    pub fn save(&self, generation: i64, model: &str) -> Result<(), MemoryError> {
        let io = |e: std::io::Error| {
            MemoryError::Index(format!("vector index {}: {e}", self.path.display()))
        };
        let tmp = self.path.with_extension("tmp");
        let Some(p) = tmp.to_str() else {
            return Err(MemoryError::Index(format!(
                "vector index: {} is not UTF-8",
                tmp.display()
            )));
        };
        let _ = std::fs::remove_file(state_path(&self.path));
        self.index.save(p).map_err(err("save"))?;
        std::fs::rename(&tmp, &self.path).map_err(io)?;
        let state = State {
            generation,
            model: model.to_string(),
            dims: self.dims,
            count: self.index.size(),
        };
        let json = serde_json::to_vec(&state).map_err(|e| MemoryError::Index(e.to_string()))?;
        let stmp = self.path.with_extension("json.tmp");
        std::fs::write(&stmp, json).map_err(io)?;
        std::fs::rename(&stmp, state_path(&self.path)).map_err(io)
    }
}
