//! Publishing detection events: one [`Sink`] trait, sinks `kafka` (the service default), `stdout` and
//! `file` (JSON lines), and a [`Publisher`] that runs the sink on its own thread behind a bounded channel.
//!
//! # Never crash, never block ingest
//! [`Publisher::publish`] never blocks: it `try_send`s into a channel of `publish.channel_capacity` events.
//! The sink thread hands events to the sink; the Kafka sink hands them to librdkafka, whose own queue holds
//! at most `publish.max_buffered_events` undelivered messages (`queue.buffering.max.messages`), retried
//! until `publish.kafka.message_timeout_ms` (5 min by default), so a broker that is down at start or goes
//! away for a while loses nothing.
//!
//! # Policy when the bound is hit: block with timeout, then drop the newest
//! librdkafka cannot drop its *oldest* undelivered message, so when its queue is full the sink thread waits
//! up to `publish.enqueue_timeout_ms` for room, then drops that event (counted in `dropped`, logged). While
//! the sink thread waits, new events collect in the channel; when the channel is full too, `publish()`
//! drops the newest event at once (counted in `dropped`). Messages that librdkafka gives up on (after the
//! message timeout, or a permanent error) are counted in `failed`. Consumers see gaps as missing
//! `event_id`s; the metrics say how many.
//!
//! # Shutdown
//! [`Publisher::shutdown`] drains the channel into the sink (without waiting for room), then flushes with
//! what is left of the timeout and reports how many events were not delivered.

mod admin;
mod config;
mod kafka;
mod lines;
mod metrics;
mod publisher;
#[cfg(test)]
mod tests;

use std::time::Duration;

pub use admin::ensure_topic;
pub use config::{KafkaConfig, PublishConfig, SinkKind};
pub use kafka::KafkaSink;
pub use lines::LinesSink;
pub use metrics::{MetricsSnapshot, PublishMetrics};
pub use publisher::{FlushReport, Publisher};

use crate::event::DetectionEvent;

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("kafka client: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("sink queue full for {0:?}: event dropped")]
    QueueFull(Duration),
    #[error("could not start the publisher thread: {0}")]
    Thread(std::io::Error),
    #[error("config key `{key}`: {problem}")]
    Config { key: String, problem: String },
}

/// Where events go. Implementations count `delivered`/`failed` in the [`PublishMetrics`] they were given.
pub trait Sink: Send {
    /// Hands one event (and its JSON payload) to the sink, waiting at most `wait` for room.
    /// `Err` means this event is not going to be delivered.
    fn send(&mut self, event: &DetectionEvent, payload: &[u8], wait: Duration) -> Result<(), PublishError>;

    /// Waits up to `timeout` for everything handed over to be delivered; returns how many were not.
    fn flush(&mut self, timeout: Duration) -> u64;
}

/// Builds the sink the config names, sharing `metrics`.
pub fn build_sink(
    cfg: &PublishConfig,
    metrics: std::sync::Arc<PublishMetrics>,
) -> Result<Box<dyn Sink>, PublishError> {
    Ok(match cfg.sink {
        SinkKind::Kafka => Box::new(KafkaSink::new(&cfg.kafka, cfg.max_buffered_events, metrics)?),
        SinkKind::Stdout => Box::new(LinesSink::stdout(metrics)),
        SinkKind::File => {
            let path = cfg.file.as_deref().ok_or_else(|| PublishError::Config {
                key: "publish.file".into(),
                problem: "required when publish.sink = \"file\"".into(),
            })?;
            Box::new(LinesSink::file(path, metrics)?)
        }
    })
}
