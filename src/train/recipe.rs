//! The training maths: `models/train/cope_head.py` (JAX + optax, exported with onnx, checked with
//! onnxruntime), run in the private venv that `models/assemble.sh` makes. The script is compiled into the
//! binary and written next to the data, so an installed `livesku` needs no source tree.

use std::path::{Path, PathBuf};
use std::process::Command;

pub const SCRIPT: &str = include_str!("../../models/train/cope_head.py");
pub const SCRIPT_NAME: &str = "cope_head.py";

#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    #[error("cannot write the training recipe into {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error(
        "cannot start {python}: {source} (run scripts/setup.sh: it makes the venv with jax, optax and onnx)"
    )]
    Start { python: PathBuf, source: std::io::Error },
    #[error("the training recipe failed ({status}); its messages are above")]
    Failed { status: std::process::ExitStatus },
}

/// Hyper-parameters passed to the recipe as flags (each one recorded in its report).
#[derive(Debug, Clone)]
pub struct HeadParams {
    pub epochs: usize,
    pub batch: usize,
    pub lr: f64,
    pub weight_decay: f64,
    pub temperature: f64,
    pub synthetic_weight: f64,
    pub seed: u64,
    /// Targets of the tracker-threshold calibration (`calibrate` in the recipe).
    pub calibrate_precision: f64,
    pub calibrate_max_absent: f64,
}

/// Runs the recipe on `data` (features.npy + meta.json); it writes head.onnx and report.json there.
pub fn run(python: &Path, data: &Path, p: &HeadParams, quiet: bool) -> Result<(), RecipeError> {
    let script = data.join(SCRIPT_NAME);
    std::fs::write(&script, SCRIPT).map_err(|source| RecipeError::Write { path: script.clone(), source })?;
    let mut cmd = Command::new(python);
    cmd.arg(&script)
        .arg("--data")
        .arg(data)
        .args(["--epochs", &p.epochs.to_string()])
        .args(["--batch", &p.batch.to_string()])
        .args(["--lr", &p.lr.to_string()])
        .args(["--weight-decay", &p.weight_decay.to_string()])
        .args(["--temperature", &p.temperature.to_string()])
        .args(["--synthetic-weight", &p.synthetic_weight.to_string()])
        .args(["--seed", &p.seed.to_string()])
        .args(["--calibrate-precision", &p.calibrate_precision.to_string()])
        .args(["--calibrate-max-absent", &p.calibrate_max_absent.to_string()])
        // JAX's own messages (platform selection) are not the user's business.
        .env("TF_CPP_MIN_LOG_LEVEL", "2")
        .stdout(std::process::Stdio::null());
    if quiet {
        cmd.arg("--quiet");
    }
    let status = cmd.status().map_err(|source| RecipeError::Start { python: python.to_path_buf(), source })?;
    if !status.success() {
        return Err(RecipeError::Failed { status });
    }
    Ok(())
}
