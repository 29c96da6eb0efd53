//! The encoder as a whole: manifest + visual tower + optional text tower + fusion.

use std::sync::Arc;

use image::RgbImage;

use super::config::EncoderConfig;
use super::error::EncodeError;
use super::fusion::{page_vector, query_vector};
use super::localise::{BBox, LocaliseConfig};
use super::manifest::{FusionWeights, Manifest};
use super::runtime::SessionOptions;
use super::text::TextEncoder;
use super::visual::VisualEncoder;

pub struct Encoder {
    pub manifest: Manifest,
    pub visual: VisualEncoder,
    text: TextTower,
    pub weights: FusionWeights,
    /// `[encoder.localise]`: salient regions re-embedded per keyframe ([`Encoder::encode_frames`]).
    pub localise: LocaliseConfig,
}

/// A keyframe's query vectors: the whole view, and each salient region's crop with its box.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameVectors {
    pub whole: Vec<f32>,
    pub regions: Vec<RegionVector>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RegionVector {
    pub bbox: BBox,
    pub vector: Vec<f32>,
}

impl From<Vec<f32>> for FrameVectors {
    fn from(whole: Vec<f32>) -> Self {
        FrameVectors { whole, regions: Vec::new() }
    }
}

/// The text tower's session: opened with the encoder, or on the first text (see
/// [`Encoder::open_deferring_text`]), or absent from the model.
enum TextTower {
    Absent,
    Deferred { opts: SessionOptions, cache: usize },
    Open(TextEncoder),
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
        Self::open_with(cfg, false)
    }

    /// As [`Encoder::open`], but the text tower's session (a 69 MB model for the default one) is only
    /// opened when a text first needs it: for a service whose keyframes carry no text (ASR off), where
    /// it would cost start-up time and memory for nothing.
    pub fn open_deferring_text(cfg: &EncoderConfig) -> Result<Self, EncodeError> {
        Self::open_with(cfg, true)
    }

    fn open_with(cfg: &EncoderConfig, defer_text: bool) -> Result<Self, EncodeError> {
        let manifest = Manifest::load(&cfg.model_dir())?;
        let opts = SessionOptions {
            provider: cfg.provider,
            intra_threads: cfg.intra_threads,
        };
        let visual = VisualEncoder::new(&manifest, opts)?;
        let text = match manifest.text {
            None => TextTower::Absent,
            Some(_) if defer_text => TextTower::Deferred { opts, cache: cfg.text_cache },
            Some(_) => TextTower::Open(TextEncoder::new(&manifest, opts, cfg.text_cache)?),
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
            localise: cfg.localise,
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
        let text_vecs = self.text_vectors(clips.len(), texts)?;
        Ok(visual.iter().zip(&text_vecs).map(|(v, t)| self.fuse(v, t.as_deref(), side)).collect())
    }

    /// Query vectors of keyframes: the whole view and, with `localise`, its salient regions
    /// (`[encoder.localise]`), each fused with the keyframe's text.
    pub fn encode_frames(
        &mut self,
        images: &[&RgbImage],
        texts: &[Option<&str>],
        localise: bool,
    ) -> Result<Vec<FrameVectors>, EncodeError> {
        let cfg = if localise { self.localise } else { LocaliseConfig { max_regions: 0, ..self.localise } };
        let located = self.visual.encode_located(images, &cfg)?;
        let text_vecs = self.text_vectors(images.len(), texts)?;
        Ok(located
            .iter()
            .zip(&text_vecs)
            .map(|(l, t)| FrameVectors {
                whole: self.fuse(&l.whole, t.as_deref(), Side::Query),
                regions: l
                    .regions
                    .iter()
                    .map(|(r, v)| RegionVector { bbox: r.bbox, vector: self.fuse(v, t.as_deref(), Side::Query) })
                    .collect(),
            })
            .collect())
    }

    fn fuse(&self, visual: &[f32], text: Option<&[f32]>, side: Side) -> Vec<f32> {
        let (vdim, tdim) = (self.manifest.visual.dim, self.manifest.text.as_ref().map_or(0, |t| t.dim));
        match side {
            Side::Page => page_vector(Some(visual), text, vdim, tdim),
            Side::Query => query_vector(Some(visual), text, vdim, tdim, self.weights),
        }
    }

    /// Runs the visual tower once on `items` blank images: the largest pass it will be given. ONNX Runtime's
    /// CPU arena grows to the largest batch a session has run and keeps that memory (measured on the default
    /// tower, 2 threads: +58 MiB from batch 8 to 16, +110 MiB to 32), so without this the RSS of a running
    /// service steps up whenever its load first reaches a larger batch. Returns the time it took.
    pub fn warm_up(&mut self, items: usize) -> Result<std::time::Duration, EncodeError> {
        let started = std::time::Instant::now();
        let [h, w] = self.manifest.visual.size;
        let blank = RgbImage::new(w, h);
        let images = vec![&blank; items.max(1)];
        self.visual.encode_images(&images)?;
        Ok(started.elapsed())
    }

    /// The text tower (opened now if it was deferred); `None` when the model has none.
    pub fn text_encoder(&mut self) -> Result<Option<&mut TextEncoder>, EncodeError> {
        if let TextTower::Deferred { opts, cache } = self.text {
            tracing::info!("opening the text tower (first text to embed)");
            self.text = TextTower::Open(TextEncoder::new(&self.manifest, opts, cache)?);
        }
        Ok(match &mut self.text {
            TextTower::Open(t) => Some(t),
            _ => None,
        })
    }

    /// Whether the text tower's session is open (it may be deferred until the first text).
    pub fn text_is_open(&self) -> bool {
        matches!(self.text, TextTower::Open(_))
    }

    /// The text tower's vector per item (none for items without text, or without a text tower).
    fn text_vectors(&mut self, n: usize, texts: &[Option<&str>]) -> Result<Vec<Option<Arc<[f32]>>>, EncodeError> {
        let mut text_vecs: Vec<Option<Arc<[f32]>>> = vec![None; n];
        let wanted: Vec<(usize, &str)> = texts
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.filter(|t| !t.trim().is_empty()).map(|t| (i, t)))
            .collect();
        if wanted.is_empty() {
            return Ok(text_vecs);
        }
        if let Some(text) = self.text_encoder()? {
            let strs: Vec<&str> = wanted.iter().map(|(_, t)| *t).collect();
            for ((i, _), v) in wanted.iter().zip(text.encode(&strs)?) {
                text_vecs[*i] = Some(v);
            }
        }
        Ok(text_vecs)
    }
}
