//! The trained model directory: the base model's files with the frozen tower and the trained head from the
//! recipe, a manifest whose version derives from the base version and the trained weights' hash (galleries
//! of any other model are refused), checksums, and the training report.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::encode::Manifest;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("cannot write the model directory {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("base manifest {path}: {reason}")]
    Manifest { path: PathBuf, reason: String },
}

/// What the recipe produced, in its work directory.
pub struct Trained<'a> {
    /// Frozen part of the visual tower (input image -> tokens), `tower.onnx`.
    pub tower: &'a Path,
    /// Its output tensor name.
    pub tower_output: &'a str,
    /// Dimension of the tower's tokens.
    pub tower_dim: usize,
    /// Trained head (`tokens` -> `embedding`), `head.onnx`.
    pub head: &'a Path,
    /// Dimension of the head's output (the visual embedding).
    pub dim: usize,
    /// The training report (JSON) to store as `training.json`.
    pub report: &'a serde_json::Value,
}

/// Hex sha256 of a file's bytes (the checksums a manifest records).
pub(crate) fn file_sha256(path: &Path) -> std::io::Result<String> {
    Ok(hex::encode(Sha256::digest(std::fs::read(path)?)))
}

fn sha_file(path: &Path) -> Result<String, ExportError> {
    file_sha256(path).map_err(|source| ExportError::Io { path: path.to_path_buf(), source })
}

fn copy(from: &Path, to: &Path) -> Result<(), ExportError> {
    std::fs::copy(from, to).map(|_| ()).map_err(|source| ExportError::Io { path: to.to_path_buf(), source })
}

/// The trained model's version: `<base version>+cope-<12 hex of sha256(tower, head)>`.
pub fn trained_version(base_version: &str, tower_sha: &str, head_sha: &str) -> String {
    let digest = Sha256::digest(format!("{tower_sha}:{head_sha}").as_bytes());
    let base = base_version.split("+cope-").next().unwrap_or(base_version);
    format!("{base}+cope-{}", &hex::encode(digest)[..12])
}

/// Writes the model directory `out` from `base` and `t`; returns the new manifest.
pub fn write_model_dir(base: &Manifest, out: &Path, t: &Trained) -> Result<Manifest, ExportError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ExportError::Io { path, source }
    };
    std::fs::create_dir_all(out).map_err(io(out))?;
    let base_file = base.dir.join("manifest.toml");
    let text = std::fs::read_to_string(&base_file).map_err(io(&base_file))?;
    let bad = |reason: String| ExportError::Manifest { path: base_file.clone(), reason };
    let mut m: toml::Table = toml::from_str(&text).map_err(|e| bad(e.to_string()))?;

    copy(t.tower, &out.join("visual.onnx"))?;
    copy(t.head, &out.join("head.onnx"))?;
    let (tower_sha, head_sha) = (sha_file(&out.join("visual.onnx"))?, sha_file(&out.join("head.onnx"))?);
    if let Some(text_spec) = &base.text {
        for file in [&text_spec.file, &text_spec.tokenizer] {
            copy(&base.dir.join(file), &out.join(file))?;
        }
    }
    let version = trained_version(&base.version, &tower_sha, &head_sha);
    m.insert("version".into(), version.clone().into());
    m.insert("name".into(), format!("{}-cope", base.name.split("-cope").next().unwrap_or(&base.name)).into());
    let visual = m.get_mut("visual").and_then(|v| v.as_table_mut()).ok_or_else(|| bad("no [visual] table".into()))?;
    visual.insert("file".into(), "visual.onnx".into());
    visual.insert("sha256".into(), tower_sha.into());
    visual.insert("output".into(), t.tower_output.into());
    visual.insert("pooling".into(), "none".into());
    visual.insert("dim".into(), (t.dim as i64).into());
    let mut head = toml::Table::new();
    head.insert("file".into(), "head.onnx".into());
    head.insert("sha256".into(), head_sha.into());
    head.insert("input".into(), "tokens".into());
    head.insert("output".into(), "embedding".into());
    head.insert("input_dim".into(), (t.tower_dim as i64).into());
    visual.insert("head".into(), head.into());
    // The recipe's thresholds for this head's score scale (absent when it had no held-out rows).
    if let Some(c) = t.report.get("calibration").and_then(|c| c.as_object()) {
        let mut track = toml::Table::new();
        for key in ["enter_threshold", "exit_threshold", "min_margin"] {
            let v = c.get(key).and_then(|v| v.as_f64()).ok_or_else(|| bad(format!("calibration without {key}")))?;
            track.insert(key.into(), v.into());
        }
        m.insert("track".into(), track.into());
    } else {
        m.remove("track");
    }

    let body = toml::to_string(&m).map_err(|e| bad(e.to_string()))?;
    let header = format!(
        "# Trained by `livesku train` from {} (version {}); training.json holds the run's settings, data and\n\
         # figures. Format: models/README.md.\n",
        base.dir.display(),
        base.version
    );
    let report = serde_json::to_string_pretty(t.report).unwrap_or_default();
    std::fs::write(out.join("training.json"), report + "\n").map_err(io(&out.join("training.json")))?;
    let manifest_path = out.join("manifest.toml");
    std::fs::write(&manifest_path, header + &body).map_err(io(&manifest_path))?;
    Manifest::load(out).map_err(|e| ExportError::Manifest { path: manifest_path, reason: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_derives_from_base_and_weights_and_does_not_stack() {
        let v = trained_version("dinov2s-clsmean+minilm3-v1", "aa", "bb");
        assert!(v.starts_with("dinov2s-clsmean+minilm3-v1+cope-"), "{v}");
        assert_ne!(v, trained_version("dinov2s-clsmean+minilm3-v1", "aa", "bc"));
        // Training from a trained model names the original base, not a chain of suffixes.
        let again = trained_version(&v, "aa", "cc");
        assert_eq!(again.matches("+cope-").count(), 1, "{again}");
    }
}
