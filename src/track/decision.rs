//! Output of the decide stage; `crate::event` turns these into published JSON events.

use std::time::SystemTime;

use super::observation::Match;
use crate::messages::StreamId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionKind {
    Appeared,
    Updated,
    Disappeared,
}

impl DecisionKind {
    /// The event `type` string.
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionKind::Appeared => "product.appeared",
            DecisionKind::Updated => "product.updated",
            DecisionKind::Disappeared => "product.disappeared",
        }
    }
}

/// A keyframe at which a product was seen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeenAt {
    pub seq: u64,
    pub pts_ms: u64,
    pub captured_at: SystemTime,
}

/// One window keyframe supporting the product (its score >= the exit threshold).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvidenceFrame {
    pub seq: u64,
    pub pts_ms: u64,
    pub score: f32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Evidence {
    /// Window size N (`track.window`).
    pub window: u32,
    /// Strong hits (entry criteria met) in the current window, K of N.
    pub hits: u32,
    /// Supporting keyframes of this episode still in the window, oldest first.
    pub frames: Vec<EvidenceFrame>,
}

/// A state change of one product on one stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub kind: DecisionKind,
    pub stream_id: StreamId,
    /// Session of the stream (see [`crate::messages::StreamKey`]).
    pub generation: u64,
    pub product_id: String,
    /// Stream PTS of the episode's first strong hit: with stream and product, it identifies the episode.
    pub episode_start_pts_ms: u64,
    /// 0 for `appeared` and `disappeared`, 1, 2, ... for successive `updated` events of the episode.
    pub update_seq: u32,
    /// Mean score over the supporting keyframes in the window (the last one's when none is left).
    pub score: f32,
    /// Best other product in the latest supporting keyframe.
    pub runner_up: Option<Match>,
    pub first_seen: SeenAt,
    pub last_seen: SeenAt,
    pub evidence: Evidence,
    /// Latest transcribed speech on the stream, if any.
    pub asr_text: Option<String>,
    /// Where the product was at `last_seen`: normalised `[x0, y0, x1, y1]` of the view (whole frame or
    /// salient region) it scored best in.
    pub region: [f32; 4],
}
