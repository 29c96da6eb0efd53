//! `livesku train --catalog CATALOG.jsonl --examples EXAMPLES.jsonl --out MODEL_DIR`: learns the
//! cross-domain head (src/train) and writes a complete model directory that every encoding command takes
//! (`--model DIR`, `LIVESKU_MODEL_DIR`, `[encoder] model_dir`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use serde_json::json;

use crate::train::{HeadParams, TrainSettings};

#[derive(clap::Args)]
pub struct Args {
    /// Catalogue (gallery build's format): the page side.
    #[arg(long, value_name = "CATALOG.jsonl")]
    catalog: PathBuf,
    /// Labelled live-domain examples (eval's query format).
    #[arg(long, value_name = "EXAMPLES.jsonl")]
    examples: PathBuf,
    /// Model directory to write.
    #[arg(long, value_name = "MODEL_DIR")]
    out: PathBuf,
    /// Base model directory [default: $LIVESKU_CACHE/models/default]
    #[arg(long, value_name = "BASE_DIR", env = "LIVESKU_MODEL_DIR")]
    model: Option<PathBuf>,
    /// Validation queries (eval's format) for the report; without it `--holdout` of the examples is held out.
    #[arg(long, value_name = "QUERIES.jsonl")]
    val: Option<PathBuf>,
    /// Share of the examples held out for the report when no `--val` is given.
    #[arg(long, default_value_t = 0.1)]
    holdout: f64,
    /// Synthetic live views made from each product's page image (domain randomisation). Off by default:
    /// on Grocery they lowered val recall, seen and unseen products alike (BENCHMARKS.md).
    #[arg(long, default_value_t = 0)]
    synthetic_views: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    #[arg(long, default_value_t = 40)]
    epochs: usize,
    #[arg(long, default_value_t = 256)]
    batch: usize,
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    #[arg(long, default_value_t = 1e-4)]
    weight_decay: f64,
    /// Softmax temperature of the contrastive loss.
    #[arg(long, default_value_t = 0.07)]
    temperature: f64,
    /// Loss weight of a synthetic view against a real example.
    #[arg(long, default_value_t = 1.0)]
    synthetic_weight: f64,
    /// Calibration of the tracker thresholds written into the model: precision its strong hits must
    /// reach on the held-out rows...
    #[arg(long, default_value_t = 0.95)]
    calibrate_precision: f64,
    /// ...and the most of those rows it may accept when their product is left out of the catalogue.
    #[arg(long, default_value_t = 0.1)]
    calibrate_max_absent: f64,
    /// Cache of frozen tower outputs [default: $LIVESKU_CACHE/train/features]
    #[arg(long, value_name = "DIR")]
    cache: Option<PathBuf>,
    /// Scratch directory [default: MODEL_DIR/.work]
    #[arg(long, value_name = "DIR")]
    work: Option<PathBuf>,
    /// ONNX Runtime intra-op threads for the tower (0 = one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

pub fn run(a: Args) -> anyhow::Result<ExitCode> {
    let check = |ok: bool, flag: &str, why: &str| if ok { Ok(()) } else { Err(anyhow::anyhow!("{flag}: {why}")) };
    check((0.0..1.0).contains(&a.holdout), "--holdout", "must be in [0, 1)")?;
    check(a.epochs > 0, "--epochs", "must be at least 1")?;
    check(a.batch >= 2, "--batch", "must be at least 2")?;
    check(a.lr > 0.0 && a.lr.is_finite(), "--lr", "must be a positive number")?;
    check(a.weight_decay >= 0.0 && a.weight_decay.is_finite(), "--weight-decay", "must be a non-negative number")?;
    check(a.temperature > 0.0 && a.temperature.is_finite(), "--temperature", "must be a positive number")?;
    check(a.synthetic_weight >= 0.0 && a.synthetic_weight.is_finite(), "--synthetic-weight", "must be a non-negative number")?;
    check((0.0..=1.0).contains(&a.calibrate_precision), "--calibrate-precision", "must be in [0, 1]")?;
    check((0.0..=1.0).contains(&a.calibrate_max_absent), "--calibrate-max-absent", "must be in [0, 1]")?;
    let settings = TrainSettings {
        model: a.model.unwrap_or_else(|| crate::paths::model_dir("default")),
        work: a.work.unwrap_or_else(|| a.out.join(".work")),
        cache: a.cache.unwrap_or_else(|| crate::paths::cache_dir().join("train").join("features")),
        python: crate::paths::venv_python(),
        catalog: a.catalog,
        examples: a.examples,
        out: a.out,
        val: a.val,
        holdout: a.holdout,
        synthetic_views: a.synthetic_views,
        threads: a.threads,
        head: HeadParams {
            epochs: a.epochs,
            batch: a.batch,
            lr: a.lr,
            weight_decay: a.weight_decay,
            temperature: a.temperature,
            synthetic_weight: a.synthetic_weight,
            seed: a.seed,
            calibrate_precision: a.calibrate_precision,
            calibrate_max_absent: a.calibrate_max_absent,
        },
        progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    let outcome = crate::train::train(&settings).context("training failed")?;
    let r = &outcome.report;
    for (name, res) in r["eval"].as_object().into_iter().flatten() {
        for (role, m) in res.as_object().into_iter().flatten() {
            eprintln!("[train] {name:<9} {role:<7} n {:>5}  R@1 {}  R@5 {}", m["n"], m["r1"], m["r5"]);
        }
    }
    match outcome.manifest.track {
        Some(t) => eprintln!(
            "[train] tracker thresholds for this model: enter {} exit {} margin {} (precision {} on {}, {} accepted, {} when left out of the catalogue)",
            t.enter_threshold, t.exit_threshold, t.min_margin, r["calibration"]["precision"], r["calibration"]["rows"],
            r["calibration"]["right_accepted"], r["calibration"]["absent_accepted"]
        ),
        None => eprintln!("[train] no tracker thresholds met the calibration targets: the tracker's defaults apply (set [track] in the service config)"),
    }
    eprintln!(
        "[train] model {} written to {} ({} s)",
        outcome.manifest.version,
        settings.out.display(),
        r["livesku"]["seconds_total"]
    );
    println!(
        "{}",
        json!({"model": settings.out.display().to_string(), "version": outcome.manifest.version, "eval": r["eval"],
               "skipped": r["livesku"]["skipped"].as_array().map_or(0, Vec::len)})
    );
    let skipped = r["livesku"]["skipped"].as_array().is_some_and(|s| !s.is_empty());
    Ok(if skipped { ExitCode::from(super::gallery::EXIT_SKIPPED) } else { ExitCode::SUCCESS })
}
