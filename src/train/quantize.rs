//! `livesku quantize`: an int8 variant of a model directory. The visual tower's MatMul weights become int8
//! (`models/quantize/int8.py`, ONNX Runtime's dynamic quantiser, run in the set-up's venv); the head, the
//! text tower and the tokenizer are copied unchanged. The result is checked against the source model on
//! real images before it is accepted: the cosine of each image's int8 embedding to its float32 one must
//! reach `min_cosine`, and the figures go into `quantization.json`.
//!
//! Version: `<source version>+int8-<12 hex of the int8 tower's sha256>`, so a gallery built with the float32
//! model is refused by the int8 one (their vectors differ by the measured cosine). `keep_version` makes the
//! variant share the source's version on purpose, for a gallery too large to rebuild: queries are then int8
//! against float32 pages (R@1 of both set-ups in BENCHMARKS.md).

use std::path::{Path, PathBuf};
use std::process::Command;

use image::RgbImage;
use serde_json::json;

use crate::encode::{Encoder, EncoderConfig, Manifest, Side};

pub const SCRIPT: &str = include_str!("../../models/quantize/int8.py");
/// File name of the int8 tower in the model directory.
pub const INT8_TOWER: &str = "visual.int8.onnx";

#[derive(Debug, thiserror::Error)]
pub enum QuantizeError {
    #[error(transparent)]
    Manifest(#[from] crate::encode::manifest::ManifestError),
    #[error(transparent)]
    Encode(#[from] crate::encode::EncodeError),
    #[error("cannot write {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {reason}")]
    Image { path: PathBuf, reason: String },
    #[error("cannot start {python}: {source} (run scripts/setup.sh: it makes the venv with onnxruntime)")]
    Start { python: PathBuf, source: std::io::Error },
    #[error("the quantiser failed ({status}); its messages are above")]
    Failed { status: std::process::ExitStatus },
    #[error("{0} is already an int8 model (version {1}): quantise its float32 source instead")]
    AlreadyQuantized(PathBuf, String),
    #[error("{0} already holds a model (remove it first, or choose another --out)")]
    Exists(PathBuf),
    #[error("no check images: pass --images with real pictures (catalogue or live photos) to compare the variant against its source")]
    NoImages,
    #[error(
        "the int8 tower is too far from float32: cosine {min:.4} on {worst} (at least {required} is required, --min-cosine); the variant in {out} is not usable"
    )]
    TooFar { min: f32, worst: PathBuf, required: f32, out: PathBuf },
}

#[derive(Debug, Clone)]
pub struct QuantizeSettings {
    /// Source model directory (float32).
    pub model: PathBuf,
    /// Directory to write.
    pub out: PathBuf,
    pub python: PathBuf,
    /// Real images the variant is checked on.
    pub images: Vec<PathBuf>,
    pub min_cosine: f32,
    pub keep_version: bool,
    /// ONNX Runtime intra-op threads for the check (0 = one per core).
    pub threads: usize,
}

#[derive(Debug)]
pub struct QuantizeOutcome {
    pub manifest: Manifest,
    /// Cosine of int8 to float32 embeddings over the check images.
    pub cosine_min: f32,
    pub cosine_mean: f32,
    pub images: usize,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> QuantizeError {
    let path = path.to_path_buf();
    move |source| QuantizeError::Io { path, source }
}

fn sha_file(path: &Path) -> Result<String, QuantizeError> {
    super::export::file_sha256(path).map_err(io(path))
}

/// `<source version>+int8-<12 hex>`.
pub fn int8_version(source_version: &str, tower_sha: &str) -> String {
    format!("{source_version}+int8-{}", &tower_sha[..12.min(tower_sha.len())])
}

/// Writes the int8 variant of `s.model` into `s.out` and checks it against the source.
pub fn quantize(s: &QuantizeSettings) -> Result<QuantizeOutcome, QuantizeError> {
    let base = Manifest::load(&s.model)?;
    if base.version.contains("+int8-") || base.visual.file == Path::new(INT8_TOWER) {
        return Err(QuantizeError::AlreadyQuantized(s.model.clone(), base.version));
    }
    if s.out.join("manifest.toml").exists() {
        return Err(QuantizeError::Exists(s.out.clone()));
    }
    if s.images.is_empty() {
        return Err(QuantizeError::NoImages);
    }
    let images = s
        .images
        .iter()
        .map(|p| image::open(p).map(|i| i.to_rgb8()).map_err(|e| QuantizeError::Image { path: p.clone(), reason: e.to_string() }))
        .collect::<Result<Vec<RgbImage>, _>>()?;
    std::fs::create_dir_all(&s.out).map_err(io(&s.out))?;

    let tower = s.out.join(INT8_TOWER);
    // The script is compiled into the binary (an installed `livesku` needs no source tree).
    let script = s.out.join(".int8.py");
    std::fs::write(&script, SCRIPT).map_err(io(&script))?;
    let status = Command::new(&s.python)
        .arg(&script)
        .arg(base.dir.join(&base.visual.file))
        .arg(&tower)
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|source| QuantizeError::Start { python: s.python.clone(), source });
    let _ = std::fs::remove_file(&script);
    let status = status?;
    if !status.success() {
        return Err(QuantizeError::Failed { status });
    }
    let tower_sha = sha_file(&tower)?;
    let mut copied = Vec::new();
    if let Some(head) = &base.visual.head {
        copied.push(head.file.clone());
    }
    if let Some(text) = &base.text {
        copied.extend([text.file.clone(), text.tokenizer.clone()]);
    }
    if base.dir.join("training.json").is_file() {
        copied.push("training.json".into());
    }
    for file in &copied {
        let to = s.out.join(file);
        std::fs::copy(base.dir.join(file), &to).map_err(io(&to))?;
    }
    let version = if s.keep_version { base.version.clone() } else { int8_version(&base.version, &tower_sha) };
    write_manifest(&base, &s.out, &tower_sha, &version)?;

