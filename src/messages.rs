//! Typed messages passed between pipeline stages.

use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;

/// Identifies one ingested stream; cheap to clone into every message.
pub type StreamId = Arc<str>;

/// A sampled keyframe, already scaled to the encoder's input size (RGB, 8 bits per channel).
#[derive(Debug, Clone)]
pub struct Keyframe {
    pub stream_id: StreamId,
    /// Sequence number of accepted keyframes within the stream, from 0.
    pub seq: u64,
    /// Presentation time on the stream clock (milliseconds since the stream was first started; it keeps
    /// running across reconnects and is shared with [`AudioChunk::pts_ms`]).
    pub pts_ms: u64,
    /// Wall-clock time at which the frame left the decoder.
    pub captured_at: SystemTime,
    pub image: image::RgbImage,
    /// 64-bit perceptual hash (DCT) used by the near-duplicate filter.
    pub phash: u64,
}

/// What the keyframe channel carries: a stream's frames, then one `End` once its pipeline is gone for
/// good (stopped, failed, end of file). It travels behind the stream's last frame, so a consumer can free
/// per-stream state without racing frames still in the channel.
#[derive(Debug, Clone)]
pub enum VideoMsg {
    Keyframe(Keyframe),
    End(StreamId),
}

/// Mono 16 kHz f32 speech audio on the same stream clock as the keyframes.
#[derive(Debug, Clone)]
pub struct AudioChunk {
    pub stream_id: StreamId,
    /// Stream-clock time of the first sample.
    pub pts_ms: u64,
    pub sample_rate: u32,
    pub samples: Vec<f32>,
}

impl AudioChunk {
    pub fn seconds(&self) -> f64 {
        self.samples.len() as f64 / self.sample_rate as f64
    }
}

/// Lifecycle of one stream, as observed by its supervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamState {
    Connecting,
    Running,
    Reconnecting,
    /// Ended normally (end of a file, or stopped on request).
    Stopped,
    /// Gave up: an error that retrying cannot fix, or the retry budget is spent.
    Failed,
}

/// A state change of one stream, with the reason when there is one.
#[derive(Debug, Clone, Serialize)]
pub struct StatusChange {
    pub stream_id: StreamId,
    pub state: StreamState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
