//! Input of the decide stage: one sampled keyframe's gallery matches.

use std::time::SystemTime;

use crate::messages::StreamId;

/// One gallery hit: a product and its similarity score (higher is better).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Match {
    pub product_id: String,
    pub score: f32,
}

impl Match {
    pub fn new(product_id: impl Into<String>, score: f32) -> Self {
        Match { product_id: product_id.into(), score }
    }
}

/// The top-k matches of one sampled keyframe (k >= 2 so a margin over the runner-up exists).
#[derive(Debug, Clone)]
pub struct Observation {
    pub stream_id: StreamId,
    /// Session of the stream (see [`crate::messages::StreamKey`]): tracking state is per session.
    pub generation: u64,
    /// Keyframe sequence number within the stream (see [`crate::messages::Keyframe::seq`]).
    pub seq: u64,
    /// Stream-clock presentation time.
    pub pts_ms: u64,
    /// Wall-clock capture time of the keyframe.
    pub captured_at: SystemTime,
    /// Matches of the whole frame. Best first; the tracker re-sorts and keeps one entry per product, so
    /// unsorted input or several gallery images of one product are harmless.
    pub matches: Vec<Match>,
    /// Matches of salient regions of the frame, each embedded from its own crop (may be empty).
    pub regions: Vec<RegionMatches>,
    /// Speech transcribed around this keyframe (a later ASR issue); carried into events.
    pub asr_text: Option<String>,
}

/// The matches of one region of a keyframe.
#[derive(Debug, Clone)]
pub struct RegionMatches {
    /// Normalised `[x0, y0, x1, y1]` in the keyframe.
    pub bbox: [f32; 4],
    pub matches: Vec<Match>,
}

/// Sorts best first, drops non-finite scores and keeps the best entry per product, so that the
/// runner-up is always a *different* product.
pub(crate) fn normalize(matches: &[Match]) -> Vec<Match> {
    let mut v: Vec<Match> = matches.iter().filter(|m| m.score.is_finite()).cloned().collect();
    v.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.product_id.cmp(&b.product_id)));
    let mut seen = std::collections::HashSet::new();
    v.retain(|m| seen.insert(m.product_id.clone()));
    v
}
