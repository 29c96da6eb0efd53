//! Batcher metrics: plain atomic counters and log2 histograms, cheap enough to update per batch.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Histogram with buckets [0,1], (1,2], (2,4], ... (powers of two), the last one open-ended.
#[derive(Debug)]
pub struct Log2Histogram {
    buckets: [AtomicU64; 32],
    sum: AtomicU64,
    count: AtomicU64,
}

impl Default for Log2Histogram {
    fn default() -> Self {
        Log2Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }
}

impl Log2Histogram {
    pub fn record(&self, v: u64) {
        let i = (u64::BITS - v.saturating_sub(1).leading_zeros()).min(31) as usize;
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum.fetch_add(v, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    pub fn mean(&self) -> f64 {
        let n = self.count();
        if n == 0 {
            0.0
        } else {
            self.sum.load(Relaxed) as f64 / n as f64
        }
    }

    /// (upper bound of bucket, count) for non-empty buckets.
    pub fn buckets(&self) -> Vec<(u64, u64)> {
        self.buckets
            .iter()
            .enumerate()
            .map(|(i, b)| (1u64 << i, b.load(Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

#[derive(Debug, Default)]
pub struct BatcherMetrics {
    /// Frames per batch.
    pub batch_size: Log2Histogram,
    /// Microseconds from submit to the start of the batch's inference.
    pub queue_wait_us: Log2Histogram,
    /// Frames that failed to encode (logged and dropped).
    pub failed: AtomicU64,
    /// Live frames dropped because they had waited longer than `encoder.live_max_age_ms`.
    pub expired: AtomicU64,
    /// Stream queues the worker serves now (gauge): a removed stream's queue leaves once drained.
    pub open_queues: AtomicU64,
}

impl BatcherMetrics {
    pub fn record_batch(&self, size: usize, waits: impl Iterator<Item = Duration>) {
        self.batch_size.record(size as u64);
        for w in waits {
            self.queue_wait_us.record(w.as_micros() as u64);
        }
    }
}
