//! The visual tower: preprocessed frames in a reused batch buffer -> ONNX Runtime -> pooled unit vectors.

use image::RgbImage;
use ort::session::Session;
use ort::value::TensorRef;

use super::error::EncodeError;
use super::localise::{self, LocaliseConfig, Region};
use super::manifest::{Layout, Manifest, VisualSpec};
use super::pooling::{mean_of_units, pool_visual};
use super::preprocess::Preprocessor;
use super::runtime::{SessionOptions, batch_output, open_session};

pub struct VisualEncoder {
    session: Session,
    /// The trained head (`[visual.head]`), run on the tower's whole output.
    head: Option<Session>,
    spec: VisualSpec,
    pre: Preprocessor,
    /// NCHW (or NTCHW) input, grown to the largest batch seen and reused.
    batch: Vec<f32>,
}

impl VisualEncoder {
    pub fn new(manifest: &Manifest, opts: SessionOptions) -> Result<Self, EncodeError> {
        let session = open_session(&manifest.visual_path(), opts)?;
        let head = match manifest.head_path() {
            Some(path) => Some(open_session(&path, opts)?),
            None => None,
        };
        let spec = manifest.visual.clone();
        Ok(VisualEncoder {
            session,
            head,
            pre: Preprocessor::new(&spec),
            spec,
            batch: Vec::new(),
        })
    }

    pub fn dim(&self) -> usize {
        self.spec.dim
    }

    /// Floats of one model input item (T frames).
    pub fn item_len(&self) -> usize {
        self.pre.slot_len() * self.spec.frames
    }

    /// Input shape for `n` items.
    pub fn input_shape(&self, n: usize) -> Vec<usize> {
        let [h, w] = self.spec.size;
        match self.spec.layout {
            Layout::Nchw => vec![n, 3, h as usize, w as usize],
            Layout::Ntchw => vec![n, self.spec.frames, 3, h as usize, w as usize],
        }
    }

    /// Per image: the whole view's unit vector and, for each salient region small in the frame
    /// ([`localise`]), a unit vector of a crop around it from a second pass (batched over all images).
    /// A tower without patch tokens (pooled output) or a clip model gives no regions.
    pub fn encode_located(&mut self, images: &[&RgbImage], cfg: &LocaliseConfig) -> Result<Vec<Located>, EncodeError> {
        if cfg.max_regions == 0 || self.spec.frames != 1 || images.is_empty() {
            return Ok(self.encode_images(images)?.into_iter().map(|whole| Located { whole, regions: Vec::new() }).collect());
        }
        self.prepare(images)?;
        let shape = self.input_shape(images.len());
        let len = images.len() * self.item_len();
        let resize = self.spec.resize;
        // Regions are found on the tower's tokens where they lie, before the head runs (no copy).
        let mut crops: Vec<(usize, Region, RgbImage)> = Vec::new();
        let mut find = |tokens: usize, dim: usize, data: &[f32]| {
            let grid = (tokens.saturating_sub(1) as f64).sqrt() as usize;
            if grid * grid + 1 != tokens {
                return;
            }
            for (i, (img, item)) in images.iter().zip(data.chunks_exact(tokens * dim)).enumerate() {
                for r in localise::regions(&item[dim..], grid, dim, img.dimensions(), resize, cfg) {
                    let (x, y, w, h) = r.crop;
                    crops.push((i, r, image::imageops::crop_imm(*img, x, y, w, h).to_image()));
                }
            }
        };
        let wholes = run(&mut self.session, self.head.as_mut(), &self.spec, &self.batch[..len], shape, Some(&mut find))?;
        let mut located: Vec<Located> = wholes.into_iter().map(|whole| Located { whole, regions: Vec::new() }).collect();
        let refs: Vec<&RgbImage> = crops.iter().map(|(_, _, c)| c).collect();
        let vectors = self.encode_images(&refs)?;
        for ((i, region, _), v) in crops.into_iter().zip(vectors) {
            located[i].regions.push((region, v));
        }
        Ok(located)
    }

    /// One unit vector per image (single-frame models) — the per-keyframe path.
    pub fn encode_images(&mut self, images: &[&RgbImage]) -> Result<Vec<Vec<f32>>, EncodeError> {
        let clips: Vec<[&RgbImage; 1]> = images.iter().map(|i| [*i]).collect();
        let refs: Vec<&[&RgbImage]> = clips.iter().map(|c| c.as_slice()).collect();
        self.encode_clips(&refs)
    }

