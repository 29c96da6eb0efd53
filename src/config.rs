//! Typed configuration, validated at start-up with errors that name the offending key.
//! The file format (TOML) is documented in `config/README.md`.

use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
#[error("config key `{key}`: {problem}")]
pub struct ConfigError {
    pub key: String,
    pub problem: String,
}

fn invalid(key: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.to_string(),
        problem: problem.into(),
    }
}

/// Serde form of a duration setting: a humantime string (`"10s"`, `"1m 30s"`, `"250ms"`) or a number of
/// seconds. Negative, infinite and NaN values are refused with the rule.
pub mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, de::Error};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Secs(f64),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        match Raw::deserialize(d)? {
            Raw::Text(t) => humantime::parse_duration(t.trim())
                .map_err(|e| D::Error::custom(format!("'{t}' is not a duration ({e}); write e.g. \"10s\" or \"250ms\""))),
            Raw::Secs(s) => Duration::try_from_secs_f64(s)
                .map_err(|_| D::Error::custom(format!("{s} is not a duration: seconds must be finite and >= 0"))),
        }
    }
}

/// `_secs` settings (f64 seconds): a number of seconds under the `_secs` key, or a humantime string
/// (`"10s"`, `"1m 30s"`) under the key without the suffix (or under either).
pub mod secs {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        // Numbers are range-checked by the section's `validate`, whose error names the key.
        match super::RawDuration::deserialize(d)? {
            super::RawDuration::Number(n) => Ok(n),
            super::RawDuration::Text(t) => super::humantime_text::<D::Error>(&t).map(|d| d.as_secs_f64()),
        }
    }
}

/// `_ms` settings (integer milliseconds): a number of milliseconds, or a humantime string (`"250ms"`,
/// `"2s"`) under the key without the suffix (or under either).
pub mod millis {
    use serde::{Deserialize, Deserializer, de::Error};

    fn ms<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        let v = match super::RawDuration::deserialize(d)? {
            super::RawDuration::Number(n) => n,
            super::RawDuration::Text(t) => super::humantime_text::<D::Error>(&t)?.as_secs_f64() * 1000.0,
        };
        if v.is_finite() && v >= 0.0 { Ok(v.round()) } else { Err(D::Error::custom(format!("{v} is not a duration: must be finite and >= 0"))) }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        ms(d).map(|v| v as u64)
    }

    pub fn deserialize_u32<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        ms(d).and_then(|v| u32::try_from(v as u64).map_err(|_| D::Error::custom("duration too long")))
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawDuration {
    Number(f64),
    Text(String),
}

fn humantime_text<E: serde::de::Error>(t: &str) -> Result<Duration, E> {
    humantime::parse_duration(t.trim())
        .map_err(|e| E::custom(format!("'{t}' is not a duration ({e}); write e.g. \"10s\" or \"250ms\"")))
}

/// How sampled keyframes are fitted to the encoder's square-ish input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum AspectPolicy {
    /// Scale the whole picture to fit and pad with black bars (nothing is cut off).
    Letterbox,
    /// Scale to cover and cut the overflow from the centre (no bars, edges lost).
    Crop,
}

/// Which frames reach the decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum DecodeMode {
    /// Only key units are decoded (delta units are dropped before the decoder): the cheap default.
    Keyframes,
    /// Every frame is decoded and scaled, then rate-limited. Only useful as a benchmark baseline.
    All,
}

/// `[ingest]`: how every stream is sampled and kept alive.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Output size of sampled keyframes (the encoder's input size).
    pub width: u32,
    pub height: u32,
    pub aspect: AspectPolicy,
    pub decode: DecodeMode,
    /// Upper bound on sampled keyframes per second per stream (0 = one per key unit).
    pub max_rate_hz: f64,
    /// A keyframe within this many pHash bits of the last kept one is skipped (0 = keep all).
    pub dedup_max_distance: u32,
    /// A static shot is still re-sampled this often.
    #[serde(alias = "dedup_refresh", deserialize_with = "crate::config::secs::deserialize")]
    pub dedup_refresh_secs: f64,
    /// Audio is delivered in chunks of at least this length.
    #[serde(alias = "audio_chunk", deserialize_with = "crate::config::millis::deserialize_u32")]
    pub audio_chunk_ms: u32,
    /// No buffer at all for this long means the source is stalled (or, for RTMP, a wrong stream key).
    #[serde(alias = "stall_timeout", deserialize_with = "crate::config::secs::deserialize")]
    pub stall_timeout_secs: f64,
    #[serde(alias = "backoff_initial", deserialize_with = "crate::config::secs::deserialize")]
    pub backoff_initial_secs: f64,
    /// The reconnect delay's cap. A returning publisher waits out whatever is left of the current delay
    /// (a connected attempt sees it at once), so the cap bounds how long after its return a stream resumes.
    #[serde(alias = "backoff_max", deserialize_with = "crate::config::secs::deserialize")]
    pub backoff_max_secs: f64,
    /// Give up after this many consecutive failed attempts (absent = retry forever).
    pub max_reconnects: Option<u32>,
    /// Fail at once if the very first connection fails or never delivers data, instead of retrying.
    /// Useful for one-off commands; a service usually waits for publishers that start late.
    pub fail_fast: bool,
    /// Capacity of the keyframe and audio channels leaving ingest (shared by all streams).
    pub channel_capacity: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            width: 224,
            height: 224,
            aspect: AspectPolicy::Crop,
            decode: DecodeMode::Keyframes,
            max_rate_hz: 2.0,
            dedup_max_distance: 4,
            dedup_refresh_secs: 10.0,
            audio_chunk_ms: 500,
            stall_timeout_secs: 10.0,
            backoff_initial_secs: 0.5,
            backoff_max_secs: 4.0,
            max_reconnects: None,
            fail_fast: false,
            channel_capacity: 64,
        }
    }
}

