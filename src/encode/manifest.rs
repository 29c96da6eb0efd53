//! The model manifest (`manifest.toml`): everything needed to turn pixels and text into the embedding a
//! gallery was built with. Format documented in `models/README.md`.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error(
        "cannot read model manifest {path}: {source} (run scripts/setup.sh to assemble the default model)"
    )]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid model manifest {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("invalid model manifest {path}: {key}: {reason}")]
    Invalid {
        path: PathBuf,
        key: &'static str,
        reason: String,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    pub name: String,
    pub version: String,
    pub visual: VisualSpec,
    pub text: Option<TextSpec>,
    pub fusion: FusionWeights,
    /// Tracker thresholds calibrated for this model's score scale (written by `livesku train`); a
    /// service config's `[track]` values win over them, the tracker's defaults apply without them.
    #[serde(default)]
    pub track: Option<TrackCalibration>,
    /// Directory holding the manifest; model file paths are relative to it.
    #[serde(skip)]
    pub dir: PathBuf,
    /// sha256 of the manifest bytes (which include the weights' checksums): identifies the exact model.
    #[serde(skip)]
    pub sha256: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// [B, 3, H, W]
    Nchw,
    /// [B, T, 3, H, W] (clip encoders)
    Ntchw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResizePolicy {
    /// Scale so the shorter side fits, centre-crop the rest.
    Crop,
    /// Scale so the whole image fits, pad with `pad_rgb`.
    Letterbox,
    /// Scale each axis independently (distorts aspect ratio).
    Stretch,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VisualPooling {
    /// Output is already [B, D].
    None,
    /// Token 0 of [B, 1+P, D].
    Cls,
    /// Mean of tokens 1.. of [B, 1+P, D].
    MeanPatch,
    /// Sum of the L2-normalised CLS and patch-mean vectors.
    ClsMean,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextPooling {
    /// Output is already [B, D].
    None,
    /// Attention-masked mean of [B, S, D].
    Mean,
    /// Token 0 of [B, S, D].
    Cls,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VisualSpec {
    pub file: PathBuf,
    pub sha256: String,
    pub input: String,
    pub layout: Layout,
    pub frames: usize,
    /// [height, width]
    pub size: [u32; 2],
    pub resize: ResizePolicy,
    #[serde(default = "default_pad")]
    pub pad_rgb: [u8; 3],
    pub mean: [f32; 3],
    pub std: [f32; 3],
    pub output: String,
    pub pooling: VisualPooling,
    /// Dimension of the visual part of the embedding: the tower's output, or the head's when there is one.
    pub dim: usize,
    /// A trained head (made by `livesku train`) run on the tower's full output.
    pub head: Option<HeadSpec>,
}

/// A second graph fed the tower's whole output (`[B,1+P,D]` tokens); its `[B,dim]` output is the visual
/// embedding. Keeping it apart from the tower lets a trained model reuse the frozen tower file as is.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadSpec {
    pub file: PathBuf,
    pub sha256: String,
    pub input: String,
    pub output: String,
    /// Dimension of the tower's tokens (the head's input).
    pub input_dim: usize,
}

fn default_pad() -> [u8; 3] {
    [0, 0, 0]
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextSpec {
    pub file: PathBuf,
    pub sha256: String,
    pub tokenizer: PathBuf,
    pub tokenizer_sha256: String,
    pub input_ids: String,
    pub attention_mask: String,
    /// Optional third input (BERT-style exports); zeros are fed.
    pub token_type_ids: Option<String>,
    pub max_length: usize,
    pub output: String,
    pub pooling: TextPooling,
    pub dim: usize,
}

/// `[track]` of a manifest: see `crate::track::TrackConfig` for what each threshold does.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackCalibration {
    pub enter_threshold: f32,
    pub exit_threshold: f32,
    pub min_margin: f32,
}

/// Weights of the visual and text cosines in a query-gallery score.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FusionWeights {
    pub visual_weight: f32,
    pub text_weight: f32,
}

impl Manifest {
    /// Reads `DIR/manifest.toml` (or the file itself when given a file).
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let file = if path.is_dir() {
            path.join("manifest.toml")
        } else {
            path.to_path_buf()
        };
        let bytes = std::fs::read(&file).map_err(|source| ManifestError::Read {
            path: file.clone(),
            source,
        })?;
        let text = String::from_utf8_lossy(&bytes);
        let mut manifest: Manifest =
            toml::from_str(&text).map_err(|source| ManifestError::Parse {
                path: file.clone(),
                source,
            })?;
        manifest.dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
        manifest.sha256 = hex::encode(Sha256::digest(&bytes));
        manifest.validate(&file)?;
        Ok(manifest)
    }

    fn validate(&self, path: &Path) -> Result<(), ManifestError> {
        let bad = |key: &'static str, reason: &str| {
            Err(ManifestError::Invalid {
                path: path.to_path_buf(),
                key,
                reason: reason.to_string(),
            })
        };
        let v = &self.visual;
        if self.format != 1 {
            return bad("format", "only format 1 is known");
        }
        if self.version.trim().is_empty() {
            return bad("version", "must not be empty");
        }
        if v.frames == 0 {
            return bad("visual.frames", "must be at least 1");
        }
        if v.layout == Layout::Nchw && v.frames != 1 {
            return bad(
                "visual.frames",
                "layout \"nchw\" takes exactly 1 frame; use \"ntchw\" for clips",
            );
        }
        if v.size[0] == 0 || v.size[1] == 0 {
            return bad("visual.size", "height and width must be positive");
        }
        if v.std.iter().any(|s| *s <= 0.0) {
            return bad("visual.std", "must be positive");
        }
        if v.dim == 0 {
            return bad("visual.dim", "must be positive");
        }
        if let Some(h) = &v.head {
            if v.pooling != VisualPooling::None {
                return bad("visual.pooling", "must be \"none\" with a [visual.head]: the head pools the tokens");
            }
            if h.input_dim == 0 {
                return bad("visual.head.input_dim", "must be positive");
            }
        }
        if let Some(t) = &self.text {
            if t.max_length < 2 {
                return bad("text.max_length", "must be at least 2");
            }
            if t.dim == 0 {
                return bad("text.dim", "must be positive");
            }
        }
        let f = self.fusion;
        if !(f.visual_weight >= 0.0
            && f.text_weight >= 0.0
            && f.visual_weight + f.text_weight > 0.0)
        {
            return bad("fusion", "weights must be non-negative and not both zero");
        }
        if let Some(t) = self.track
            && !(t.enter_threshold.is_finite()
                && t.exit_threshold.is_finite()
                && t.exit_threshold <= t.enter_threshold
                && t.min_margin >= 0.0)
        {
            return bad("track", "thresholds must be finite, exit_threshold <= enter_threshold, min_margin >= 0");
        }
        Ok(())
    }

    pub fn visual_path(&self) -> PathBuf {
        self.dir.join(&self.visual.file)
    }

    pub fn head_path(&self) -> Option<PathBuf> {
        self.visual.head.as_ref().map(|h| self.dir.join(&h.file))
    }

    /// Dimension of the fused embedding: visual part then text part.
    pub fn embedding_dim(&self) -> usize {
        self.visual.dim + self.text.as_ref().map_or(0, |t| t.dim)
    }
}
