//! `[asr]`: speech recognition settings (see `config/README.md`).

use std::path::PathBuf;

use serde::Deserialize;
use crate::config::ConfigError;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AsrConfig {
    /// Transcribe stream audio and fuse it with the keyframes. Off: audio is dropped, events carry no text.
    pub enabled: bool,
    /// Directory holding `base-en/` (Moonshine) and `silero_vad.onnx`; default: the model cache.
    pub model_dir: Option<PathBuf>,
    /// A keyframe is tagged with the speech heard in the last `window_secs` before it.
    #[serde(alias = "window", deserialize_with = "crate::config::secs::deserialize")]
    pub window_secs: f64,
    /// Moonshine worker threads (each one a decoder session).
    pub workers: usize,
    /// Utterances waiting for a worker; when full, new ones are dropped and counted.
    pub queue: usize,
    /// ONNX Runtime threads per session (1: ASR must not take the cores the image encoder needs).
    pub intra_threads: usize,
    /// Decoding stops after this many tokens per second of audio (guards against repetition loops).
    pub max_tokens_per_sec: f32,
    /// Transcripts whose confidence (geometric-mean token probability) is below this are discarded.
    pub min_confidence: f32,
    pub vad: VadConfig,
}

impl Default for AsrConfig {
    fn default() -> Self {
        AsrConfig {
            enabled: true,
            model_dir: None,
            window_secs: 10.0,
            workers: 1,
            queue: 8,
            intra_threads: 1,
            max_tokens_per_sec: 6.5,
            min_confidence: 0.3,
            vad: VadConfig::default(),
        }
    }
}

/// `[asr.vad]`: how Silero VAD probabilities become utterances (src/asr/segment.rs).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VadConfig {
    /// Speech starts at this probability.
    pub threshold: f32,
    /// ... and ends after `min_silence_ms` below this one.
    pub neg_threshold: f32,
    #[serde(alias = "min_silence", deserialize_with = "crate::config::millis::deserialize_u32")]
    pub min_silence_ms: u32,
    /// Shorter utterances (clicks, coughs) are dropped.
    #[serde(alias = "min_speech", deserialize_with = "crate::config::millis::deserialize_u32")]
    pub min_speech_ms: u32,
    /// Longer speech is cut into pieces of at most this length.
    #[serde(alias = "max_utterance", deserialize_with = "crate::config::millis::deserialize_u32")]
    pub max_utterance_ms: u32,
    /// Audio kept either side of the speech.
    #[serde(alias = "pad", deserialize_with = "crate::config::millis::deserialize_u32")]
    pub pad_ms: u32,
}

impl Default for VadConfig {
    fn default() -> Self {
        VadConfig {
            threshold: 0.5,
            neg_threshold: 0.35,
            min_silence_ms: 500,
            min_speech_ms: 250,
            max_utterance_ms: 15_000,
            pad_ms: 200,
        }
    }
}

impl AsrConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, reason: &str| Err(ConfigError { key: String::from(key), problem: reason.to_string() });
        if !(self.window_secs > 0.0 && self.window_secs <= 600.0) {
            return bad("asr.window_secs", "must be in (0, 600]");
        }
        if !(1..=64).contains(&self.workers) {
            return bad("asr.workers", "must be between 1 and 64");
        }
        if !(1..=10_000).contains(&self.queue) {
            return bad("asr.queue", "must be between 1 and 10000");
        }
        if !(self.max_tokens_per_sec > 0.5 && self.max_tokens_per_sec <= 50.0) {
            return bad("asr.max_tokens_per_sec", "must be in (0.5, 50]");
        }
        if !(0.0..=1.0).contains(&self.min_confidence) {
            return bad("asr.min_confidence", "must be between 0 and 1");
        }
        let v = &self.vad;
        if !(0.0..=1.0).contains(&v.threshold) || !(0.0..=1.0).contains(&v.neg_threshold) {
            return bad("asr.vad.threshold", "thresholds must be between 0 and 1");
        }
        if v.neg_threshold > v.threshold {
            return bad("asr.vad.neg_threshold", "must not exceed asr.vad.threshold");
        }
        if !(1000..=30_000).contains(&v.max_utterance_ms) {
            // Moonshine is trained on utterances up to about 30 s.
            return bad("asr.vad.max_utterance_ms", "must be between 1000 and 30000");
        }
        Ok(())
    }

    pub fn model_dir(&self) -> PathBuf {
        self.model_dir.clone().unwrap_or_else(|| crate::paths::model_dir("asr"))
    }
}
