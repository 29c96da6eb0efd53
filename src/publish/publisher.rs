//! [`Publisher`]: the Kafka sink's durable outbox (src/publish/durable.rs), or for stdout/file a sink
//! thread behind a bounded channel, where `publish()` never blocks the caller.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use parking_lot::Mutex;

use super::config::{PublishConfig, SinkKind};
use super::durable::Durable;
use super::lines::LinesSink;
use super::metrics::{MetricsSnapshot, PublishMetrics};
use super::{PublishError, Sink};
use crate::event::DetectionEvent;

/// Result of [`Publisher::shutdown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct FlushReport {
    /// Accepted events not delivered when the timeout ran out (still queued, or failed during the flush).
    pub undelivered: u64,
    pub metrics: MetricsSnapshot,
}

pub struct Publisher(Inner);

enum Inner {
    Durable(Durable),
    Queued(Queued),
}

impl Publisher {
    /// Starts the configured sink: Kafka behind its outbox, or stdout/file behind a channel.
    pub fn start(cfg: &PublishConfig) -> Result<Self, PublishError> {
        let metrics = Arc::new(PublishMetrics::default());
        let sink: Box<dyn Sink> = match cfg.sink {
            SinkKind::Kafka => return Ok(Publisher(Inner::Durable(Durable::start(cfg, metrics)?))),
            SinkKind::Stdout => Box::new(LinesSink::stdout(metrics.clone())),
            SinkKind::File => {
                let path = cfg.file.as_deref().ok_or_else(|| PublishError::Config {
                    key: "publish.file".into(),
                    problem: "required when publish.sink = \"file\"".into(),
                })?;
                Box::new(LinesSink::file(path, metrics.clone())?)
            }
        };
        Self::with_sink(sink, metrics, cfg)
    }

    /// Runs a given sink (which must report into `metrics`) behind a channel.
    pub fn with_sink(sink: Box<dyn Sink>, metrics: Arc<PublishMetrics>, cfg: &PublishConfig) -> Result<Self, PublishError> {
        Ok(Publisher(Inner::Queued(Queued::start(sink, metrics, cfg)?)))
    }

    /// Kafka: true once the event is persisted in the outbox (one disk commit); false if refused because
    /// the outbox is full. stdout/file: never blocks; false if dropped (channel full: drop-newest).
    pub fn publish(&self, event: DetectionEvent) -> bool {
        match &self.0 {
            Inner::Durable(d) => d.publish(event),
            Inner::Queued(q) => q.publish(event),
        }
    }

    pub fn metrics(&self) -> MetricsSnapshot {
        self.metrics_handle().snapshot()
    }

    /// Shared counters, e.g. for a metrics endpoint.
    pub fn metrics_handle(&self) -> Arc<PublishMetrics> {
        match &self.0 {
            Inner::Durable(d) => d.metrics().clone(),
            Inner::Queued(q) => q.metrics.clone(),
        }
    }

    /// The configured `publish.flush_timeout_ms`.
    pub fn flush_timeout(&self) -> Duration {
        match &self.0 {
            Inner::Durable(d) => d.flush_timeout(),
            Inner::Queued(q) => q.flush_timeout,
        }
    }

    /// Stops accepting and delivers what is pending, within about `timeout`; reports what is left (Kafka:
    /// it stays in the outbox). Later calls report the counters only.
    pub fn shutdown(&self, timeout: Duration) -> FlushReport {
        match &self.0 {
            Inner::Durable(d) => d.shutdown(timeout),
            Inner::Queued(q) => q.shutdown(timeout),
        }
    }
}

/// A sink thread behind a bounded channel.
struct Queued {
    /// `None` once shut down (the matcher may still hold the publisher then: its late events are
    /// dropped and counted).
    tx: parking_lot::RwLock<Option<Sender<DetectionEvent>>>,
    closing: Arc<AtomicBool>,
    deadline: Arc<Mutex<Option<Instant>>>,
    worker: Mutex<Option<JoinHandle<u64>>>,
    metrics: Arc<PublishMetrics>,
    flush_timeout: Duration,
}

