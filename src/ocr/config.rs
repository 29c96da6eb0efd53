//! OCR settings, one place for defaults and their reasons; deserialisable so that it can become an
//! `[ocr]` config section.

use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OcrConfig {
    /// Directory holding `det.onnx` and `rec.onnx` (models/ocr.sh); default: the model cache.
    pub model_dir: Option<PathBuf>,
    /// ONNX Runtime threads per session.
    pub intra_threads: usize,
    /// Detection input: the longer side is scaled down (never up) to this, then both sides are rounded to
    /// multiples of 32 (the DB network downsamples by 32). 960 is PP-OCR's own default for this limit.
    pub det_max_side: u32,
    /// ... and an image whose longer side is below this is scaled up to it: small print on a small
    /// picture (a 200-pixel product thumbnail) is otherwise below the detector's stride.
    pub det_min_side: u32,
    /// Detector normalisation of the input channels in [0,1]: (x - mean) / std. The channels are fed in
    /// PaddleOCR's training order, B, G, R (it reads images with OpenCV), and these are its `NormalizeImage`
    /// defaults applied in that order.
    pub det_mean: [f32; 3],
    pub det_std: [f32; 3],
    /// A probability-map pixel above this is text (DB's binarisation threshold).
    pub det_threshold: f32,
    /// A region is kept when the mean probability over its pixels reaches this.
    pub box_threshold: f32,
    /// The DB map marks a shrunk text kernel; each box grows by `area * unclip_ratio / perimeter` on every
    /// side to cover the glyphs (DB paper, PaddleOCR default 1.5).
    pub unclip_ratio: f32,
    /// Regions whose shorter side (in probability-map pixels, before unclipping) is below this are noise.
    pub min_box_side: u32,
    /// At most this many regions per image, largest first (bounds recognition time).
    pub max_boxes: usize,
    /// Recognition crops are resized to at most this width (aspect kept otherwise); longer lines are
    /// squeezed rather than dropped.
    pub rec_max_width: u32,
    /// A batch is padded to at least this width. PaddleOCR pads to 320 (its training crops are 48 x 320);
    /// measured on the Grocery pages, no padding read better (17 against 15 of 31 packages first) in a
    /// third of the recognition time.
    pub rec_min_width: u32,
    /// Crops per recognition run.
    pub rec_batch: usize,
    /// Lines recognised with a lower confidence (mean probability of the emitted characters) are dropped.
    pub min_confidence: f32,
}

impl Default for OcrConfig {
    fn default() -> Self {
        OcrConfig {
            model_dir: None,
            intra_threads: 2,
            det_max_side: 960,
            det_min_side: 640,
            det_mean: [0.485, 0.456, 0.406],
            det_std: [0.229, 0.224, 0.225],
            det_threshold: 0.3,
            box_threshold: 0.5,
            unclip_ratio: 1.5,
            min_box_side: 3,
            max_boxes: 50,
            rec_max_width: 1280,
            rec_min_width: 0,
            rec_batch: 8,
            min_confidence: 0.5,
        }
    }
}

impl OcrConfig {
    /// `model_dir`, else `$LIVESKU_CACHE/models/ocr`.
    pub fn model_dir(&self) -> PathBuf {
        self.model_dir.clone().unwrap_or_else(|| crate::paths::model_dir("ocr"))
    }

    pub fn validate(&self) -> Result<(), String> {
        let unit = |name: &str, v: f32| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                Err(format!("ocr.{name} must be in [0, 1], got {v}"))
            }
        };
        unit("det_threshold", self.det_threshold)?;
        unit("box_threshold", self.box_threshold)?;
        unit("min_confidence", self.min_confidence)?;
        if self.det_max_side < 32 || self.det_min_side > self.det_max_side {
            return Err(format!(
                "ocr.det_max_side must be at least 32 and at least det_min_side, got {} and {}",
                self.det_max_side, self.det_min_side
            ));
        }
        if self.rec_batch == 0 || self.rec_max_width < 16 {
            return Err("ocr.rec_batch must be > 0 and ocr.rec_max_width at least 16".into());
        }
        if !(self.unclip_ratio >= 0.0) || self.det_std.iter().any(|s| *s <= 0.0) {
            return Err("ocr.unclip_ratio must be >= 0 and ocr.det_std > 0".into());
        }
        Ok(())
    }
}
