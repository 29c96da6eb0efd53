//! Publishing detection events: one [`Sink`] trait for the JSON-lines sinks `stdout` and `file`, the
//! Kafka sink (the service default) behind a durable outbox, and a [`Publisher`] in front of either.
//!
//! # Kafka: persisted first, delivered in order, removed on the delivery report
//! [`Publisher::publish`] commits the event to the outbox (src/publish/outbox.rs, a redb file at
//! `publish.outbox.path`) before it returns true: from then on a broker outage or a crash of livesku loses
//! nothing. A delivery thread (src/publish/durable.rs) hands the outbox to librdkafka in sequence order, at
//! most `publish.max_buffered_events` at a time, and removes each event on its delivery report; librdkafka
//! retries without a timeout. A restart delivers the backlog before anything new. Delivery is
//! at-least-once: an event delivered just before a crash is sent again after it, with the same `event_id`.
//! When the outbox holds `publish.outbox.max_bytes`, new episodes and updates are refused (counted in
//! `dropped`, logged at error level); a `product.disappeared` of an accepted episode is always taken.
//!
//! # stdout/file: never block, drop the newest
//! `publish()` `try_send`s into a channel of `publish.channel_capacity` events; the sink thread writes
//! them. When the channel is full the newest event is dropped at once (counted in `dropped`).
//!
//! # Shutdown
//! [`Publisher::shutdown`] stops accepting and delivers (Kafka) or drains the channel (stdout/file) until
//! done or the timeout, and reports how many events were not delivered (Kafka: they stay in the outbox).

mod admin;
mod config;
mod durable;
mod kafka;
mod lines;
mod metrics;
mod outbox;
mod publisher;
#[cfg(test)]
mod tests;

use std::time::Duration;

pub use admin::ensure_topic;
pub use config::{KafkaConfig, OutboxConfig, PublishConfig, SinkKind};
pub use lines::LinesSink;
pub use metrics::{MetricsSnapshot, PublishMetrics};
pub use outbox::{Episode, Outbox, Pending, Totals, entry_size};
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
    #[error("outbox {path}: {source}")]
    Outbox { path: String, source: redb::Error },
}

/// Where events go. Implementations count `delivered`/`failed` in the [`PublishMetrics`] they were given.
pub trait Sink: Send {
    /// Hands one event (and its JSON payload) to the sink, waiting at most `wait` for room.
    /// `Err` means this event is not going to be delivered.
    fn send(&mut self, event: &DetectionEvent, payload: &[u8], wait: Duration) -> Result<(), PublishError>;

    /// Waits up to `timeout` for everything handed over to be delivered; returns how many were not.
    fn flush(&mut self, timeout: Duration) -> u64;
}
