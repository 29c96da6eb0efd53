//! Service-wide measurements that have no home in one stage's own counters: gallery search time and
//! end-to-end latency. Rendered by `/metrics` (src/api/metrics.rs, the
//! reference is docs/metrics.md).

use std::sync::atomic::AtomicU64;
use std::time::SystemTime;

use prometheus_client::metrics::histogram::Histogram;

pub struct ServiceMetrics {
    /// Seconds per gallery search of one keyframe.
    pub search_seconds: Histogram,
    /// Seconds from the deciding keyframe leaving the decoder (`captured_at`) to its event being handed
    /// to the sink.
    pub e2e_emitted_seconds: Histogram,
    /// Events handed to the sink, by type (appeared, updated, disappeared): see `events_*`.
    pub events_appeared: AtomicU64,
    pub events_updated: AtomicU64,
    pub events_disappeared: AtomicU64,
}

impl Default for ServiceMetrics {
    fn default() -> Self {
        ServiceMetrics {
            // 50 us .. ~0.8 s
            search_seconds: Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                0.00005, 2.0, 15,
            )),
            e2e_emitted_seconds: Histogram::new([0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0]),
            events_appeared: AtomicU64::new(0),
            events_updated: AtomicU64::new(0),
            events_disappeared: AtomicU64::new(0),
        }
    }
}

impl ServiceMetrics {
    pub fn observe_e2e(&self, captured_at: SystemTime) {
        if let Ok(d) = SystemTime::now().duration_since(captured_at) {
            self.e2e_emitted_seconds.observe(d.as_secs_f64());
        }
    }
}
