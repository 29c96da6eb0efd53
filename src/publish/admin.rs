//! Creating the events topic if it is missing (tests, the demo, first deployment).

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;

use super::PublishError;
use super::config::KafkaConfig;

/// Creates `cfg.topic` with `partitions` partitions and replication factor `replication` unless it
/// exists. Uses the same brokers and extra (SASL/TLS) properties as the producer. Returns whether it
/// created the topic.
pub fn ensure_topic(
    cfg: &KafkaConfig,
    partitions: i32,
    replication: i32,
    timeout: Duration,
) -> Result<bool, PublishError> {
    let admin: AdminClient<DefaultClientContext> = cfg.client_config("-admin").create()?;
    let topic = NewTopic::new(&cfg.topic, partitions, TopicReplication::Fixed(replication));
    let opts = AdminOptions::new().operation_timeout(Some(timeout)).request_timeout(Some(timeout));
    let results = futures::executor::block_on(admin.create_topics([&topic], &opts))?;
    // One topic asked for: one result.
    match results.into_iter().next() {
        Some(Ok(_)) => Ok(true),
        Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) | None => Ok(false),
        Some(Err((name, code))) => {
            tracing::warn!(topic = %name, ?code, "topic creation failed");
            Err(PublishError::Kafka(rdkafka::error::KafkaError::AdminOp(code)))
        }
    }
}