    let open = |dir: &Path| {
        Encoder::open(&EncoderConfig { model_dir: Some(dir.to_path_buf()), intra_threads: s.threads, ..EncoderConfig::default() })
    };
    let (mut fp32, mut int8) = (open(&base.dir)?, open(&s.out)?);
    let mut cosines = Vec::with_capacity(images.len());
    for chunk in images.chunks(8) {
        let clips: Vec<[&RgbImage; 1]> = chunk.iter().map(|i| [i]).collect();
        let clips: Vec<&[&RgbImage]> = clips.iter().map(|c| c.as_slice()).collect();
        let none = vec![None; chunk.len()];
        let a = fp32.encode(&clips, &none, Side::Page)?;
        let b = int8.encode(&clips, &none, Side::Page)?;
        cosines.extend(a.iter().zip(&b).map(|(a, b)| cosine(a, b)));
    }
    let (worst, min) = cosines.iter().copied().enumerate().fold((0, f32::INFINITY), |w, (i, c)| if c < w.1 { (i, c) } else { w });
    let mean = cosines.iter().sum::<f32>() / cosines.len() as f32;
    let report = json!({
        "source": base.dir.display().to_string(),
        "source_version": base.version,
        "method": "onnxruntime quantize_dynamic: MatMul weights int8, symmetric, per channel; activations at run time",
        "shares_source_version": s.keep_version,
        "check": {"images": cosines.len(), "cosine_min": min, "cosine_mean": mean, "required": s.min_cosine,
                  "worst": s.images[worst].display().to_string()},
    });
    let report_path = s.out.join("quantization.json");
    std::fs::write(&report_path, serde_json::to_string_pretty(&report).unwrap_or_default() + "\n").map_err(io(&report_path))?;
    if min < s.min_cosine {
        return Err(QuantizeError::TooFar { min, worst: s.images[worst].clone(), required: s.min_cosine, out: s.out.clone() });
    }
    Ok(QuantizeOutcome { manifest: Manifest::load(&s.out)?, cosine_min: min, cosine_mean: mean, images: cosines.len() })
}

fn write_manifest(base: &Manifest, out: &Path, tower_sha: &str, version: &str) -> Result<(), QuantizeError> {
    let base_file = base.dir.join("manifest.toml");
    let text = std::fs::read_to_string(&base_file).map_err(io(&base_file))?;
    let bad = |reason: String| QuantizeError::Manifest(crate::encode::manifest::ManifestError::Invalid {
        path: base_file.clone(),
        key: "visual",
        reason,
    });
    let mut m: toml::Table = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
    m.insert("version".into(), version.into());
    m.insert("name".into(), format!("{}-int8", base.name).into());
    let visual = m.get_mut("visual").and_then(|v| v.as_table_mut()).ok_or_else(|| bad("no [visual] table".into()))?;
    visual.insert("file".into(), INT8_TOWER.into());
    visual.insert("sha256".into(), tower_sha.into());
    let body = toml::to_string(&m).map_err(|e| bad(e.to_string()))?;
    let header = format!(
        "# int8 variant made by `livesku quantize` from {} (version {}); quantization.json holds its check\n\
         # against the source. Format: models/README.md.\n",
        base.dir.display(),
        base.version
    );
    let path = out.join("manifest.toml");
    std::fs::write(&path, header + &body).map_err(io(&path))
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(p, q)| p * q).sum::<f32>();
    dot(a, b) / (dot(a, a) * dot(b, b)).sqrt().max(f32::MIN_POSITIVE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_names_the_int8_tower() {
        assert_eq!(int8_version("dinov2s+cope-abc", "0123456789abcdef"), "dinov2s+cope-abc+int8-0123456789ab");
    }

    #[test]
    fn cosine_of_scaled_vectors_is_one() {
        assert!((cosine(&[1.0, 2.0, 0.0], &[2.0, 4.0, 0.0]) - 1.0).abs() < 1e-6);
        assert!(cosine(&[1.0, 0.0], &[0.0, 1.0]).abs() < 1e-6);
    }
}
