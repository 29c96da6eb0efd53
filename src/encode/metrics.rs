//! The encode stage's measurements: `prometheus-client` histograms for `/metrics` (registered by the API,
//! docs/metrics.md) and plain totals that benches and tests read back.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

pub struct BatcherMetrics {
    /// Frames per batch (buckets 1, 2, 4 ... 256).
    pub batch_size: Histogram,
    /// Seconds from a frame's capture to the start of its batch's inference.
    pub queue_wait_seconds: Histogram,
    /// Batches run, frames in them, and the frames' summed capture-to-inference wait.
    pub batches: AtomicU64,
    pub frames: AtomicU64,
    pub wait_us_total: AtomicU64,
    /// Frames that failed to encode (logged and dropped).
    pub failed: AtomicU64,
    /// Live frames dropped because they were older than `encoder.live_max_age_ms` when their turn came.
    pub expired: AtomicU64,
    /// Keyframes encoded without their region passes because live frames were falling behind.
    pub regions_shed: AtomicU64,
    /// Region crops embedded (each one more tower pass).
    pub region_crops: AtomicU64,
    /// Stream queues the worker serves now (gauge): a removed stream's queue leaves once drained.
    pub open_queues: AtomicU64,
}

impl Default for BatcherMetrics {
    fn default() -> Self {
        BatcherMetrics {
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 9)),
            // 0.5 ms .. ~16 s
            queue_wait_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            batches: AtomicU64::new(0),
            frames: AtomicU64::new(0),
            wait_us_total: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            expired: AtomicU64::new(0),
            regions_shed: AtomicU64::new(0),
            region_crops: AtomicU64::new(0),
            open_queues: AtomicU64::new(0),
        }
    }
}

impl std::fmt::Debug for BatcherMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatcherMetrics")
            .field("batches", &self.batches)
            .field("frames", &self.frames)
            .field("failed", &self.failed)
            .field("expired", &self.expired)
            .finish_non_exhaustive()
    }
}

impl BatcherMetrics {
    pub fn record_batch(&self, size: usize, waits: impl Iterator<Item = Duration>) {
        self.batch_size.observe(size as f64);
        self.batches.fetch_add(1, Relaxed);
        self.frames.fetch_add(size as u64, Relaxed);
        for w in waits {
            self.queue_wait_seconds.observe(w.as_secs_f64());
            self.wait_us_total.fetch_add(w.as_micros() as u64, Relaxed);
        }
    }

    /// Mean frames per batch so far.
    pub fn mean_batch(&self) -> f64 {
        self.frames.load(Relaxed) as f64 / self.batches.load(Relaxed).max(1) as f64
    }

    /// Mean capture-to-inference wait so far, in milliseconds.
    pub fn mean_wait_ms(&self) -> f64 {
        self.wait_us_total.load(Relaxed) as f64 / 1000.0 / self.frames.load(Relaxed).max(1) as f64
    }
}