    /// One unit vector per clip. A T-frame model sees T frames sampled evenly from the clip (repeated when
    /// the clip is shorter); a single-frame model embeds every frame and averages the unit vectors.
    pub fn encode_clips(&mut self, clips: &[&[&RgbImage]]) -> Result<Vec<Vec<f32>>, EncodeError> {
        let t = self.spec.frames;
        let mut items: Vec<&RgbImage> = Vec::new();
        let mut spans = Vec::with_capacity(clips.len());
        for clip in clips {
            let start = items.len();
            if clip.is_empty() {
                let source = super::preprocess::PreprocessError::Empty(0, 0);
                return Err(EncodeError::Preprocess {
                    index: spans.len(),
                    source,
                });
            }
            if t == 1 {
                items.extend(clip.iter().copied());
            } else {
                items.extend((0..t).map(|i| clip[i * clip.len() / t]));
            }
            spans.push(start..items.len());
        }
        self.prepare(&items)?;
        let per_item = self.run_prepared(items.len() / t)?;
        if t > 1 {
            return Ok(per_item);
        }
        Ok(spans
            .into_iter()
            .map(|span| {
                if span.len() == 1 {
                    per_item[span.start].clone()
                } else {
                    mean_of_units(&per_item[span], self.spec.dim)
                }
            })
            .collect())
    }

    /// Preprocesses frames (T consecutive frames per item) into the batch buffer.
    pub fn prepare(&mut self, frames: &[&RgbImage]) -> Result<(), EncodeError> {
        let slot = self.pre.slot_len();
        let need = frames.len() * slot;
        if self.batch.len() < need {
            self.batch.resize(need, 0.0);
        }
        for (index, (img, out)) in frames
            .iter()
            .zip(self.batch.chunks_exact_mut(slot))
            .enumerate()
        {
            self.pre
                .write(img, out)
                .map_err(|source| EncodeError::Preprocess { index, source })?;
        }
        Ok(())
    }

    /// Runs the first `n` items of the batch buffer.
    pub fn run_prepared(&mut self, n: usize) -> Result<Vec<Vec<f32>>, EncodeError> {
        let len = n * self.item_len();
        let shape = self.input_shape(n);
        run(&mut self.session, self.head.as_mut(), &self.spec, &self.batch[..len], shape, None)
    }

    /// Runs the tower on an already prepared input tensor (benchmarks, reference tests).
    pub fn run_tensor(&mut self, tensor: &[f32], n: usize) -> Result<Vec<Vec<f32>>, EncodeError> {
        let shape = self.input_shape(n);
        run(&mut self.session, self.head.as_mut(), &self.spec, tensor, shape, None)
    }

    /// The tower's raw output for single-frame images, before any head or pooling: `(tokens, dim, data)`
    /// with `data` of `images.len() * tokens * dim` floats. What `livesku train` caches.
    pub fn tower_tokens(&mut self, images: &[&RgbImage]) -> Result<(usize, usize, Vec<f32>), EncodeError> {
        self.prepare(images)?;
        let n = images.len();
        let shape = self.input_shape(n);
        let want = self.spec.head.as_ref().map_or(self.spec.dim, |h| h.input_dim);
        let input = TensorRef::from_array_view((shape, &self.batch[..n * self.item_len()]))?;
        let outputs = self.session.run(ort::inputs![self.spec.input.as_str() => input])?;
        let (tokens, dim, out) = batch_output(&outputs, &self.spec.output, n, want)?;
        Ok((tokens, dim, out.to_vec()))
    }
}

/// One image's embedding, and those of its salient regions (see [`VisualEncoder::encode_located`]).
#[derive(Debug, Clone)]
pub struct Located {
    pub whole: Vec<f32>,
    pub regions: Vec<(Region, Vec<f32>)>,
}

/// Unit vectors of a batch; `tokens_seen`, when given, sees the tower's token output first
/// (`tokens` x `dim` floats per item).
fn run(
    session: &mut Session,
    head: Option<&mut Session>,
    spec: &VisualSpec,
    data: &[f32],
    shape: Vec<usize>,
    tokens_seen: Option<&mut dyn FnMut(usize, usize, &[f32])>,
) -> Result<Vec<Vec<f32>>, EncodeError> {
    let n = shape[0];
    if n == 0 {
        return Ok(Vec::new());
    }
    let input = TensorRef::from_array_view((shape, data))?;
    let outputs = session.run(ort::inputs![spec.input.as_str() => input])?;
    let want = spec.head.as_ref().map_or(spec.dim, |h| h.input_dim);
    let (tokens, dim, out) = batch_output(&outputs, &spec.output, n, want)?;
    if let Some(seen) = tokens_seen
        && tokens > 1
    {
        seen(tokens, dim, out);
    }
    if let (Some(head), Some(h)) = (head, spec.head.as_ref()) {
        let tokens_in = TensorRef::from_array_view((vec![n, tokens, dim], out))?;
        let pooled = head.run(ort::inputs![h.input.as_str() => tokens_in])?;
        let (_, dim, out) = batch_output(&pooled, &h.output, n, spec.dim)?;
        return Ok(out.chunks_exact(dim).map(|item| pool_visual(item, 1, dim, spec.pooling)).collect());
    }
    Ok(out.chunks_exact(tokens * dim).map(|item| pool_visual(item, tokens, dim, spec.pooling)).collect())
}
