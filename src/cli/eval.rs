//! `livesku eval --gallery DIR --queries QUERIES.jsonl [--k K]`: retrieval recall of a gallery.
//! Query lines: `{"images": ["x.jpg", ...], "text": "optional", "product_id": "..."}`; several images are
//! one clip. Prints recall figures, then one JSON line `{"n": N, "r1": R1, "r5": R5}`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use image::RgbImage;
use serde::Deserialize;
use serde_json::json;

use super::gallery::EncoderArgs;
use crate::encode::Side;
use crate::gallery::{Gallery, GalleryConfig, IndexKind, Searcher};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, value_name = "DIR")]
    gallery: PathBuf,
    #[arg(long, value_name = "QUERIES.jsonl")]
    queries: PathBuf,
    /// Also report recall at this depth.
    #[arg(long, default_value_t = 10)]
    k: usize,
    /// Search index: auto, exact or hnsw.
    #[arg(long, default_value = "exact")]
    index: String,
    /// Ignore the queries' text (image-only evaluation).
    #[arg(long)]
    no_text: bool,
    #[command(flatten)]
    encoder: EncoderArgs,
}

#[derive(Deserialize)]
struct Query {
    images: Vec<String>,
    #[serde(default)]
    text: Option<String>,
    product_id: String,
}

const BATCH: usize = 8;

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let index = match args.index.as_str() {
        "auto" => IndexKind::Auto,
        "exact" => IndexKind::Exact,
        "hnsw" => IndexKind::Hnsw,
        other => anyhow::bail!("--index: unknown index {other:?} (auto, exact or hnsw)"),
    };
    let mut enc = args.encoder.open()?;
    let g = Gallery::open(&args.gallery, Some(&enc.manifest))?;
    let searcher = Searcher::new(g, &GalleryConfig { index, ..GalleryConfig::default() });
    let text = std::fs::read_to_string(&args.queries).with_context(|| format!("cannot read {}", args.queries.display()))?;
    let base = args.queries.parent().unwrap_or(Path::new(".")).to_path_buf();

    let mut queries: Vec<(usize, Query, Vec<RgbImage>)> = Vec::new();
    let mut bad = 0usize;
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        match parse(line, &base) {
            Ok((q, imgs)) => queries.push((i + 1, q, imgs)),
            Err(reason) => {
                eprintln!("{}:{}: skipped: {reason}", args.queries.display(), i + 1);
                bad += 1;
            }
        }
    }
    let depth = args.k.max(5);
    let mut ranks: Vec<Option<usize>> = Vec::with_capacity(queries.len());
    let mut unknown = 0usize;
    for chunk in queries.chunks(BATCH) {
        let clips: Vec<Vec<&RgbImage>> = chunk.iter().map(|(_, _, imgs)| imgs.iter().collect()).collect();
        let clip_refs: Vec<&[&RgbImage]> = clips.iter().map(Vec::as_slice).collect();
        let texts: Vec<Option<&str>> = chunk.iter().map(|(_, q, _)| if args.no_text { None } else { q.text.as_deref() }).collect();
        let vectors = enc.encode(&clip_refs, &texts, Side::Query)?;
        let flat: Vec<f32> = vectors.concat();
        for ((_, q, _), hits) in chunk.iter().zip(searcher.search(&flat, depth)) {
            if searcher.gallery.row_of(&q.product_id).is_none() {
                unknown += 1;
            }
            ranks.push(hits.iter().position(|h| searcher.gallery.product(h.row).product_id == q.product_id));
        }
    }
    let n = ranks.len();
    let recall = |k: usize| if n == 0 { 0.0 } else { ranks.iter().filter(|r| r.is_some_and(|r| r < k)).count() as f64 / n as f64 };
    let mrr = if n == 0 { 0.0 } else { ranks.iter().map(|r| r.map_or(0.0, |r| 1.0 / (r + 1) as f64)).sum::<f64>() / n as f64 };
    eprintln!(
        "queries {n} (skipped {bad}, product not in gallery {unknown}); gallery {} products, {} search",
        searcher.gallery.len(),
        if searcher.uses_ann() { "hnsw" } else { "exact" }
    );
    println!("R@1 {:.4}  R@5 {:.4}  R@{depth} {:.4}  MRR@{depth} {:.4}", recall(1), recall(5), recall(depth), mrr);
    println!("{}", json!({"n": n, "r1": round4(recall(1)), "r5": round4(recall(5))}));
    Ok(if bad > 0 { ExitCode::from(super::gallery::EXIT_SKIPPED) } else { ExitCode::SUCCESS })
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

fn parse(line: &str, base: &Path) -> Result<(Query, Vec<RgbImage>), String> {
    let q: Query = serde_json::from_str(line).map_err(|e| format!("invalid query: {e}"))?;
    if q.images.is_empty() {
        return Err("\"images\" is empty".into());
    }
    let imgs = q
        .images
        .iter()
        .map(|p| image::open(base.join(p)).map(|i| i.to_rgb8()).map_err(|e| format!("image {p}: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((q, imgs))
}
