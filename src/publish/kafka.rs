//! The Kafka producer behind the outbox: idempotent, acks=all, key = stream id, JSON payload with
//! content-type and schema-version headers. Each message carries its outbox sequence number; its delivery
//! report goes back on a channel to the delivery thread (src/publish/durable.rs), which removes it.

use crossbeam_channel::Sender;
use rdkafka::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};

use super::PublishError;
use super::config::KafkaConfig;
use crate::event::{CONTENT_TYPE, SCHEMA_VERSION};

/// A delivery report: `error` is `None` when the broker acknowledged the message.
#[derive(Debug)]
pub(crate) struct Report {
    pub seq: u64,
    pub error: Option<KafkaError>,
}

/// Forwards delivery reports; logs client errors through `tracing` (librdkafka retries by itself).
struct Reports {
    tx: Sender<Report>,
}

impl ClientContext for Reports {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(%error, reason, "kafka client error (retrying)");
    }
}

impl ProducerContext for Reports {
    type DeliveryOpaque = Box<u64>;

    fn delivery(&self, result: &DeliveryResult<'_>, seq: Box<u64>) {
        let error = result.as_ref().err().map(|(e, _)| e.clone());
        // Nobody listens only after shutdown: the event is still in the outbox then.
        let _ = self.tx.send(Report { seq: *seq, error });
    }
}

pub(crate) struct KafkaProducer {
    producer: ThreadedProducer<Reports>,
    topic: String,
    headers: OwnedHeaders,
}

impl KafkaProducer {
    /// Creates the producer. It does not need a reachable broker: messages wait until one is up.
    pub fn new(cfg: &KafkaConfig, max_buffered: usize, reports: Sender<Report>) -> Result<Self, PublishError> {
        let mut cc = cfg.client_config("");
        cc.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", &cfg.compression)
            // Never give up: the outbox holds the event anyway, and a message that timed out while a later
            // one of its partition got through would be re-sent behind it, out of order.
            .set("message.timeout.ms", "0")
            .set("linger.ms", cfg.linger_ms.to_string())
            .set("queue.buffering.max.messages", max_buffered.to_string());
        let producer: ThreadedProducer<Reports> = cc.create_with_context(Reports { tx: reports })?;
        let schema = SCHEMA_VERSION.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header { key: "content-type", value: Some(CONTENT_TYPE) })
            .insert(Header { key: "schema-version", value: Some(schema.as_str()) });
        Ok(KafkaProducer { producer, topic: cfg.topic.clone(), headers })
    }

    /// Hands one message to librdkafka (`QueueFull` when its queue is full: try again later).
    pub fn send(&self, seq: u64, key: &str, payload: &[u8]) -> Result<(), KafkaError> {
        let record = BaseRecord::with_opaque_to(&self.topic, Box::new(seq))
            .key(key.as_bytes())
            .payload(payload)
            .headers(self.headers.clone());
        self.producer.send(record).map_err(|(e, _)| e)
    }

    /// An unrecoverable producer error (the idempotent producer's state is lost): a new producer is needed.
    pub fn fatal_error(&self) -> Option<String> {
        self.producer.client().fatal_error().map(|(code, reason)| format!("{code:?}: {reason}"))
    }
}
