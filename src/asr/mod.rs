//! Speech to text for live streams: Silero VAD cuts each stream's 16 kHz audio into utterances
//! ([`vad`], [`segment`]), Moonshine base-en transcribes them on a pool of worker threads ([`moonshine`],
//! [`worker`]), and the cleaned transcripts ([`clean`]) tag keyframes through a shared per-stream window
//! ([`window`]) so the text tower can fuse them with the image.

pub mod clean;
pub mod config;
pub mod moonshine;
pub mod segment;
pub mod tokenizer;
pub mod vad;
pub mod wer;
pub mod window;
pub mod worker;

use serde::Serialize;

pub use config::{AsrConfig, VadConfig};
pub use window::Transcripts;
pub use worker::{AsrMetrics, AsrStage, AudioInputs};

use crate::encode::runtime::RuntimeError;
use crate::messages::StreamId;

#[derive(Debug, thiserror::Error)]
pub enum AsrError {
    #[error("ASR model: {0}")]
    Model(String),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("ONNX Runtime: {0}")]
    Ort(#[from] ort::Error),
    #[error("ASR input: {0}")]
    Input(String),
    #[error("cannot start an ASR thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// One transcribed utterance, on the stream clock.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transcript {
    pub stream_id: StreamId,
    /// Session of the stream (see [`crate::messages::StreamKey`]).
    pub generation: u64,
    pub start_ms: u64,
    pub end_ms: u64,
    pub text: String,
    /// Geometric-mean token probability, `exp(mean_logprob)`, in (0, 1].
    pub confidence: f32,
    pub mean_logprob: f32,
    /// Decoding hit the token bound (likely a repetition loop or very fast speech).
    pub truncated: bool,
}
