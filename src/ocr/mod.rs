//! Packaging text (OCR, issue 12): reads the print on a product (PP-OCR text detector + recogniser through
//! ONNX Runtime) and matches it to catalogue titles and descriptions, an evidence source like speech.
//!
//! `OcrEngine::read(image) -> Vec<TextLine>`, then `TextIndex::score(lines) -> ranked products`.

pub mod config;
pub mod detect;
pub mod engine;
pub mod matcher;
pub mod recognize;

pub use config::OcrConfig;
pub use engine::{OcrEngine, Timings};
pub use matcher::{MatchConfig, ProductText, TextIndex, TextMatch};

use std::path::PathBuf;

use crate::encode::runtime::RuntimeError;

/// One line of text read in an image.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TextLine {
    pub text: String,
    /// Mean probability of the line's characters, in [0, 1].
    pub confidence: f32,
    /// Normalised x0, y0, x1, y1 (0..1 of the image's width and height).
    pub bbox: [f32; 4],
}

#[derive(Debug, thiserror::Error)]
pub enum OcrError {
    #[error("OCR model file {path} is missing: run models/ocr.sh (or scripts/setup.sh) to install it")]
    Missing { path: PathBuf },
    #[error("OCR model: {0}")]
    Model(String),
    #[error("OCR config: {0}")]
    Config(String),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("ONNX Runtime: {0}")]
    Ort(#[from] ort::Error),
}
