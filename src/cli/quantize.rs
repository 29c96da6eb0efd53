//! `livesku quantize --model DIR --out DIR [--images PATH...]`: writes the int8 variant of a model
//! directory (src/train/quantize.rs) and prints its check against the source as one JSON line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use serde_json::json;

use crate::train::quantize::{quantize, QuantizeSettings};

#[derive(clap::Args)]
pub struct Args {
    /// Source model directory (float32) [default: $LIVESKU_CACHE/models/default]
    #[arg(long, value_name = "DIR", env = "LIVESKU_MODEL_DIR")]
    model: Option<PathBuf>,
    /// Model directory to write.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Real pictures (files, or directories of .jpg/.png) to check the variant on [default: the demo's
    /// product pictures under $LIVESKU_CACHE/demo]
    #[arg(long, value_name = "PATH", num_args = 1..)]
    images: Vec<PathBuf>,
    /// Least cosine of an int8 embedding to its float32 one on any check image.
    #[arg(long, default_value_t = 0.98)]
    min_cosine: f32,
    /// Keep the source's version, so galleries built with the float32 model are accepted (int8 queries
    /// against float32 pages). Without it they are refused and must be rebuilt with the variant.
    #[arg(long)]
    keep_version: bool,
    /// ONNX Runtime intra-op threads for the check (0 = one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

/// Image files named by `paths`, directories expanded (sorted, not recursive).
fn image_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let is_image = |p: &Path| {
        p.extension().and_then(|e| e.to_str()).is_some_and(|e| ["jpg", "jpeg", "png"].contains(&e.to_ascii_lowercase().as_str()))
    };
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("--images {}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && is_image(p))
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(a.min_cosine > 0.0 && a.min_cosine <= 1.0, "--min-cosine: must be in (0, 1]");
    let images = if a.images.is_empty() { vec![crate::paths::cache_dir().join("demo")] } else { a.images };
    let settings = QuantizeSettings {
        model: a.model.unwrap_or_else(|| crate::paths::model_dir("default")),
        out: a.out,
        python: crate::paths::venv_python(),
        images: image_files(&images)?,
        min_cosine: a.min_cosine,
        keep_version: a.keep_version,
        threads: a.threads,
    };
    let o = quantize(&settings).context("quantisation failed")?;
    eprintln!(
        "[quantize] model {} written to {}: cosine to float32 min {:.4} mean {:.4} on {} images",
        o.manifest.version,
        settings.out.display(),
        o.cosine_min,
        o.cosine_mean,
        o.images
    );
    println!(
        "{}",
        json!({"model": settings.out.display().to_string(), "version": o.manifest.version,
               "cosine_min": o.cosine_min, "cosine_mean": o.cosine_mean, "images": o.images})
    );
    Ok(ExitCode::SUCCESS)
}
