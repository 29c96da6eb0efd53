//! The encoder as a whole: manifest + visual tower + optional text tower + fusion.

use std::sync::Arc;

use image::RgbImage;

use super::config::EncoderConfig;
use super::error::EncodeError;
use super::fusion::{page_vector, query_vector};
use super::manifest::{FusionWeights, Manifest};
use super::runtime::SessionOptions;
use super::text::TextEncoder;
use super::visual::VisualEncoder;

pub struct Encoder {
    pub manifest: Manifest,
    pub visual: VisualEncoder,
    pub text: Option<TextEncoder>,
    pub weights: FusionWeights,
}

/// Which side of the match an input is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Catalogue pages: unweighted parts.
    Page,
    /// Live frames and eval queries: parts scaled by the fusion weights.
    Query,
}

impl Encoder {
    pub fn open(cfg: &EncoderConfig) -> Result<Self, EncodeError> {
        let manifest = Manifest::load(&cfg.model_dir())?;
        let opts = SessionOptions {
            provider: cfg.provider,
            intra_threads: cfg.intra_threads,
        };
        let visual = VisualEncoder::new(&manifest, opts)?;
        let text = match manifest.text {
            Some(_) => Some(TextEncoder::new(&manifest, opts, cfg.text_cache)?),
            None => None,
        };
        let weights = FusionWeights {
            visual_weight: cfg.visual_weight.unwrap_or(manifest.fusion.visual_weight),
            text_weight: cfg.text_weight.unwrap_or(manifest.fusion.text_weight),
        };
        Ok(Encoder {
            manifest,
            visual,
            text,
            weights,
        })
    }

    pub fn dim(&self) -> usize {
        self.manifest.embedding_dim()
    }

    /// Fused vectors for items of one or more frames each, with optional text (a text is ignored when the
    /// model has no text tower). Clips must not be empty.
    pub fn encode(
        &mut self,
        clips: &[&[&RgbImage]],
        texts: &[Option<&str>],
        side: Side,
    ) -> Result<Vec<Vec<f32>>, EncodeError> {
        let visual = self.visual.encode_clips(clips)?;
        let (vdim, tdim) = (
            self.manifest.visual.dim,
            self.manifest.text.as_ref().map_or(0, |t| t.dim),
        );
        let mut text_vecs: Vec<Option<Arc<[f32]>>> = vec![None; clips.len()];
        if let Some(text) = self.text.as_mut() {
            let wanted: Vec<(usize, &str)> = texts
                .iter()
                .enumerate()
                .filter_map(|(i, t)| t.filter(|t| !t.trim().is_empty()).map(|t| (i, t)))
                .collect();
            let strs: Vec<&str> = wanted.iter().map(|(_, t)| *t).collect();
            for ((i, _), v) in wanted.iter().zip(text.encode(&strs)?) {
                text_vecs[*i] = Some(v);
            }
        }
        Ok(visual
            .iter()
            .zip(&text_vecs)
            .map(|(v, t)| match side {
                Side::Page => page_vector(Some(v), t.as_deref(), vdim, tdim),
                Side::Query => query_vector(Some(v), t.as_deref(), vdim, tdim, self.weights),
            })
            .collect())
    }
}
