//! `livesku train`: learns the COPE-style cross-domain space on top of the frozen visual tower.
//!
//! Data flow, each step its own module:
//! [`data`] (catalogue = page side, examples = live side, bad lines reported) ->
//! views (page images, [`synth`]etic live views of them, example images; a seeded hold-out) ->
//! [`features`] (frozen tower tokens, cached on disk) -> [`recipe`] (head + symmetric contrastive loss +
//! training loop + ONNX export, in JAX) -> [`export`] (a complete, versioned model directory).

pub mod data;
pub mod export;
pub mod features;
pub mod quantize;
pub mod recipe;
pub mod synth;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use image::RgbImage;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crate::encode::visual::VisualEncoder;
use crate::gallery::catalog::CatalogEntry;
use crate::encode::{EncoderConfig, Manifest};
use crate::encode::runtime::SessionOptions;

pub use recipe::HeadParams;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Data(#[from] data::DataError),
    #[error(transparent)]
    Manifest(#[from] crate::encode::manifest::ManifestError),
    #[error(transparent)]
    Encode(#[from] crate::encode::EncodeError),
    #[error(transparent)]
    Features(#[from] features::FeatureError),
    #[error(transparent)]
    Recipe(#[from] recipe::RecipeError),
    #[error(transparent)]
    Export(#[from] export::ExportError),
    #[error("{0}")]
    Nothing(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("the training report {path} is unreadable: {reason}")]
    Report { path: PathBuf, reason: String },
}

/// Everything a run needs; every knob has a default recorded in the report.
#[derive(Debug, Clone)]
pub struct TrainSettings {
    pub catalog: PathBuf,
    pub examples: PathBuf,
    pub out: PathBuf,
    /// Base model directory (its tower stays frozen).
    pub model: PathBuf,
    /// Validation queries (eval's format); without them a seeded `holdout` share of the examples is used.
    pub val: Option<PathBuf>,
    pub holdout: f64,
    /// Synthetic live views made from each product's page images.
    pub synthetic_views: usize,
    /// Where cached tower tokens live (default `$LIVESKU_CACHE/train/features`).
    pub cache: PathBuf,
    /// Scratch directory for the recipe's inputs and outputs.
    pub work: PathBuf,
    pub python: PathBuf,
    pub threads: usize,
    pub head: HeadParams,
    pub progress: bool,
}

/// What a run did, printed by the command and stored in `training.json`.
pub struct TrainOutcome {
    pub manifest: Manifest,
    pub report: serde_json::Value,
}

/// One row of the training table: a picture, its product, where it came from and what it is for.
struct View {
    product: usize,
    domain: &'static str,
    role: &'static str,
    source: Source,
}

enum Source {
    File { path: PathBuf, line: usize, origin: usize },
    Synthetic { page: usize, index: usize },
}

/// Origins of file views, for error messages: 0 catalogue, 1 examples, 2 validation queries.
fn origin_path(s: &TrainSettings, origin: usize) -> &Path {
    match origin {
        0 => &s.catalog,
        1 => &s.examples,
        _ => s.val.as_deref().unwrap_or(&s.examples),
    }
}

/// Seed of one synthetic view: the run's seed, the page row and the view's index.
fn synth_seed(seed: u64, page: usize, index: usize) -> u64 {
    seed ^ ((page as u64) << 20) ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// The training table: page images, example images (a seeded share held out whole when there are no
/// validation queries), validation images, then the synthetic views of each product's first page image.
fn plan_views(s: &TrainSettings, catalog: &[CatalogEntry], examples: &[data::Example], val: Option<&[data::Example]>) -> Vec<View> {
    let mut views: Vec<View> = Vec::new();
    // Row of each product's first page image: the picture its synthetic views are made from.
    let mut first_page = Vec::with_capacity(catalog.len());
    for (product, entry) in catalog.iter().enumerate() {
        first_page.push(views.len());
        for path in &entry.images {
            views.push(View { product, domain: "page", role: "train", source: Source::File { path: path.clone(), line: entry.line, origin: 0 } });
        }
    }
    let mut rng = fastrand::Rng::with_seed(s.head.seed);
    let mut order: Vec<usize> = (0..examples.len()).collect();
    rng.shuffle(&mut order);
    let n_holdout = if val.is_some() { 0 } else { (examples.len() as f64 * s.holdout).round() as usize };
    let held: std::collections::HashSet<usize> = order[..n_holdout.min(order.len())].iter().copied().collect();
    for (i, ex) in examples.iter().enumerate() {
        let role = if held.contains(&i) { "holdout" } else { "train" };
        for path in &ex.images {
            views.push(View { product: ex.product, domain: "live", role, source: Source::File { path: path.clone(), line: ex.line, origin: 1 } });
        }
    }
    if let Some(val) = val {
        for ex in val {
            for path in &ex.images {
                views.push(View { product: ex.product, domain: "live", role: "val", source: Source::File { path: path.clone(), line: ex.line, origin: 2 } });
            }
        }
    }
    for (product, page) in first_page.iter().enumerate() {
        for index in 0..s.synthetic_views {
            views.push(View { product, domain: "synthetic", role: "train", source: Source::Synthetic { page: *page, index } });
        }
    }
    views
}

pub fn train(s: &TrainSettings) -> Result<TrainOutcome, TrainError> {
    let started = Instant::now();
    let base = Manifest::load(&s.model)?;
    let catalog = data::read_catalog(&s.catalog)?;
    let mut warnings: Vec<String> = catalog.skip_lines();
    if catalog.items.is_empty() {
        return Err(TrainError::Nothing(format!("{}: no usable catalogue line", s.catalog.display())));
    }
    let ids: HashMap<String, usize> = catalog.items.iter().enumerate().map(|(i, e)| (e.product_id.clone(), i)).collect();
    let examples = data::read_examples(&s.examples, &ids)?;
    warnings.extend(examples.skip_lines());
    if examples.items.is_empty() {
        for w in &warnings {
            eprintln!("{w}");
        }
        return Err(TrainError::Nothing(format!(
            "no usable example in {} ({} lines skipped): nothing to train on",
            s.examples.display(),
            examples.skipped.len()
        )));
    }
    let val = match &s.val {
        Some(path) => Some(data::read_examples(path, &ids)?),
        None => None,
    };
    if let Some(v) = &val {
        warnings.extend(v.skip_lines());
    }

    let views = plan_views(s, &catalog.items, &examples.items, val.as_ref().map(|v| v.items.as_slice()));

    // Every file is decoded once up front: unreadable pictures are reported with their line and left out.
    // Page pictures stay in memory only when synthetic views are made from them; the others are decoded
    // again when their turn comes, so memory does not grow with the size of the data.
    let mut pages: HashMap<usize, RgbImage> = HashMap::new();
    let mut bad_rows = Vec::new();
    for (row, v) in views.iter().enumerate() {
        if let Source::File { path, line, origin } = &v.source {
            match image::open(path) {
                Ok(img) => {
                    if v.domain == "page" && s.synthetic_views > 0 {
                        pages.insert(row, img.to_rgb8());
                    }
                }
                Err(e) => {
                    warnings.push(format!("{}:{line}: skipped: unreadable image {}: {e}", origin_path(s, *origin).display(), path.display()));
                    bad_rows.push(row);
                }
            }
        }
    }
    // A synthetic view needs its page picture.
    let dead: std::collections::HashSet<usize> = bad_rows.iter().copied().collect();
    let keep: Vec<usize> = (0..views.len())
        .filter(|r| !dead.contains(r))
        .filter(|r| match views[*r].source {
            Source::Synthetic { page, .. } => !dead.contains(&page),
            _ => true,
        })
        .collect();
    for w in &warnings {
        eprintln!("{w}");
    }
    let trainable = keep.iter().filter(|r| views[**r].role == "train" && views[**r].domain != "page").count();
    if trainable == 0 {
        return Err(TrainError::Nothing(format!(
            "nothing to train on: no usable example in {} and no synthetic views (--synthetic-views)",
            s.examples.display()
        )));
    }
    if !keep.iter().any(|r| views[*r].domain == "page") {
        return Err(TrainError::Nothing(format!("no readable page image in {}", s.catalog.display())));
    }

    // Backdrops for synthetic views: the live training examples themselves (shops, studios, hands).
    let backdrops: Vec<usize> = keep.iter().copied().filter(|r| views[*r].domain == "live" && views[*r].role == "train").collect();

    std::fs::create_dir_all(&s.work).map_err(|source| TrainError::Io { path: s.work.clone(), source })?;
    let opts = SessionOptions { provider: EncoderConfig::default().provider, intra_threads: s.threads };
    let mut tower_manifest = base.clone();
    tower_manifest.visual.head = None;
    let tower_dim = base.visual.head.as_ref().map_or(base.visual.dim, |h| h.input_dim);
    tower_manifest.visual.dim = tower_dim;
    let mut encoder = VisualEncoder::new(&tower_manifest, opts)?;
    let identity = format!(
        "{}|{}|{:?}|{:?}|{:?}|{:?}|{:?}",
        base.visual.sha256, base.visual.output, base.visual.size, base.visual.resize, base.visual.pad_rgb, base.visual.mean, base.visual.std
    );
    let mut cache = features::FeatureCache::new(s.cache.clone(), identity);
    let bar = if s.progress { ProgressBar::new(keep.len() as u64) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("[train] tower features [{bar:30}] {pos}/{len} ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let extract_started = Instant::now();
    let features_path = s.work.join("features.npy");
    let open = |row: usize| match &views[row].source {
        Source::File { path, .. } => image::open(path).map(|i| i.to_rgb8()).unwrap_or_default(),
        Source::Synthetic { .. } => RgbImage::default(),
    };
    let mut picture = |i: usize| -> RgbImage {
        let row = keep[i];
        match &views[row].source {
            Source::File { .. } => pages.get(&row).cloned().unwrap_or_else(|| open(row)),
            Source::Synthetic { page, index } => {
                let mut rng = fastrand::Rng::with_seed(synth_seed(s.head.seed, *page, *index));
                let backdrop = match backdrops.len() {
                    0 => None,
                    n => Some(open(backdrops[rng.usize(..n)])),
                };
                let page_img = pages.get(page).cloned().unwrap_or_default();
                synth::live_view(&page_img, backdrop.as_slice().iter().collect::<Vec<_>>().as_slice(), &mut rng)
            }
        }
    };
    let total = keep.len();
    let mut logged_decile = 0;
    let (tokens, dim) = features::write_features(&features_path, total, &mut picture, &mut encoder, &mut cache, &mut |done| {
        bar.set_position(done as u64);
        // Without a terminal (logs, CI) a line every 10 %.
        let decile = done * 10 / total.max(1);
        if !s.progress && decile > logged_decile {
            logged_decile = decile;
            eprintln!("[train] tower features {done}/{total}");
        }
    })?;
    bar.finish_and_clear();
    let extract_secs = extract_started.elapsed().as_secs_f64();
    eprintln!(
        "[train] {} views ({} from the cache, {} computed) in {:.0} s",
        keep.len(),
        cache.hits,
        cache.misses,
        extract_secs
    );

    let meta = json!({
        "products": catalog.items.iter().map(|e| e.product_id.clone()).collect::<Vec<_>>(),
        "label": keep.iter().map(|r| views[*r].product).collect::<Vec<_>>(),
        "domain": keep.iter().map(|r| views[*r].domain).collect::<Vec<_>>(),
        "role": keep.iter().map(|r| views[*r].role).collect::<Vec<_>>(),
    });
    let meta_path = s.work.join("meta.json");
    std::fs::write(&meta_path, meta.to_string()).map_err(|source| TrainError::Io { path: meta_path, source })?;
    for stale in ["head.onnx", "report.json"] {
        let _ = std::fs::remove_file(s.work.join(stale));
    }
    recipe::run(&s.python, &s.work, &s.head, !s.progress)?;

    let report_path = s.work.join("report.json");
    let text = std::fs::read_to_string(&report_path).map_err(|source| TrainError::Io { path: report_path.clone(), source })?;
    let mut report: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| TrainError::Report { path: report_path.clone(), reason: e.to_string() })?;
    report["livesku"] = json!({
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "base_model": base.dir.display().to_string(),
        "base_version": base.version,
        "catalog": s.catalog.display().to_string(),
        "examples": s.examples.display().to_string(),
        "val": s.val.as_ref().map(|p| p.display().to_string()),
        "holdout": s.holdout,
        "synthetic_views": s.synthetic_views,
        "skipped": warnings,
        "tower_tokens": [tokens, dim],
        "feature_cache": {"hits": cache.hits, "computed": cache.misses, "seconds": (extract_secs * 10.0).round() / 10.0},
        "seconds_total": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    });
    let trained = export::Trained {
        tower: &base.visual_path(),
        tower_output: &base.visual.output,
        tower_dim,
        head: &s.work.join("head.onnx"),
        dim: tower_dim,
        report: &report,
    };
    let manifest = export::write_model_dir(&base, &s.out, &trained)?;
    Ok(TrainOutcome { manifest, report })
}
