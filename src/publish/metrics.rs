//! Publishing counters, shared between the caller, the sink thread and librdkafka's callbacks.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Debug, Default)]
pub struct PublishMetrics {
    /// Taken into the channel by `publish()`.
    pub accepted: AtomicU64,
    /// Acknowledged by the broker (Kafka) or written (stdout/file).
    pub delivered: AtomicU64,
    /// Given up on: message timeout, permanent broker error, write error.
    pub failed: AtomicU64,
    /// Dropped by the bound policy (channel full, or sink queue still full after the enqueue timeout).
    pub dropped: AtomicU64,
    /// Accepted but neither delivered, failed nor dropped yet (gauge).
    pub buffered: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct MetricsSnapshot {
    pub accepted: u64,
    pub delivered: u64,
    pub failed: u64,
    pub dropped: u64,
    pub buffered: u64,
}

impl PublishMetrics {
    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            accepted: self.accepted.load(Relaxed),
            delivered: self.delivered.load(Relaxed),
            failed: self.failed.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            buffered: self.buffered.load(Relaxed),
        }
    }

    pub(crate) fn accept(&self) {
        self.accepted.fetch_add(1, Relaxed);
        self.buffered.fetch_add(1, Relaxed);
    }

    pub(crate) fn drop_unaccepted(&self) {
        self.dropped.fetch_add(1, Relaxed);
    }

    /// An accepted event leaves the buffer as delivered, failed or dropped.
    pub(crate) fn settle(&self, outcome: &AtomicU64) {
        outcome.fetch_add(1, Relaxed);
        // Saturating: never wraps even if a sink double-reports.
        let _ = self.buffered.fetch_update(Relaxed, Relaxed, |b| Some(b.saturating_sub(1)));
    }
}
