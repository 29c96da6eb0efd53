//! The Kafka sink's publisher: `publish()` persists the event in the outbox before it returns; a delivery
//! thread hands the outbox to Kafka in sequence order and removes each event on its delivery report.
//!
//! # Order
//! One producer, fed in outbox order, idempotent (so its retries keep each partition's order), key = stream
//! id: each stream's events reach their partition in the order they were emitted. A restart starts from the
//! oldest pending event, so a backlog goes out before any new event of its stream. After a failed report
//! the thread stops sending, waits for every outstanding report, then starts again from the oldest pending
//! event (re-sending what was not acknowledged, in order) after [`RETRY_BACKOFF`].
//!
//! # When the outbox is full (`publish.outbox.max_bytes`)
//! A new episode (`product.appeared`) is refused, and so is the rest of that episode; a `product.updated`
//! is refused; a `product.disappeared` of an accepted episode is always taken (at most one per open
//! episode beyond the bound), so consumers never see an episode that does not end. Refusals are counted in
//! `dropped` and logged at error level.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};
use parking_lot::Mutex;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use super::config::{KafkaConfig, PublishConfig};
use super::kafka::{KafkaProducer, Report};
use super::metrics::PublishMetrics;
use super::outbox::{Episode, Outbox, Totals, entry_size};
use super::{FlushReport, PublishError};
use crate::event::DetectionEvent;

/// Wait after a failed delivery before sending again.
const RETRY_BACKOFF: Duration = Duration::from_secs(1);
/// Events read from the outbox per read.
const READ_BATCH: usize = 512;

pub(crate) struct Durable {
    outbox: Arc<Outbox>,
    max_bytes: u64,
    /// Episodes whose `product.appeared` was refused: the rest of them is refused too.
    refused: Mutex<HashSet<String>>,
    wake: Sender<()>,
    closed: AtomicBool,
    deadline: Arc<Mutex<Option<Instant>>>,
    worker: Mutex<Option<JoinHandle<u64>>>,
    metrics: Arc<PublishMetrics>,
    flush_timeout: Duration,
}

impl Durable {
    pub fn start(cfg: &PublishConfig, metrics: Arc<PublishMetrics>) -> Result<Self, PublishError> {
        let outbox = Arc::new(Outbox::open(cfg.outbox.path.as_deref())?);
        let closed = close_orphans(&outbox)?;
        let t = outbox.totals();
        metrics.set_outbox(&t);
        match &cfg.outbox.path {
            None => tracing::warn!("publish.outbox.path is unset: undelivered events are kept in memory only and do not survive a restart"),
            Some(p) if t.events > 0 => tracing::info!(
                outbox = %p.display(), events = t.events, bytes = t.bytes,
                "outbox: events left by a previous run are delivered first"
            ),
            Some(_) => {}
        }
        if closed > 0 {
            tracing::warn!(episodes = closed, "outbox: episodes a previous run left open (it was killed) end now, with end_reason \"restart\"");
        }
        let (reports_tx, reports) = unbounded();
        let producer = KafkaProducer::new(&cfg.kafka, cfg.max_buffered_events, reports_tx.clone())?;
        let (wake, woken) = bounded(1);
        let deadline = Arc::new(Mutex::new(None));
        let mut delivery = Delivery {
            outbox: outbox.clone(),
            producer,
            kafka: cfg.kafka.clone(),
            reports_tx,
            reports,
            woken,
            window: cfg.max_buffered_events,
            metrics: metrics.clone(),
            deadline: deadline.clone(),
        };
        let worker = std::thread::Builder::new()
            .name("livesku-deliver".into())
            .spawn(move || delivery.run())
            .map_err(PublishError::Thread)?;
        Ok(Durable {
            outbox,
            max_bytes: cfg.outbox.max_bytes,
            refused: Mutex::default(),
            wake,
            closed: AtomicBool::new(false),
            deadline,
            worker: Mutex::new(Some(worker)),
            metrics,
            flush_timeout: Duration::from_millis(cfg.flush_timeout_ms),
        })
    }

