//! Kafka sink: idempotent producer, acks=all, key = stream id, JSON payload with content-type and
//! schema-version headers; delivery reports counted in [`PublishMetrics`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

use super::config::KafkaConfig;
use super::metrics::PublishMetrics;
use super::{PublishError, Sink};
use crate::event::{CONTENT_TYPE, DetectionEvent, SCHEMA_VERSION};

/// Counts delivery reports; logs client errors through `tracing` (librdkafka retries by itself).
struct Reports {
    metrics: Arc<PublishMetrics>,
}

impl ClientContext for Reports {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(%error, reason, "kafka client error (retrying)");
    }
}

impl ProducerContext for Reports {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.metrics.settle(&self.metrics.delivered),
            Err((error, _)) => {
                tracing::warn!(%error, "kafka delivery failed");
                self.metrics.settle(&self.metrics.failed);
            }
        }
    }
}

pub struct KafkaSink {
    producer: ThreadedProducer<Reports>,
    topic: String,
    headers: OwnedHeaders,
}

impl KafkaSink {
    /// Creates the producer. It does not need a reachable broker: messages wait (up to the message
    /// timeout) until one is up.
    pub fn new(
        cfg: &KafkaConfig,
        max_buffered: usize,
        metrics: Arc<PublishMetrics>,
    ) -> Result<Self, PublishError> {
        let mut cc = cfg.client_config("");
        cc.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", &cfg.compression)
            .set("message.timeout.ms", cfg.message_timeout_ms.to_string())
            .set("linger.ms", cfg.linger_ms.to_string())
            .set("queue.buffering.max.messages", max_buffered.to_string());
        let producer: ThreadedProducer<Reports> = cc.create_with_context(Reports { metrics })?;
        let schema = SCHEMA_VERSION.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header { key: "content-type", value: Some(CONTENT_TYPE) })
            .insert(Header { key: "schema-version", value: Some(schema.as_str()) });
        Ok(KafkaSink { producer, topic: cfg.topic.clone(), headers })
    }

    /// Messages handed to librdkafka and not yet delivered or failed.
    pub fn in_flight(&self) -> u64 {
        self.producer.in_flight_count().max(0) as u64
    }
}

impl Sink for KafkaSink {
    fn send(&mut self, event: &DetectionEvent, payload: &[u8], wait: Duration) -> Result<(), PublishError> {
        let deadline = Instant::now() + wait;
        let mut record = BaseRecord::to(&self.topic)
            .key(event.stream_id.as_bytes())
            .payload(payload)
            .headers(self.headers.clone());
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    if Instant::now() >= deadline {
                        return Err(PublishError::QueueFull(wait));
                    }
                    record = back;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
    }

    fn flush(&mut self, timeout: Duration) -> u64 {
        if let Err(e) = self.producer.flush(timeout) {
            tracing::warn!(error = %e, in_flight = self.in_flight(), "kafka flush did not complete");
        }
        self.in_flight()
    }
}
