//! Publishing counters, shared between the caller, the sink thread and librdkafka's callbacks.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Debug, Default)]
pub struct PublishMetrics {
    /// Taken by `publish()`: into the channel (stdout/file), persisted in the outbox (Kafka).
    pub accepted: AtomicU64,
    /// Acknowledged by the broker (Kafka) or written (stdout/file).
    pub delivered: AtomicU64,
    /// Given up on: write error (stdout/file).
    pub failed: AtomicU64,
    /// Dropped by the bound policy (channel full, sink still full after the enqueue timeout; outbox full).
    pub dropped: AtomicU64,
    /// Accepted but neither delivered, failed nor dropped yet; Kafka: the events in the outbox (gauge).
    pub buffered: AtomicU64,
    /// Kafka: delivered events removed from the outbox.
    pub removed: AtomicU64,
    /// Kafka: failed delivery reports (the event stays in the outbox and is sent again).
    pub retried: AtomicU64,
    /// Kafka: bytes of the events in the outbox, as `publish.outbox.max_bytes` counts them (gauge).
    pub outbox_bytes: AtomicU64,
    /// Kafka: the largest `outbox_bytes` since start.
    pub outbox_peak_bytes: AtomicU64,
    /// Kafka: when the oldest event in the outbox was persisted, unix ms; 0 when empty (gauge).
    pub outbox_oldest_ms: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct MetricsSnapshot {
    pub accepted: u64,
    pub delivered: u64,
    pub failed: u64,
    pub dropped: u64,
    pub buffered: u64,
    pub removed: u64,
    pub retried: u64,
    pub outbox_bytes: u64,
    pub outbox_peak_bytes: u64,
    pub outbox_oldest_ms: u64,
}

impl PublishMetrics {
    pub fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            accepted: self.accepted.load(Relaxed),
            delivered: self.delivered.load(Relaxed),
            failed: self.failed.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            buffered: self.buffered.load(Relaxed),
            removed: self.removed.load(Relaxed),
            retried: self.retried.load(Relaxed),
            outbox_bytes: self.outbox_bytes.load(Relaxed),
            outbox_peak_bytes: self.outbox_peak_bytes.load(Relaxed),
            outbox_oldest_ms: self.outbox_oldest_ms.load(Relaxed),
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
