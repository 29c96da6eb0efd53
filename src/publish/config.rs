//! `[publish]`, `[publish.kafka]` and `[publish.outbox]` config sections.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::config::ConfigError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkKind {
    Kafka,
    Stdout,
    File,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PublishConfig {
    /// `kafka` (default), `stdout` or `file` (JSON lines).
    pub sink: SinkKind,
    /// Output path for `sink = "file"` (appended to).
    pub file: Option<PathBuf>,
    /// stdout/file: events waiting for the sink thread; when full, `publish()` drops the newest. Default 1024.
    pub channel_capacity: usize,
    /// Kafka: events of the outbox handed to librdkafka at a time (queue.buffering.max.messages). Default 100000.
    pub max_buffered_events: usize,
    /// stdout/file: how long the sink thread waits for a full sink before dropping. Default 1000.
    #[serde(alias = "enqueue_timeout", deserialize_with = "crate::config::millis::deserialize")]
    pub enqueue_timeout_ms: u64,
    /// Shutdown flush timeout. Default 10000.
    #[serde(alias = "flush_timeout", deserialize_with = "crate::config::millis::deserialize")]
    pub flush_timeout_ms: u64,
    pub kafka: KafkaConfig,
    pub outbox: OutboxConfig,
}

impl Default for PublishConfig {
    fn default() -> Self {
        PublishConfig {
            sink: SinkKind::Kafka,
            file: None,
            channel_capacity: 1024,
            max_buffered_events: 100_000,
            enqueue_timeout_ms: 1000,
            flush_timeout_ms: 10_000,
            kafka: KafkaConfig::default(),
            outbox: OutboxConfig::default(),
        }
    }
}

/// `[publish.outbox]`: where the Kafka sink keeps events until their delivery report (src/publish/outbox.rs).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxConfig {
    /// The redb file. Unset: kept in memory (same bound and order, but lost with the process).
    pub path: Option<PathBuf>,
    /// Bytes of pending events (key + payload + 8) above which new episodes and updates are refused;
    /// a `product.disappeared` of an accepted episode is always taken. Default 256 MiB.
    pub max_bytes: u64,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig { path: None, max_bytes: 256 << 20 }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// bootstrap.servers. Default "localhost:9092".
    pub brokers: String,
    /// Default "livesku.detections".
    pub topic: String,
    /// client.id. Default "livesku".
    pub client_id: String,
    /// compression.type: none, gzip, snappy or lz4 (the bundled librdkafka is built without zstd). Default lz4.
    pub compression: String,
    /// linger.ms: batching delay. Default 5.
    #[serde(alias = "linger", deserialize_with = "crate::config::millis::deserialize")]
    pub linger_ms: u64,
    /// Extra librdkafka properties, e.g. "security.protocol", "sasl.mechanism", "sasl.username",
    /// "sasl.password", "ssl.ca.location". Keys that livesku sets itself are rejected.
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "localhost:9092".into(),
            topic: "livesku.detections".into(),
            client_id: "livesku".into(),
            compression: "lz4".into(),
            linger_ms: 5,
            properties: BTreeMap::new(),
        }
    }
}

/// Set by livesku: idempotence and acks=all are the delivery guarantee, the rest have their own keys.
pub(crate) const RESERVED: &[(&str, &str)] = &[
    ("bootstrap.servers", "publish.kafka.brokers"),
    ("client.id", "publish.kafka.client_id"),
    ("compression.type", "publish.kafka.compression"),
    ("compression.codec", "publish.kafka.compression"),
    ("message.timeout.ms", "(always 0: the outbox keeps an event until it is delivered)"),
    ("linger.ms", "publish.kafka.linger_ms"),
    ("queue.buffering.max.messages", "publish.max_buffered_events"),
    ("enable.idempotence", "(always true)"),
    ("acks", "(always all)"),
];

fn invalid(key: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError { key: key.to_string(), problem: problem.into() }
}

impl PublishConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.sink == SinkKind::File && self.file.is_none() {
            return Err(invalid("publish.file", "required when publish.sink = \"file\""));
        }
        if !(1..=1_000_000).contains(&self.channel_capacity) {
            return Err(invalid("publish.channel_capacity", "must be between 1 and 1000000"));
        }
        // librdkafka's own limits for queue.buffering.max.messages.
        if !(1..=2_147_483_647).contains(&self.max_buffered_events) {
            return Err(invalid("publish.max_buffered_events", "must be between 1 and 2147483647"));
        }
        if self.flush_timeout_ms == 0 {
            return Err(invalid("publish.flush_timeout_ms", "must be at least 1"));
        }
        if self.sink == SinkKind::Kafka {
            self.kafka.validate()?;
            if self.outbox.max_bytes < 4096 {
                return Err(invalid("publish.outbox.max_bytes", "must be at least 4096"));
            }
            if self.outbox.path.as_ref().is_some_and(|p| p.is_dir()) {
                return Err(invalid("publish.outbox.path", "is a directory: name the outbox file in it"));
            }
        }
        Ok(())
    }
}

impl KafkaConfig {
    /// Client settings every livesku Kafka client shares (producer, admin, consumer): the extra (SASL/TLS)
    /// properties, the brokers and `client.id` = `client_id` + `suffix`.
    pub fn client_config(&self, suffix: &str) -> rdkafka::config::ClientConfig {
        let mut cc = rdkafka::config::ClientConfig::new();
        for (k, v) in &self.properties {
            cc.set(k, v);
        }
        cc.set("bootstrap.servers", &self.brokers).set("client.id", format!("{}{suffix}", self.client_id));
        cc
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.brokers.trim().is_empty() {
            return Err(invalid("publish.kafka.brokers", "must list at least one HOST:PORT"));
        }
        let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if self.topic.is_empty() || self.topic.len() > 249 || !self.topic.chars().all(legal) {
            return Err(invalid("publish.kafka.topic", "must be 1-249 characters of [a-zA-Z0-9._-]"));
        }
        if !matches!(self.compression.as_str(), "none" | "gzip" | "snappy" | "lz4") {
            return Err(invalid(
                "publish.kafka.compression",
                "must be none, gzip, snappy or lz4 (zstd is not built into the bundled librdkafka)",
            ));
        }
        for key in self.properties.keys() {
            if let Some((_, instead)) = RESERVED.iter().find(|(k, _)| k == key) {
                return Err(invalid(
                    &format!("publish.kafka.properties.\"{key}\""),
                    format!("set by livesku: use {instead}"),
                ));
            }
        }
        Ok(())
    }
}