impl Queued {
    fn start(mut sink: Box<dyn Sink>, metrics: Arc<PublishMetrics>, cfg: &PublishConfig) -> Result<Self, PublishError> {
        let (tx, rx) = bounded(cfg.channel_capacity);
        let closing = Arc::new(AtomicBool::new(false));
        let wait = Duration::from_millis(cfg.enqueue_timeout_ms);
        let deadline = Arc::new(Mutex::new(None));
        let (m, c, d) = (metrics.clone(), closing.clone(), deadline.clone());
        let worker = std::thread::Builder::new()
            .name("livesku-publish".into())
            .spawn(move || drain(&mut *sink, &rx, &m, &c, &d, wait))
            .map_err(PublishError::Thread)?;
        Ok(Queued {
            tx: parking_lot::RwLock::new(Some(tx)),
            closing,
            deadline,
            worker: Mutex::new(Some(worker)),
            metrics,
            flush_timeout: Duration::from_millis(cfg.flush_timeout_ms),
        })
    }

    /// Queues an event without blocking. Returns false if it was dropped (channel full: drop-newest).
    fn publish(&self, event: DetectionEvent) -> bool {
        let sent = match &*self.tx.read() {
            Some(tx) => tx.try_send(event),
            None => Err(TrySendError::Disconnected(event)),
        };
        match sent {
            Ok(()) => {
                self.metrics.accept();
                true
            }
            Err(TrySendError::Full(e) | TrySendError::Disconnected(e)) => {
                self.metrics.drop_unaccepted();
                let dropped = self.metrics.dropped.load(Ordering::Relaxed);
                // Log the first drop and then every 1000th, not every event.
                if dropped == 1 || dropped.is_multiple_of(1000) {
                    tracing::warn!(dropped, event_id = %e.event_id, "publish queue full: dropping newest event");
                }
                false
            }
        }
    }

    /// Stops accepting, drains the channel into the sink and flushes, within about `timeout`. Later
    /// calls report the counters only.
    fn shutdown(&self, timeout: Duration) -> FlushReport {
        *self.deadline.lock() = Some(Instant::now() + timeout);
        self.closing.store(true, Ordering::Relaxed);
        self.tx.write().take();
        let worker = self.worker.lock().take();
        let undelivered = match worker {
            Some(w) => w.join().unwrap_or_else(|_| {
                tracing::error!("publisher thread panicked");
                self.metrics.buffered.load(Ordering::Relaxed)
            }),
            None => 0,
        };
        let metrics = self.metrics.snapshot();
        if undelivered > 0 {
            tracing::warn!(undelivered, ?metrics, "publisher stopped with undelivered events");
        }
        FlushReport { undelivered, metrics }
    }
}

impl Drop for Queued {
    /// Dropped without `shutdown`: flush with the configured timeout rather than lose events silently.
    fn drop(&mut self) {
        if self.worker.lock().is_some() {
            self.shutdown(self.flush_timeout);
        }
    }
}

/// The sink thread: forwards events until the channel closes, then flushes until the deadline.
fn drain(
    sink: &mut dyn Sink,
    rx: &Receiver<DetectionEvent>,
    metrics: &PublishMetrics,
    closing: &AtomicBool,
    deadline: &Mutex<Option<Instant>>,
    wait: Duration,
) -> u64 {
    for event in rx.iter() {
        // Once shutting down, never wait for room: what does not fit now is reported undelivered.
        let wait = if closing.load(Ordering::Relaxed) { Duration::ZERO } else { wait };
        let payload = event.to_json();
        match sink.send(&event, &payload, wait) {
            Ok(()) => {}
            Err(PublishError::QueueFull(_)) => {
                metrics.settle(&metrics.dropped);
                let dropped = metrics.dropped.load(Ordering::Relaxed);
                if dropped == 1 || dropped.is_multiple_of(1000) {
                    tracing::warn!(dropped, event_id = %event.event_id, "sink queue full: dropping newest event");
                }
            }
            Err(e) => {
                metrics.settle(&metrics.failed);
                tracing::warn!(error = %e, event_id = %event.event_id, "event could not be published");
            }
        }
    }
    let left = deadline.lock().map_or(Duration::ZERO, |d| d.saturating_duration_since(Instant::now()));
    // Everything left the channel (sent, dropped or failed, all counted); what the sink still holds when
    // the time is up is undelivered (the Kafka sink's purge on drop then counts it as failed).
    sink.flush(left)
}
