//! Typed messages passed between pipeline stages.

use std::sync::Arc;
use std::time::SystemTime;

use serde::Serialize;

/// Identifies one ingested stream; cheap to clone into every message.
pub type StreamId = Arc<str>;

/// One session of a stream: its id and a generation the service counts up each time that id is added.
/// Everything downstream of ingest (encoder queues, tracker state, episodes) is keyed by it, so a stream
/// removed and added again under the same id can never close, or be fed by, the other session.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamKey {
    pub id: StreamId,
    pub generation: u64,
}

impl StreamKey {
    pub fn new(id: impl Into<StreamId>, generation: u64) -> Self {
        StreamKey { id: id.into(), generation }
    }
}

/// A first session (generation 0), as tests and one-off commands use.
impl From<&str> for StreamKey {
    fn from(id: &str) -> Self {
        StreamKey::new(id, 0)
    }
}

impl From<String> for StreamKey {
    fn from(id: String) -> Self {
        StreamKey::new(id, 0)
    }
}

impl std::fmt::Display for StreamKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}#{}", self.id, self.generation)
    }
}

/// What every stage after ingest sends on: a stream's items, then exactly one `End` behind its last one.
/// Sent with a blocking send on a channel the next stage always drains, so it cannot be lost; a consumer
/// frees the stream's state on it without racing items still in flight.
#[derive(Debug, Clone)]
pub enum Flow<T> {
    Item(T),
    End(StreamKey),
}

/// A sampled keyframe, already scaled to the encoder's input size (RGB, 8 bits per channel).
#[derive(Debug, Clone)]
pub struct Keyframe {
    pub stream_id: StreamId,
    /// Session of the stream (see [`StreamKey`]).
    pub generation: u64,
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

impl Keyframe {
    pub fn key(&self) -> StreamKey {
        StreamKey { id: self.stream_id.clone(), generation: self.generation }
    }
}

/// Mono 16 kHz f32 speech audio on the same stream clock as the keyframes.
#[derive(Debug, Clone)]
pub struct AudioChunk {
    pub stream_id: StreamId,
    /// Session of the stream (see [`StreamKey`]).
    pub generation: u64,
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
