//! Helpers shared by the recognition-core tests (encoder, batcher, gallery).
#![allow(dead_code)]

use std::path::PathBuf;

use image::{Rgb, RgbImage};
use livesku::encode::EncoderConfig;

const SETUP: &str = "run scripts/setup.sh (or scripts/setup/onnxruntime.sh and models/assemble.sh)";

/// Encoder config for the assembled default model. Panics, never skips, when set-up has not been run.
pub fn encoder_config() -> EncoderConfig {
    let lib = livesku::paths::ort_dylib();
    assert!(
        lib.is_file(),
        "ONNX Runtime library not found at {}: {SETUP}",
        lib.display()
    );
    let cfg = EncoderConfig {
        intra_threads: 2,
        ..EncoderConfig::default()
    };
    let manifest = cfg.model_dir().join("manifest.toml");
    assert!(
        manifest.is_file(),
        "model manifest not found at {}: {SETUP}",
        manifest.display()
    );
    cfg
}

/// Python of the private venv (onnxruntime + numpy) made by models/assemble.sh.
pub fn venv_python() -> PathBuf {
    let py = livesku::paths::venv_python();
    assert!(
        py.is_file(),
        "private Python venv not found at {}: {SETUP}",
        py.display()
    );
    py
}

/// A deterministic, distinctive test picture: colour field, stripes and a box that depend on `seed`.
pub fn picture(seed: u32, w: u32, h: u32) -> RgbImage {
    let s = seed.wrapping_mul(2654435761);
    let (bx, by) = ((s % w.max(1)) / 2, ((s >> 8) % h.max(1)) / 2);
    RgbImage::from_fn(w, h, |x, y| {
        let stripe = ((x + y * (seed % 5 + 1)) / (4 + seed % 9)).is_multiple_of(2);
        let inside = x >= bx && x < bx + w / 3 && y >= by && y < by + h / 3;
        let r = ((x * 255 / w.max(1)) as u8).wrapping_add((s >> 16) as u8);
        let g = ((y * 255 / h.max(1)) as u8).wrapping_add((s >> 24) as u8);
        let b = if stripe { 220 } else { 30 };
        if inside {
            Rgb([255 - r, b, g])
        } else {
            Rgb([r, g, b])
        }
    })
}

pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Small deterministic generator (xorshift64*) for generated test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Uniform in [0, 1).
    pub fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// The repository's default manifest (only the TOML is read; no model files needed) copied into `dir`,
/// with another version string when asked.
pub fn manifest(dir: &std::path::Path, version: Option<&str>) -> livesku::encode::Manifest {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/models/default/manifest.toml")).unwrap();
    let text = match version {
        Some(v) => text.lines().map(|l| if l.starts_with("version = ") { format!("version = \"{v}\"") } else { l.to_string() }).collect::<Vec<_>>().join("\n"),
        None => text,
    };
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("manifest.toml"), text).unwrap();
    livesku::encode::Manifest::load(dir).unwrap()
}

pub fn unit(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
    v
}

/// Clustered unit vectors, like embeddings of related products.
pub fn clustered(rng: &mut Rng, n: usize, dim: usize, clusters: usize) -> Vec<Vec<f32>> {
    let centres: Vec<Vec<f32>> = (0..clusters).map(|_| unit((0..dim).map(|_| rng.next_f32() - 0.5).collect())).collect();
    (0..n)
        .map(|i| {
            let c = &centres[i % clusters];
            unit(c.iter().map(|x| x + 0.6 * (rng.next_f32() - 0.5) / (dim as f32).sqrt() * 4.0).collect())
        })
        .collect()
}
