//! Background references: "no product on screen" is the hard case for matching (an empty set still
//! resembles *some* product at cosine ~0.8 with the default encoder). A keyframe abstains when its best
//! product does not beat the best background reference by `gallery.background_margin`.
//!
//! The references are synthetic empty-studio frames (flat tones, gradients, sensor noise) embedded at
//! start-up like catalogue pages, plus any snapshots of the real empty set listed in
//! `gallery.background_images` (the better option for a known studio).

use std::path::PathBuf;

use image::{Rgb, RgbImage};

use crate::encode::{EncodeError, Encoder, Side};

/// Page-side embeddings of the background references, one per row.
pub struct Background {
    pub vectors: Vec<Vec<f32>>,
}

impl Background {
    pub fn build(encoder: &mut Encoder, extra: &[PathBuf]) -> Result<Self, BackgroundError> {
        let mut images = synthetic(224);
        for path in extra {
            let img = image::open(path)
                .map_err(|e| BackgroundError::Image(format!("{}: {e}", path.display())))?
                .to_rgb8();
            images.push(img);
        }
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
