//! Per-stream counters and state, readable at any time (API, metrics, the `ingest` summary).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::messages::StreamState;

#[derive(Debug)]
pub struct StreamStats {
    /// Keyframes delivered downstream.
    pub keyframes: AtomicU64,
    /// Keyframes skipped by the near-duplicate filter.
    pub duplicates_skipped: AtomicU64,
    /// Keyframes dropped because the channel to the encoder was full.
    pub dropped: AtomicU64,
    pub reconnects: AtomicU64,
    pub audio_ms: AtomicU64,
    /// Audio chunks dropped because the channel to ASR was full.
    pub audio_dropped: AtomicU64,
    pub last_keyframe_unix_ms: AtomicU64,
    state: Mutex<(StreamState, Option<String>)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StatsSnapshot {
    pub state: StreamState,
    /// Always present (null when none), so clients need not guess.
    pub last_error: Option<String>,
    pub keyframes: u64,
    pub duplicates_skipped: u64,
    pub dropped: u64,
    pub reconnects: u64,
    pub audio_seconds: f64,
    pub audio_dropped: u64,
    pub last_keyframe_unix_ms: Option<u64>,
}

impl Default for StreamStats {
    fn default() -> Self {
        Self {
            keyframes: AtomicU64::new(0),
            duplicates_skipped: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            audio_ms: AtomicU64::new(0),
            audio_dropped: AtomicU64::new(0),
            last_keyframe_unix_ms: AtomicU64::new(0),
            state: Mutex::new((StreamState::Connecting, None)),
        }
    }
}

impl StreamStats {
    pub fn state(&self) -> StreamState {
        self.state
            .lock()
            .map(|s| s.0)
            .unwrap_or(StreamState::Failed)
    }

    /// Records a state; the error of a failing state is kept as `last_error`.
    pub(super) fn set_state(&self, state: StreamState, reason: Option<&str>) {
        if let Ok(mut s) = self.state.lock() {
            s.0 = state;
            if matches!(state, StreamState::Reconnecting | StreamState::Failed) && reason.is_some()
            {
                s.1 = reason.map(str::to_string);
            }
        }
    }

    pub(super) fn keyframe_delivered(&self) {
        self.keyframes.fetch_add(1, Relaxed);
        self.last_keyframe_unix_ms
            .store(unix_ms(SystemTime::now()), Relaxed);
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let (state, last_error) = self
            .state
            .lock()
            .map(|s| s.clone())
            .unwrap_or((StreamState::Failed, None));
        let last = self.last_keyframe_unix_ms.load(Relaxed);
        StatsSnapshot {
            state,
            last_error,
            keyframes: self.keyframes.load(Relaxed),
            duplicates_skipped: self.duplicates_skipped.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            reconnects: self.reconnects.load(Relaxed),
            audio_seconds: self.audio_ms.load(Relaxed) as f64 / 1000.0,
            audio_dropped: self.audio_dropped.load(Relaxed),
            last_keyframe_unix_ms: (last > 0).then_some(last),
        }
    }
}

pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// When any buffer (compressed or decoded) last arrived; drives stall detection.
#[derive(Debug)]
pub struct Heartbeat {
    start: Instant,
    /// Milliseconds since `start` of the last beat, plus one (0 = never).
    last: AtomicU64,
}

impl Heartbeat {
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    pub fn beat(&self) {
        self.last
            .store(self.start.elapsed().as_millis() as u64 + 1, Relaxed);
    }

    pub fn seen(&self) -> bool {
        self.last.load(Relaxed) > 0
    }

    /// Time since the last beat, or since creation if there was none.
    pub fn idle(&self) -> std::time::Duration {
        let last = self.last.load(Relaxed).saturating_sub(1);
        self.start
            .elapsed()
            .saturating_sub(std::time::Duration::from_millis(last))
    }
}

impl Default for Heartbeat {
    fn default() -> Self {
        Self::new()
    }
}
