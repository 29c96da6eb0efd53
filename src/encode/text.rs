//! The text tower: `tokenizers` + ONNX Runtime, with a bounded cache of embeddings for repeated texts
//! (product titles, recurring transcript phrases).

use std::num::NonZeroUsize;
use std::sync::Arc;

use lru::LruCache;
use ort::session::Session;
use ort::value::TensorRef;
use tokenizers::Tokenizer;

use super::error::EncodeError;
use super::manifest::{Manifest, TextSpec};
use super::pooling::pool_text;
use super::runtime::{SessionOptions, batch_output, open_session};

pub struct TextEncoder {
    session: Session,
    tokenizer: Tokenizer,
    spec: TextSpec,
    /// Embeddings of recent texts, least recently used evicted first; `None` when `text_cache = 0`.
    cache: Option<LruCache<String, Arc<[f32]>>>,
}

impl TextEncoder {
    pub fn new(
        manifest: &Manifest,
        opts: SessionOptions,
        cache_capacity: usize,
    ) -> Result<Self, EncodeError> {
        let spec = manifest.text.clone().ok_or(EncodeError::NoTextTower)?;
        let tok_path = manifest.dir.join(&spec.tokenizer);
        let tok_err = |reason: String| EncodeError::Tokenizer {
            path: tok_path.display().to_string(),
            reason,
        };
        let mut tokenizer = Tokenizer::from_file(&tok_path).map_err(|e| tok_err(e.to_string()))?;
        // Pad per batch ourselves (to the longest text) rather than to the file's fixed length.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(tokenizers::TruncationParams {
                max_length: spec.max_length,
                ..Default::default()
            }))
            .map_err(|e| tok_err(e.to_string()))?;
        let session = open_session(&manifest.dir.join(&spec.file), opts)?;
        Ok(TextEncoder {
            session,
            tokenizer,
            spec,
            cache: NonZeroUsize::new(cache_capacity).map(LruCache::new),
        })
    }

    pub fn dim(&self) -> usize {
        self.spec.dim
    }

    /// Token ids and attention mask, padded to the longest text: [n, len] each, row-major.
    pub fn tokenize(&self, texts: &[&str]) -> Result<(Vec<i64>, Vec<i64>, usize), EncodeError> {
        let tok_err = |e: tokenizers::Error| EncodeError::Tokenizer {
            path: self.spec.tokenizer.display().to_string(),
            reason: e.to_string(),
        };
        let encodings: Vec<_> = texts
            .iter()
            .map(|t| self.tokenizer.encode(*t, true))
            .collect::<Result<_, _>>()
            .map_err(tok_err)?;
        let len = encodings
            .iter()
            .map(|e| e.get_ids().len())
            .max()
            .unwrap_or(0)
            .max(1);
        let mut ids = vec![0i64; texts.len() * len];
        let mut mask = vec![0i64; texts.len() * len];
        for (i, e) in encodings.iter().enumerate() {
            for (j, (&id, &m)) in e.get_ids().iter().zip(e.get_attention_mask()).enumerate() {
                ids[i * len + j] = id as i64;
                mask[i * len + j] = m as i64;
            }
        }
        Ok((ids, mask, len))
    }

    /// One unit vector per text; cached texts skip the model.
    pub fn encode(&mut self, texts: &[&str]) -> Result<Vec<Arc<[f32]>>, EncodeError> {
        let cached = |c: &Option<LruCache<String, Arc<[f32]>>>, t: &str| c.as_ref().is_some_and(|c| c.contains(t));
        let mut missing: Vec<&str> = texts.iter().copied().filter(|t| !cached(&self.cache, t)).collect();
        missing.sort_unstable();
        missing.dedup();
        let fresh: Vec<Arc<[f32]>> =
            if missing.is_empty() { Vec::new() } else { self.run(&missing)?.into_iter().map(Into::into).collect() };
        let mut out = Vec::with_capacity(texts.len());
        for t in texts {
            let v = match missing.binary_search(t) {
                Ok(i) => Some(fresh[i].clone()),
                Err(_) => self.cache.as_mut().and_then(|c| c.get(*t).cloned()),
            };
            // Not reached (nothing is evicted before the loop ends); computed alone rather than panicking.
            out.push(match v {
                Some(v) => v,
                None => self.run(&[t])?.remove(0).into(),
            });
        }
        if let Some(cache) = self.cache.as_mut() {
            for (text, v) in missing.iter().zip(fresh) {
                cache.put(text.to_string(), v);
            }
        }
        Ok(out)
    }

    /// Runs the model, uncached.
    pub fn run(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EncodeError> {
        let (ids, mask, len) = self.tokenize(texts)?;
        self.run_tokens(&ids, &mask, texts.len(), len)
    }

    /// Runs the model on prepared token ids and mask ([n, len] each).
    pub fn run_tokens(
        &mut self,
        ids: &[i64],
        mask: &[i64],
        n: usize,
        len: usize,
    ) -> Result<Vec<Vec<f32>>, EncodeError> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let spec = &self.spec;
        let types = vec![0i64; ids.len()];
        let mut inputs = ort::inputs![
            spec.input_ids.as_str() => TensorRef::from_array_view(([n, len], ids))?,
            spec.attention_mask.as_str() => TensorRef::from_array_view(([n, len], mask))?,
        ];
        if let Some(name) = &spec.token_type_ids {
            inputs.push((
                name.as_str().into(),
                TensorRef::from_array_view(([n, len], types.as_slice()))?.into(),
            ));
        }
        let outputs = self.session.run(inputs)?;
        let (tokens, dim, out) = batch_output(&outputs, &spec.output, n, spec.dim)?;
        Ok(out
            .chunks_exact(tokens * dim)
            .enumerate()
            .map(|(i, item)| {
                pool_text(
                    item,
                    tokens,
                    dim,
                    &mask[i * len..(i + 1) * len],
                    spec.pooling,
                )
            })
            .collect())
    }
}
