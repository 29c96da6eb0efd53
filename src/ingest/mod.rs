//! Ingest: one GStreamer pipeline per stream (RTMP, HLS, RTSP, SRT, files), decoding key units only,
//! delivering sampled keyframes and 16 kHz mono speech audio on one stream clock, and reconnecting
//! live sources with backoff. See `pipelines/README.md` for the pipelines themselves.

mod backoff;
pub mod pipeline;
mod session;
pub mod source;
mod stats;
mod supervisor;

pub use session::{Outputs, Preview};
pub use source::Source;
pub use stats::{StatsSnapshot, StreamStats, unix_ms};
pub use supervisor::{StreamHandle, spawn};

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{0}")]
    BadSource(String),
    #[error("GStreamer: {0}")]
    Gstreamer(String),
}
