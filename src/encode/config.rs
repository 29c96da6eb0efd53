//! `[encoder]` configuration section (wired into the service config by `crate::config`).

use std::path::PathBuf;
use std::str::FromStr;

use serde::Deserialize;
use crate::config::ConfigError;

/// Where inference runs. Written as `cpu`, `cuda:N` or `tensorrt:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Provider {
    #[default]
    Cpu,
    Cuda(i32),
    TensorRt(i32),
}

impl FromStr for Provider {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let device =
            |d: &str| d.parse::<i32>().ok().filter(|d| *d >= 0).ok_or(format!("bad device index in {s:?}"));
        match s.split_once(':') {
            None if s == "cpu" => Ok(Provider::Cpu),
            None if s == "cuda" => Ok(Provider::Cuda(0)),
            None if s == "tensorrt" => Ok(Provider::TensorRt(0)),
            Some(("cuda", d)) => Ok(Provider::Cuda(device(d)?)),
            Some(("tensorrt", d)) => Ok(Provider::TensorRt(device(d)?)),
            _ => Err(format!("unknown execution provider {s:?} (expected cpu, cuda:N or tensorrt:N)")),
        }
    }
}

impl<'de> Deserialize<'de> for Provider {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Provider::Cpu => write!(f, "cpu"),
            Provider::Cuda(d) => write!(f, "cuda:{d}"),
            Provider::TensorRt(d) => write!(f, "tensorrt:{d}"),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EncoderConfig {
    /// Model directory holding `manifest.toml`; default `$LIVESKU_CACHE/models/default`.
    pub model_dir: Option<PathBuf>,
    pub provider: Provider,
    /// ONNX Runtime intra-op threads; 0 lets ONNX Runtime choose (one per core).
    pub intra_threads: usize,
    /// Largest batch handed to the visual tower.
    pub max_batch: usize,
    /// How long the first frame of a batch may wait for company.
    #[serde(alias = "max_wait", deserialize_with = "crate::config::millis::deserialize")]
    pub max_wait_ms: u64,
    /// Frames queued per stream before `submit` blocks (back-pressure towards ingest).
    pub queue_per_stream: usize,
    /// Live streams only: a keyframe that has waited this long for the encoder is dropped (counted)
    /// instead of encoded, bounding detection latency when the encoder is overloaded. 0 = never.
    #[serde(alias = "live_max_age", deserialize_with = "crate::config::millis::deserialize")]
    pub live_max_age_ms: u64,
    /// Tokenised texts kept for reuse (titles and transcripts repeat).
    pub text_cache: usize,
    /// Overrides of the manifest's fusion weights.
    pub visual_weight: Option<f32>,
    pub text_weight: Option<f32>,
    /// Salient regions of a keyframe embedded from a crop ([`super::localise`]).
    pub localise: super::localise::LocaliseConfig,
    /// Run the visual tower once at start-up on the largest batch it can be given
    /// ([`super::Encoder::warm_up`]): memory reaches its peak before the first stream, and the first live
    /// batches do not pay for the allocation.
    pub warmup: bool,
}

impl Default for EncoderConfig {
    fn default() -> Self {
        EncoderConfig {
            model_dir: None,
            provider: Provider::Cpu,
            intra_threads: 0,
            max_batch: 16,
            max_wait_ms: 50,
            queue_per_stream: 8,
            live_max_age_ms: 2000,
            text_cache: 4096,
            visual_weight: None,
            text_weight: None,
            localise: Default::default(),
            warmup: false,
        }
    }
}

impl EncoderConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, reason: &str| Err(ConfigError { key: String::from(key), problem: reason.to_string() });
        if self.max_batch == 0 || self.max_batch > 1024 {
            return bad("encoder.max_batch", "must be between 1 and 1024");
        }
        if self.max_wait_ms > 10_000 {
            return bad("encoder.max_wait_ms", "must be at most 10000");
        }
        if self.queue_per_stream == 0 {
            return bad("encoder.queue_per_stream", "must be at least 1");
        }
        if self.live_max_age_ms > 600_000 {
            return bad("encoder.live_max_age_ms", "must be at most 600000 (0 turns it off)");
        }
        self.localise.validate()?;
        for (key, w) in
            [("encoder.visual_weight", self.visual_weight), ("encoder.text_weight", self.text_weight)]
        {
            if w.is_some_and(|w| !(w >= 0.0 && w.is_finite())) {
                return bad(key, "must be a finite non-negative number");
            }
        }
        Ok(())
    }

    pub fn model_dir(&self) -> PathBuf {
        self.model_dir.clone().unwrap_or_else(|| crate::paths::model_dir("default"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn providers_parse_and_bad_values_name_the_key() {
        assert_eq!("cpu".parse(), Ok(Provider::Cpu));
        assert_eq!("cuda:1".parse(), Ok(Provider::Cuda(1)));
        assert_eq!("tensorrt:0".parse(), Ok(Provider::TensorRt(0)));
        assert!("cuda:x".parse::<Provider>().is_err());
        assert!("rocm:0".parse::<Provider>().is_err());
        let cfg: EncoderConfig = toml::from_str("provider = \"cuda:2\"\nmax_batch = 32").unwrap();
        assert_eq!((cfg.provider, cfg.max_batch, cfg.max_wait_ms), (Provider::Cuda(2), 32, 50));
        assert!(toml::from_str::<EncoderConfig>("max_bach = 3").is_err(), "unknown keys are rejected");
        let err = EncoderConfig { max_batch: 0, ..Default::default() }.validate().unwrap_err();
        assert!(err.to_string().contains("encoder.max_batch"), "{err}");
    }
}
