//! The match stage's measurements, registered into `/metrics` by the API (docs/metrics.md).

use std::time::SystemTime;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

use crate::track::DecisionKind;

pub struct MatchMetrics {
    /// Seconds per gallery search of one keyframe.
    pub search_seconds: Histogram,
    /// Seconds from the deciding keyframe leaving the decoder (`captured_at`) to its event being handed
    /// to the sink.
    pub e2e_emitted_seconds: Histogram,
    /// Events handed to the sink, by `type`.
    pub events: Family<Vec<(&'static str, &'static str)>, Counter>,
    /// Keyframes that matched no product (the background references won).
    pub abstained: Counter,
}

impl Default for MatchMetrics {
    fn default() -> Self {
        let events: Family<Vec<(&'static str, &'static str)>, Counter> = Family::default();
        // Every type exported from the start (at 0), so rates work before the first event.
        for kind in [DecisionKind::Appeared, DecisionKind::Updated, DecisionKind::Disappeared] {
            let _ = events.get_or_create(&vec![("type", kind.as_str())]);
        }
        MatchMetrics {
            // 50 us .. ~0.8 s
            search_seconds: Histogram::new(exponential_buckets(0.00005, 2.0, 15)),
            e2e_emitted_seconds: Histogram::new([0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0]),
            events,
            abstained: Counter::default(),
        }
    }
}

impl MatchMetrics {
    pub fn event(&self, kind: DecisionKind) {
        self.events.get_or_create(&vec![("type", kind.as_str())]).inc();
    }

    pub fn events_of(&self, kind: DecisionKind) -> u64 {
        self.events.get_or_create(&vec![("type", kind.as_str())]).get()
    }

    pub fn observe_e2e(&self, captured_at: SystemTime) {
        if let Ok(d) = SystemTime::now().duration_since(captured_at) {
            self.e2e_emitted_seconds.observe(d.as_secs_f64());
        }
    }
}
