//! Background references: "no product on screen" is the hard case for matching (an empty set still
//! resembles *some* product at cosine ~0.8 with the default encoder). A keyframe abstains when its best
//! product does not beat the best background reference by `gallery.background_margin`.
//!
//! The references are synthetic empty-studio frames (flat tones, gradients, sensor noise) embedded like
//! catalogue pages, plus any snapshots of the real empty set listed in `gallery.background_images` (the
//! better option for a known studio). Their vectors are kept next to the gallery (`background.json`,
//! written by `gallery build` and by the first start), keyed by the model version and a sha256 of the
//! references' pixels, so a start does not spend a batch of tower passes on the same 15+ pictures.

use std::path::{Path, PathBuf};

use image::{Rgb, RgbImage};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::encode::{EncodeError, Encoder, Side};
use crate::vector_b64;

/// The cache file in the gallery directory.
pub const CACHE_FILE: &str = "background.json";

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Cache {
    model_version: String,
    /// sha256 over every reference's size and pixels, in order.
    references_sha256: String,
    dim: usize,
    /// Little-endian f32 rows, base64 (exact, unlike decimal floats).
    vectors: Vec<String>,
}

/// Page-side embeddings of the background references, one per row.
pub struct Background {
    pub vectors: Vec<Vec<f32>>,
}

impl Background {
    /// The references' vectors from `gallery_dir`'s cache when it was made by this model from the same
    /// pictures; otherwise embedded and the cache written (a cache that cannot be written is a warning:
    /// the next start embeds again).
    pub fn load_or_build(encoder: &mut Encoder, extra: &[PathBuf], gallery_dir: &Path) -> Result<Self, BackgroundError> {
        let images = references(extra)?;
        let key = references_sha256(&images);
        let path = gallery_dir.join(CACHE_FILE);
        match read_cache(&path, &encoder.manifest.version, &key, encoder.dim(), images.len()) {
            Ok(Some(vectors)) => return Ok(Background { vectors }),
            Ok(None) => {}
            Err(reason) => tracing::warn!(path = %path.display(), reason, "background cache not used (embedding the references again)"),
        }
        let background = Self::embed(encoder, &images)?;
        let cache = Cache {
            model_version: encoder.manifest.version.clone(),
            references_sha256: key,
            dim: encoder.dim(),
            vectors: background.vectors.iter().map(|v| vector_b64::encode(v)).collect(),
        };
        let tmp = path.with_extension("json.tmp");
        let written = serde_json::to_vec(&cache)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), error = %e, "cannot write the background cache");
        }
        Ok(background)
    }

    fn embed(encoder: &mut Encoder, images: &[RgbImage]) -> Result<Self, BackgroundError> {
        let clips: Vec<[&RgbImage; 1]> = images.iter().map(|i| [i]).collect();
        let refs: Vec<&[&RgbImage]> = clips.iter().map(|c| c.as_slice()).collect();
        let texts = vec![None; refs.len()];
        Ok(Background { vectors: encoder.encode(&refs, &texts, Side::Page)? })
    }

    /// Highest similarity of a query to any reference (same scoring as the gallery: a dot product).
    pub fn score(&self, query: &[f32]) -> f32 {
        self.vectors
            .iter()
            .map(|v| v.iter().zip(query).map(|(a, b)| a * b).sum::<f32>())
            .fold(f32::NEG_INFINITY, f32::max)
    }

    /// The abstention rule: a keyframe whose best product (`best`, image part) does not beat the best
    /// reference by `margin` shows no product.
    pub fn abstains(&self, best: f32, query: &[f32], margin: f32) -> bool {
        best < self.score(query) + margin
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BackgroundError {
    #[error("gallery.background_images: cannot read {0}")]
    Image(String),
    #[error("cannot embed background references: {0}")]
    Encode(#[from] EncodeError),
}

/// The synthetic references, then `extra` in order.
fn references(extra: &[PathBuf]) -> Result<Vec<RgbImage>, BackgroundError> {
    let mut images = synthetic(224);
    for path in extra {
        let img = image::open(path)
            .map_err(|e| BackgroundError::Image(format!("{}: {e}", path.display())))?
            .to_rgb8();
        images.push(img);
    }
    Ok(images)
}

fn references_sha256(images: &[RgbImage]) -> String {
    let mut h = Sha256::new();
    for img in images {
        h.update(img.width().to_le_bytes());
        h.update(img.height().to_le_bytes());
        h.update(img.as_raw());
    }
    hex::encode(h.finalize())
}

/// The cached vectors when the cache matches; `Ok(None)` when there is none or it belongs to another
/// model or other references (a normal change); `Err` when it is unreadable or malformed.
fn read_cache(path: &Path, model_version: &str, key: &str, dim: usize, count: usize) -> Result<Option<Vec<Vec<f32>>>, String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let cache: Cache = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    if cache.model_version != model_version || cache.references_sha256 != key {
        return Ok(None);
    }
    if cache.dim != dim || cache.vectors.len() != count {
        return Err(format!("holds {} vectors of {} dims, expected {count} of {dim}", cache.vectors.len(), cache.dim));
    }
    cache
        .vectors
        .iter()
        .map(|row| {
            let v = vector_b64::decode(row)?;
            if v.len() != dim {
                return Err(format!("a row of {} values, expected {dim}", v.len()));
            }
            if v.iter().any(|x| !x.is_finite()) {
                return Err("a row with a non-finite value".into());
            }
            Ok(v)
        })
        .collect::<Result<_, _>>()
        .map(Some)
}

/// Flat tones, vertical and horizontal gradients, and noisy versions of them.
fn synthetic(size: u32) -> Vec<RgbImage> {
    let tones: [[f32; 3]; 5] =
        [[128., 128., 128.], [200., 196., 190.], [60., 60., 64.], [150., 135., 120.], [235., 235., 235.]];
    let mut rng = fastrand::Rng::with_seed(7);
    let mut out = Vec::new();
    for tone in tones {
        for kind in 0..3 {
            let img = RgbImage::from_fn(size, size, |x, y| {
                let (fx, fy) = (x as f32 / size as f32, y as f32 / size as f32);
                let shade = match kind {
                    0 => 1.0,
                    1 => 0.8 + 0.35 * fy,
                    _ => 0.85 + 0.3 * fx - 0.15 * (fy - 0.5).abs(),
                };
                let noise = if kind == 0 { 0.0 } else { (rng.f32() - 0.5) * 8.0 };
                Rgb(tone.map(|c| (c * shade + noise).clamp(0.0, 255.0) as u8))
            });
            out.push(img);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn synthetic_references_are_distinct_and_sized() {
        let imgs = super::synthetic(64);
        assert_eq!(imgs.len(), 15);
        assert!(imgs.iter().all(|i| i.dimensions() == (64, 64)));
        assert_ne!(imgs[0].as_raw(), imgs[1].as_raw());
    }
}
