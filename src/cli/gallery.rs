//! `livesku gallery build|add|remove`: product galleries from catalogue files.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use serde_json::json;

use crate::encode::{Encoder, EncoderConfig, Provider};
use crate::gallery::{self, Gallery};

/// Exit status when some catalogue lines were skipped.
pub const EXIT_SKIPPED: u8 = 3;

/// Encoder options shared by the gallery and eval commands.
#[derive(clap::Args, Debug, Clone)]
pub struct EncoderArgs {
    /// Model directory holding manifest.toml [default: $LIVESKU_CACHE/models/default]
    #[arg(long, value_name = "DIR", env = "LIVESKU_MODEL_DIR")]
    pub model: Option<PathBuf>,
    /// Execution provider: cpu, cuda:N or tensorrt:N.
    #[arg(long, default_value = "cpu")]
    pub provider: Provider,
    /// ONNX Runtime intra-op threads (0 = one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Weight of the text cosine in query scores [default: the manifest's].
    #[arg(long)]
    pub text_weight: Option<f32>,
    /// Weight of the image cosine in query scores [default: the manifest's]; 0 = text only.
    #[arg(long)]
    pub visual_weight: Option<f32>,
}

impl EncoderArgs {
    pub fn open(&self) -> anyhow::Result<Encoder> {
        let cfg = EncoderConfig {
            model_dir: self.model.clone(),
            provider: self.provider,
            intra_threads: self.threads,
            text_weight: self.text_weight,
            visual_weight: self.visual_weight,
            ..EncoderConfig::default()
        };
        cfg.validate()?;
        Encoder::open(&cfg).with_context(|| format!("cannot open the encoder in {}", cfg.model_dir().display()))
    }
}

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(clap::Subcommand)]
enum Cmd {
    /// Build a new gallery from a catalogue (JSON lines: product_id, title, description, images).
    Build {
        #[arg(long, value_name = "CATALOG.jsonl")]
        catalog: PathBuf,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        #[command(flatten)]
        encoder: EncoderArgs,
    },
    /// Add (or replace) the products of a catalogue in an existing gallery.
    Add {
        #[arg(long, value_name = "DIR")]
        gallery: PathBuf,
        #[arg(long, value_name = "CATALOG.jsonl")]
        catalog: PathBuf,
        #[command(flatten)]
        encoder: EncoderArgs,
    },
    /// Remove products from a gallery.
    Remove {
        #[arg(long, value_name = "DIR")]
        gallery: PathBuf,
        #[arg(required = true, value_name = "PRODUCT_ID")]
        ids: Vec<String>,
    },
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Cmd::Build { catalog, out, encoder } => {
            let mut enc = encoder.open()?;
            let mut g = Gallery::create(&out, &enc.manifest)?;
            add(&catalog, &mut g, &mut enc)
        }
        Cmd::Add { gallery, catalog, encoder } => {
            let mut enc = encoder.open()?;
            let mut g = Gallery::open(&gallery, Some(&enc.manifest))?;
            add(&catalog, &mut g, &mut enc)
        }
        Cmd::Remove { gallery, ids } => {
            let mut g = Gallery::open(&gallery, None)?;
            let mut missing = 0;
            for id in &ids {
                if !g.remove(id)? {
                    eprintln!("not in the gallery: {id}");
                    missing += 1;
                }
            }
            println!("{}", json!({"removed": ids.len() - missing, "missing": missing, "products": g.len()}));
            Ok(if missing > 0 { ExitCode::from(EXIT_SKIPPED) } else { ExitCode::SUCCESS })
        }
    }
}

fn add(catalog: &std::path::Path, g: &mut Gallery, enc: &mut Encoder) -> anyhow::Result<ExitCode> {
    let started = std::time::Instant::now();
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let report = gallery::add_catalog(catalog, g, enc, progress)?;
    for s in &report.skipped {
        eprintln!("{}:{}: skipped: {}", catalog.display(), s.line, s.reason);
    }
    // Large enough for HNSW with the default settings: persist the graph now (or bring the persisted one up
    // to date), so the service loads it instead of building it (src/gallery/persist.rs).
    // The empty-set references' vectors too (src/matcher/background.rs), so the first start need not embed them.
    crate::matcher::Background::load_or_build(enc, &[], g.dir())?;
    let search = gallery::GalleryConfig::default();
    if search.use_hnsw(g.len()) {
        let t = std::time::Instant::now();
        if let Some(index) = gallery::persist::open_or_build(g, &search.hnsw) {
            eprintln!("gallery {}: HNSW index over {} rows in hnsw/ ({:.1} s)", g.dir().display(), index.persisted_rows(), t.elapsed().as_secs_f32());
        }
    }
    eprintln!(
        "gallery {}: {} products added, {} lines skipped, {} products in total ({:.1} s)",
        g.dir().display(),
        report.added,
        report.skipped.len(),
        g.len(),
        started.elapsed().as_secs_f32()
    );
    println!(
        "{}",
        json!({"gallery": g.dir(), "added": report.added, "skipped": report.skipped.len(), "products": g.len(),
               "model_version": g.meta.model_version})
    );
    Ok(if report.skipped.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_SKIPPED) })
}
