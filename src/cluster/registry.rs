//! The stream registry topic: key = stream id, value = [`StreamSpec`] (JSON), a tombstone (no value)
//! removes the stream. Writers are `POST/DELETE /streams` on any worker and `livesku streams`; readers are
//! the group members (src/cluster/member.rs), each for its own partitions.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::ClusterError;
use crate::publish::KafkaConfig;
use crate::service::StreamOptions;

/// What a registry record says about a stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamSpec {
    /// The source URI as given (secrets included: protect the topic with ACLs like the config file).
    pub uri: String,
    #[serde(default)]
    pub options: StreamOptions,
}

impl StreamSpec {
    pub fn parse(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("not a stream spec: {e}"))
    }
}

/// Java clients' partitioner, so a record of any client lands where livesku looks for it.
pub(crate) const PARTITIONER: &str = "murmur2_random";

/// Writes registry records, waiting for the broker's acknowledgement.
pub struct RegistryWriter {
    producer: FutureProducer,
    topic: String,
}

impl RegistryWriter {
    pub fn new(kafka: &KafkaConfig, topic: &str) -> Result<Self, ClusterError> {
        let producer = kafka
            .client_config("-registry")
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("partitioner", PARTITIONER)
            .set("message.timeout.ms", "15000")
            .create()?;
        Ok(RegistryWriter { producer, topic: topic.to_string() })
    }

    /// Registers (or replaces) a stream.
    pub async fn put(&self, id: &str, spec: &StreamSpec) -> Result<(), ClusterError> {
        let value = serde_json::to_vec(spec).map_err(|e| ClusterError::Encode(e.to_string()))?;
        self.send(id, Some(&value)).await
    }

    /// Writes the stream's tombstone.
    pub async fn remove(&self, id: &str) -> Result<(), ClusterError> {
        self.send(id, None).await
    }

    async fn send(&self, id: &str, value: Option<&[u8]>) -> Result<(), ClusterError> {
        let mut record: FutureRecord<'_, str, [u8]> = FutureRecord::to(&self.topic).key(id);
        if let Some(v) = value {
            record = record.payload(v);
        }
        self.producer.send(record, Duration::from_secs(5)).await.map(|_| ()).map_err(|(e, _)| ClusterError::Kafka(e))
    }
}

/// Reads `partitions` of `topic` (all when `None`) from the beginning up to their end as of now, calling
/// `each(partition, offset, key, value)` in offset order per partition.
pub(crate) fn read_to_end(
    kafka: &KafkaConfig,
    topic: &str,
    partitions: Option<&[i32]>,
    timeout: Duration,
    mut each: impl FnMut(i32, i64, &[u8], Option<&[u8]>),
) -> Result<(), ClusterError> {
    let consumer: BaseConsumer = kafka
        .client_config("-reader")
        .set("group.id", "livesku-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("fetch.wait.max.ms", "100")
        .create()?;
    let all: Vec<i32> = match partitions {
        Some(p) => p.to_vec(),
        None => {
            let md = consumer.fetch_metadata(Some(topic), timeout)?;
            let t = md.topics().iter().find(|t| t.name() == topic).ok_or_else(|| ClusterError::NoTopic(topic.to_string()))?;
            if t.partitions().is_empty() {
                return Err(ClusterError::NoTopic(topic.to_string()));
            }
            t.partitions().iter().map(|p| p.id()).collect()
        }
    };
    // The end of each partition as of now (an empty one still gets the quiet wait below).
    let mut left: BTreeMap<i32, i64> = BTreeMap::new();
    let mut tpl = TopicPartitionList::new();
    for p in &all {
        let (low, high) = consumer.fetch_watermarks(topic, *p, timeout)?;
        if high > low {
            left.insert(*p, high);
        }
        tpl.add_partition_offset(topic, *p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + timeout;
    // Up to the ends, then until the partitions stay quiet for a moment: reading only up to the reported
    // high watermark missed a stream's latest record on tansu (tests/cluster.rs), and the latest record is
    // the one that counts.
    let mut quiet_since: Option<Instant> = None;
    loop {
        if Instant::now() > deadline {
            return Err(ClusterError::Timeout(format!("reading {topic} to its end")));
        }
        if left.is_empty() && quiet_since.is_some_and(|t| t.elapsed() >= Duration::from_millis(300)) {
            return Ok(());
        }
        let Some(msg) = consumer.poll(Duration::from_millis(100)) else {
            quiet_since.get_or_insert_with(Instant::now);
            continue;
        };
        let msg = msg?;
        quiet_since = None;
        let (p, off) = (msg.partition(), msg.offset());
        each(p, off, msg.key().unwrap_or_default(), msg.payload());
        if left.get(&p).is_some_and(|end| off + 1 >= *end) {
            left.remove(&p);
        }
    }
}

/// The registry's current content: id -> spec (records that do not parse are reported and left out).
pub fn list(kafka: &KafkaConfig, topic: &str, timeout: Duration) -> Result<BTreeMap<String, StreamSpec>, ClusterError> {
    let mut out = BTreeMap::new();
    read_to_end(kafka, topic, None, timeout, |p, off, key, value| {
        let id = String::from_utf8_lossy(key).into_owned();
        match value.map(StreamSpec::parse) {
            None => {
                out.remove(&id);
            }
            Some(Ok(spec)) => {
                out.insert(id, spec);
            }
            Some(Err(e)) => tracing::warn!(topic, partition = p, offset = off, stream = %id, error = %e, "registry record skipped"),
        }
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_with_their_options_and_refuse_unknown_fields() {
        let s = StreamSpec::parse(br#"{"uri": "rtmp://h/live/k", "options": {"max_rate_hz": 0.5}}"#).unwrap();
        assert_eq!(s.options.max_rate_hz, Some(0.5));
        assert!(StreamSpec::parse(br#"{"uri": "rtmp://h/live/k", "colour": "red"}"#).unwrap_err().contains("colour"));
        assert!(StreamSpec::parse(b"not json").is_err());
    }
}
