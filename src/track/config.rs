//! `[track]` config section. Scores are the gallery's similarities (cosine for the default encoder):
//! the thresholds below are starting points to calibrate per encoder and gallery (`livesku eval`).

use std::time::Duration;

use serde::Deserialize;

use crate::config::ConfigError;
use crate::encode::manifest::TrackCalibration;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackConfig {
    /// N: sliding window length in sampled keyframes. Default 5.
    pub window: u32,
    /// K: strong hits within the window needed to turn a product on. Default 3.
    pub min_hits: u32,
    /// Top-1 score needed for a strong hit. Default: the model's calibrated value (its manifest's
    /// `[track]`, written by `livesku train`), else 0.6 (set for the default model's cosines).
    pub enter_threshold: Option<f32>,
    /// Score (anywhere in the top-k) that counts as "still seen" once on; <= enter_threshold. Default: the
    /// model's calibrated value, else 0.5.
    pub exit_threshold: Option<f32>,
    /// Top-1 lead over the best other product needed for a strong hit. Default: the model's calibrated
    /// value, else 0.05.
    pub min_margin: Option<f32>,
    /// Off after this many consecutive keyframes without the product. Default 3.
    pub off_after_keyframes: u32,
    /// Off after this much stream time without the product (and >= 2 missed keyframes). Default 5.0.
    #[serde(alias = "off_after", deserialize_with = "crate::config::secs::deserialize")]
    pub off_after_secs: f64,
    /// At most one `product.updated` per episode per this much stream time. Default 10.0.
    #[serde(alias = "update_interval", deserialize_with = "crate::config::secs::deserialize")]
    pub update_interval_secs: f64,
    /// An update needs the mean score to move at least this much since the episode's last event... Default 0.05.
    pub update_min_score_delta: f32,
    /// ...or the strong-hit count to move at least this much. Default 2. (Both 0: update every interval.)
    pub update_min_hits_delta: u32,
}

impl Default for TrackConfig {
    fn default() -> Self {
        TrackConfig {
            window: 5,
            min_hits: 3,
            enter_threshold: None,
            exit_threshold: None,
            min_margin: None,
            off_after_keyframes: 3,
            off_after_secs: 5.0,
            update_interval_secs: 10.0,
            update_min_score_delta: 0.05,
            update_min_hits_delta: 2,
        }
    }
}

/// Thresholds for a model without a calibration: set on the default model's cosines.
const DEFAULT_ENTER: f32 = 0.6;
const DEFAULT_EXIT: f32 = 0.5;
const DEFAULT_MARGIN: f32 = 0.05;

fn invalid(key: &str, problem: &str) -> ConfigError {
    ConfigError { key: format!("track.{key}"), problem: problem.to_string() }
}

impl TrackConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=1000).contains(&self.window) {
            return Err(invalid("window", "must be between 1 and 1000 keyframes"));
        }
        if self.min_hits == 0 || self.min_hits > self.window {
            return Err(invalid("min_hits", "must be between 1 and track.window"));
        }
        if !self.enter().is_finite() {
            return Err(invalid("enter_threshold", "must be a finite number"));
        }
        if !self.exit().is_finite() || self.exit() > self.enter() {
            return Err(invalid("exit_threshold", "must be a finite number <= track.enter_threshold"));
        }
        if !self.margin().is_finite() || self.margin() < 0.0 {
            return Err(invalid("min_margin", "must be >= 0"));
        }
        if self.off_after_keyframes == 0 {
            return Err(invalid("off_after_keyframes", "must be at least 1"));
        }
        if !self.off_after_secs.is_finite() || self.off_after_secs <= 0.0 {
            return Err(invalid("off_after_secs", "must be a positive number of seconds"));
        }
        if !self.update_interval_secs.is_finite() || self.update_interval_secs < 0.0 {
            return Err(invalid("update_interval_secs", "must be >= 0 seconds"));
        }
        if !self.update_min_score_delta.is_finite() || self.update_min_score_delta < 0.0 {
            return Err(invalid("update_min_score_delta", "must be >= 0"));
        }
        Ok(())
    }

    /// The thresholds not set in the config taken from the model's calibration (checked as a whole:
    /// a config that sets only `exit_threshold` above the model's enter threshold is refused).
    pub fn calibrated(mut self, model: Option<&TrackCalibration>) -> Result<Self, ConfigError> {
        if let Some(m) = model {
            self.enter_threshold = self.enter_threshold.or(Some(m.enter_threshold));
            self.exit_threshold = self.exit_threshold.or(Some(m.exit_threshold));
            self.min_margin = self.min_margin.or(Some(m.min_margin));
        }
        self.validate()?;
        Ok(self)
    }

    pub(crate) fn enter(&self) -> f32 {
        self.enter_threshold.unwrap_or(DEFAULT_ENTER)
    }

    pub(crate) fn exit(&self) -> f32 {
        self.exit_threshold.unwrap_or(DEFAULT_EXIT)
    }

    pub(crate) fn margin(&self) -> f32 {
        self.min_margin.unwrap_or(DEFAULT_MARGIN)
    }

    pub(crate) fn off_after(&self) -> Duration {
        Duration::from_secs_f64(self.off_after_secs)
    }

    pub(crate) fn update_interval(&self) -> Duration {
        Duration::from_secs_f64(self.update_interval_secs)
    }
}
