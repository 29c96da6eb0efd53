//! `livesku ocr IMAGE... [--catalog FILE | --gallery DIR]`: reads the text in images (issue 12) and, with a
//! catalogue, ranks products by that text alone. One JSON line per image on stdout:
//! `{"image", "lines": [{"text", "confidence", "bbox"}], "det_ms", "rec_ms", "products": [...]}`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use serde_json::json;

use crate::ocr::{MatchConfig, OcrConfig, OcrEngine, ProductText, TextIndex};

#[derive(clap::Args)]
pub struct Args {
    /// Images to read (PNG or JPEG).
    #[arg(value_name = "IMAGE", required = true)]
    images: Vec<PathBuf>,
    /// Catalogue JSON lines (`product_id`, `title`, `description`, ...): rank its products by the text read.
    #[arg(long, value_name = "FILE", conflicts_with = "gallery")]
    catalog: Option<PathBuf>,
    /// A built gallery: rank its products (titles, and a `description` kept in their metadata).
    #[arg(long, value_name = "DIR")]
    gallery: Option<PathBuf>,
    /// Directory with det.onnx and rec.onnx (default: the model cache, see models/ocr.sh).
    #[arg(long, value_name = "DIR")]
    model_dir: Option<PathBuf>,
    /// TOML file with `[ocr]` (OcrConfig) and/or `[match]` (MatchConfig) tables; flags override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// ONNX Runtime threads per model.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Products listed per image.
    #[arg(long, default_value_t = 5)]
    top: usize,
}

#[derive(Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FileConfig {
    ocr: OcrConfig,
    #[serde(rename = "match")]
    matching: MatchConfig,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let file = match &args.config {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            toml::from_str::<FileConfig>(&text)
                .with_context(|| format!("invalid config {}", path.display()))?
        }
        None => FileConfig::default(),
    };
    let mut cfg = OcrConfig { intra_threads: args.threads, ..file.ocr };
    if args.model_dir.is_some() {
        cfg.model_dir = args.model_dir.clone();
    }
    let engine = OcrEngine::open(&cfg).context("cannot open the OCR models")?;
    let products = catalogue(&args)?;
    let matching = MatchConfig { top_k: args.top, ..file.matching };
    let index = products.map(|p| TextIndex::new(&p, matching));
    let mut failed = false;
    let mut out = std::io::stdout().lock();
    for path in &args.images {
        let img = match image::open(path) {
            Ok(img) => img.to_rgb8(),
            Err(e) => {
                eprintln!("error: cannot read {}: {e}", path.display());
                failed = true;
                continue;
            }
        };
        let (lines, t) = engine.read_timed(&img).with_context(|| format!("OCR of {}", path.display()))?;
        let mut record = json!({
            "image": path.display().to_string(),
            "lines": lines,
            "det_ms": t.detect.as_secs_f64() * 1e3,
            "rec_ms": t.recognize.as_secs_f64() * 1e3,
            "boxes": t.boxes,
        });
        if let Some(index) = &index {
            record["products"] = json!(index.score(&lines));
        }
        writeln!(out, "{record}")?;
    }
    out.flush()?;
    Ok(if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn catalogue(args: &Args) -> anyhow::Result<Option<Vec<ProductText>>> {
    if let Some(path) = &args.catalog {
        let parsed = crate::train::data::read_catalog(path)?;
        for line in parsed.skip_lines() {
            eprintln!("{line}");
        }
        let products = parsed.items.iter().map(ProductText::from).collect();
        return Ok(Some(products));
    }
    if let Some(dir) = &args.gallery {
        let gallery = crate::gallery::Gallery::open(dir, None)
            .with_context(|| format!("cannot open gallery {}", dir.display()))?;
        let products = (0..gallery.rows())
            .filter(|&row| !gallery.is_removed(row))
            .map(|row| {
                let p = gallery.product(row);
                let description = p.metadata.get("description").and_then(|v| v.as_str()).unwrap_or_default();
                ProductText {
                    product_id: p.product_id.clone(),
                    title: p.title.clone(),
                    description: description.into(),
                }
            })
            .collect();
        return Ok(Some(products));
    }
    Ok(None)
}