impl IngestConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(16..=4096).contains(&self.width) {
            return Err(invalid(
                "ingest.width",
                "must be between 16 and 4096 pixels",
            ));
        }
        if !(16..=4096).contains(&self.height) {
            return Err(invalid(
                "ingest.height",
                "must be between 16 and 4096 pixels",
            ));
        }
        if !self.max_rate_hz.is_finite() || self.max_rate_hz < 0.0 {
            return Err(invalid(
                "ingest.max_rate_hz",
                "must be >= 0 (0 = every keyframe)",
            ));
        }
        if self.dedup_max_distance > 32 {
            return Err(invalid(
                "ingest.dedup_max_distance",
                "must be <= 32 of 64 bits",
            ));
        }
        positive("ingest.dedup_refresh_secs", self.dedup_refresh_secs)?;
        if !(10..=10_000).contains(&self.audio_chunk_ms) {
            return Err(invalid(
                "ingest.audio_chunk_ms",
                "must be between 10 and 10000",
            ));
        }
        positive("ingest.stall_timeout_secs", self.stall_timeout_secs)?;
        positive("ingest.backoff_initial_secs", self.backoff_initial_secs)?;
        positive("ingest.backoff_max_secs", self.backoff_max_secs)?;
        if self.backoff_max_secs < self.backoff_initial_secs {
            return Err(invalid(
                "ingest.backoff_max_secs",
                "must be >= ingest.backoff_initial_secs",
            ));
        }
        if self.channel_capacity == 0 {
            return Err(invalid("ingest.channel_capacity", "must be at least 1"));
        }
        Ok(())
    }

    pub fn stall_timeout(&self) -> Duration {
        Duration::from_secs_f64(self.stall_timeout_secs)
    }
}

fn positive(key: &str, v: f64) -> Result<(), ConfigError> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(invalid(key, "must be a positive number of seconds"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        IngestConfig::default().validate().unwrap();
    }

    #[test]
    fn errors_name_the_key() {
        let cfg: IngestConfig = toml::from_str("stall_timeout_secs = -1").unwrap();
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("ingest.stall_timeout_secs"), "{err}");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = toml::from_str::<IngestConfig>("widht = 3")
            .unwrap_err()
            .to_string();
        assert!(err.contains("widht"), "{err}");
    }
}

#[cfg(test)]
mod durations {
    use crate::service::ServiceConfig;

    #[test]
    fn old_suffixed_keys_and_humantime_keys_both_work() {
        let old: ServiceConfig = toml::from_str(
            "[ingest]\nstall_timeout_secs = 7\n[encoder]\nlive_max_age_ms = 1500\n[track]\noff_after_secs = 2.5",
        )
        .unwrap();
        let new: ServiceConfig = toml::from_str(
            "[ingest]\nstall_timeout = \"7s\"\n[encoder]\nlive_max_age = \"1.5s\"\n[track]\noff_after = \"2500ms\"",
        )
        .unwrap();
        for cfg in [&old, &new] {
            assert_eq!(cfg.ingest.stall_timeout_secs, 7.0);
            assert_eq!(cfg.encoder.live_max_age_ms, 1500);
            assert_eq!(cfg.track.off_after_secs, 2.5);
        }
        for bad in ["[ingest]\nstall_timeout = \"soon\"", "[encoder]\nmax_wait = \"x\"", "[encoder]\nmax_wait_ms = -5"] {
            let e = toml::from_str::<ServiceConfig>(bad).unwrap_err().to_string();
            assert!(e.contains("not a duration"), "{bad}: {e}");
        }
    }
}

#[cfg(test)]
mod example_file {
    /// The documented example must stay parseable and valid.
    #[test]
    fn example_config_parses() {
        let cfg: crate::service::ServiceConfig =
            toml::from_str(include_str!("../config/livesku.example.toml")).unwrap();
        cfg.validate().unwrap();
    }
}