    /// Persists the event (blocking for one disk commit); true once it is in the outbox.
    pub fn publish(&self, event: DetectionEvent) -> bool {
        if self.closed.load(Relaxed) {
            self.metrics.drop_unaccepted();
            tracing::warn!(event_id = %event.event_id, "publisher closed: event dropped");
            return false;
        }
        let payload = event.to_json();
        let mut refused = self.refused.lock();
        let full = self.outbox.totals().bytes + entry_size(&event.stream_id, &payload) > self.max_bytes;
        let refuse = if refused.contains(&event.episode_id) {
            if event.event_type == "product.disappeared" {
                refused.remove(&event.episode_id);
            }
            true
        } else if full && event.event_type != "product.disappeared" {
            if event.event_type == "product.appeared" {
                refused.insert(event.episode_id.clone());
            }
            true
        } else {
            false
        };
        if refuse {
            self.metrics.drop_unaccepted();
            let dropped = self.metrics.dropped.load(Relaxed);
            if dropped == 1 || dropped.is_multiple_of(1000) {
                tracing::error!(
                    dropped, event_id = %event.event_id, kind = %event.event_type, max_bytes = self.max_bytes,
                    "outbox full (publish.outbox.max_bytes): event refused"
                );
            }
            return false;
        }
        let episode = match event.event_type.as_str() {
            "product.disappeared" => Episode::End(&event.episode_id),
            _ => Episode::Open(&event.episode_id),
        };
        match self.outbox.append(&event.stream_id, &payload, episode) {
            Ok(_) => {
                drop(refused);
                self.metrics.accept();
                self.metrics.set_outbox(&self.outbox.totals());
                let _ = self.wake.try_send(());
                true
            }
            Err(e) => {
                self.metrics.drop_unaccepted();
                tracing::error!(error = %e, event_id = %event.event_id, "event could not be persisted in the outbox");
                false
            }
        }
    }

    pub fn metrics(&self) -> &Arc<PublishMetrics> {
        &self.metrics
    }

    pub fn flush_timeout(&self) -> Duration {
        self.flush_timeout
    }

    /// Stops accepting and keeps delivering until the outbox is empty or `timeout` is up; what is left
    /// stays in the outbox (for the next start when it is a file).
    pub fn shutdown(&self, timeout: Duration) -> FlushReport {
        self.closed.store(true, Relaxed);
        *self.deadline.lock() = Some(Instant::now() + timeout);
        let _ = self.wake.try_send(());
        let undelivered = match self.worker.lock().take() {
            Some(w) => w.join().unwrap_or_else(|_| {
                tracing::error!("delivery thread panicked");
                self.outbox.totals().events
            }),
            None => 0,
        };
        let metrics = self.metrics.snapshot();
        if undelivered > 0 {
            tracing::warn!(undelivered, outbox = self.outbox.name(), ?metrics, "publisher stopped with events in the outbox");
        }
        FlushReport { undelivered, metrics }
    }
}

impl Drop for Durable {
    fn drop(&mut self) {
        if self.worker.lock().is_some() {
            self.shutdown(self.flush_timeout);
        }
    }
}

/// Ends the episodes a previous run left open: for each, a `product.disappeared` built from its latest
/// event, with `end_reason = "restart"` (its disappearance was not seen) and an id derived from the episode
/// (a second restart before delivery finds nothing left to close: the end is in the same commit). Returns
/// how many it ended. An entry that cannot be read back is reported and dropped.
pub(crate) fn close_orphans(outbox: &Outbox) -> Result<usize, PublishError> {
    let mut closed = 0;
    for (episode_id, payload) in outbox.open_episodes()? {
        let mut e: DetectionEvent = match serde_json::from_slice(&payload) {
            Ok(e) => e,
            Err(err) => {
                tracing::error!(%episode_id, error = %err, outbox = outbox.name(), "open episode unreadable: it cannot be ended");
                outbox.forget_open(&episode_id)?;
                continue;
            }
        };
        e.event_type = "product.disappeared".into();
        e.update_seq = 0;
        e.event_id = crate::event::restart_end_id(&episode_id);
        e.end_reason = Some("restart".into());
        e.emitted_at = crate::event::utc_now();
        outbox.append(&e.stream_id, &e.to_json(), Episode::End(&episode_id))?;
        closed += 1;
    }
    Ok(closed)
}

/// The delivery thread's state.
struct Delivery {
    outbox: Arc<Outbox>,
    producer: KafkaProducer,
    kafka: KafkaConfig,
    reports_tx: Sender<Report>,
    reports: Receiver<Report>,
    woken: Receiver<()>,
    window: usize,
    metrics: Arc<PublishMetrics>,
    deadline: Arc<Mutex<Option<Instant>>>,
}

impl Delivery {
    /// Delivers until shut down; returns the events left in the outbox.
    fn run(&mut self) -> u64 {
        // The next sequence number to hand to Kafka; messages handed over and not reported yet.
        let (mut cursor, mut outstanding) = (0u64, 0usize);
        let mut failed = false;
        let mut resume_at = Instant::now();
        loop {
            let tick = if failed || Instant::now() < resume_at { Duration::from_millis(50) } else { Duration::from_millis(200) };
            let mut reports = Vec::new();
            crossbeam_channel::select! {
                recv(self.reports) -> r => reports.extend(r.ok()),
                recv(self.woken) -> _ => {}
                default(tick) => {}
            }
            reports.extend(self.reports.try_iter());
            outstanding -= reports.len().min(outstanding);
            failed |= self.settle(reports);
            if failed && outstanding == 0 {
                // Every report is in: start again from the oldest pending event, in order.
                if let Some(fatal) = self.producer.fatal_error() {
                    tracing::error!(error = %fatal, "kafka producer failed: starting a new one");
                    match KafkaProducer::new(&self.kafka, self.window, self.reports_tx.clone()) {
                        Ok(p) => self.producer = p,
                        Err(e) => tracing::error!(error = %e, "cannot start a new kafka producer"),
                    }
                }
                (cursor, failed, resume_at) = (0, false, Instant::now() + RETRY_BACKOFF);
            }
            if !failed && Instant::now() >= resume_at {
                match self.send_more(&mut cursor, &mut outstanding) {
                    Ok(()) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "kafka refused a message: retrying from the oldest pending event");
                        failed = true;
                    }
                }
            }
            let deadline = *self.deadline.lock();
            if let Some(d) = deadline
                && (self.outbox.totals().events == 0 || Instant::now() >= d)
            {
                return self.outbox.totals().events;
            }
        }
    }

    /// Removes what was delivered; returns whether any report was a failure.
    fn settle(&self, reports: Vec<Report>) -> bool {
        let mut done = Vec::with_capacity(reports.len());
        let mut failed = false;
        for r in reports {
            match r.error {
                None => done.push(r.seq),
                Some(error) => {
                    self.metrics.retried.fetch_add(1, Relaxed);
                    tracing::warn!(%error, seq = r.seq, "kafka delivery failed: the event stays in the outbox and is sent again");
                    failed = true;
                }
            }
        }
        if done.is_empty() {
            return failed;
        }
        self.metrics.delivered.fetch_add(done.len() as u64, Relaxed);
        match self.outbox.remove(&done) {
            Ok(n) => {
                self.metrics.removed.fetch_add(n, Relaxed);
                self.metrics.set_outbox(&self.outbox.totals());
            }
            // Delivered but kept: sent again after a restart, consumers dedupe on event_id.
            Err(e) => tracing::error!(error = %e, "delivered events could not be removed from the outbox"),
        }
        failed
    }

    /// Hands pending events after `cursor` to Kafka until the window is full.
    fn send_more(&self, cursor: &mut u64, outstanding: &mut usize) -> Result<(), KafkaError> {
        while *outstanding < self.window {
            let batch = match self.outbox.read_from(*cursor, READ_BATCH.min(self.window - *outstanding)) {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the outbox");
                    return Ok(());
                }
            };
            if batch.is_empty() {
                return Ok(());
            }
            for p in batch {
                match self.producer.send(p.seq, &p.key, &p.payload) {
                    Ok(()) => {
                        *cursor = p.seq + 1;
                        *outstanding += 1;
                    }
                    Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }
}

impl PublishMetrics {
    fn set_outbox(&self, t: &Totals) {
        self.buffered.store(t.events, Relaxed);
        self.outbox_bytes.store(t.bytes, Relaxed);
        self.outbox_oldest_ms.store(t.oldest_ms, Relaxed);
        self.outbox_peak_bytes.fetch_max(t.bytes, Relaxed);
    }
}
