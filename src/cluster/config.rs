//! `[cluster]`: a group of identical workers sharing streams and catalogue through Kafka (src/cluster).

use serde::Deserialize;

use crate::config::ConfigError;
use crate::publish::KafkaConfig;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// Join the worker group: streams come from `streams_topic`, not from `[[streams]]` or local API calls.
    pub enabled: bool,
    /// This worker's stable name, in events (`worker`), metrics and answers. `LIVESKU_WORKER_ID` overrides
    /// it; unset, `HOST/PID` (not stable across restarts: set it in a deployment).
    pub worker_id: Option<String>,
    /// bootstrap.servers of the cluster topics. Default: `publish.kafka.brokers`. Security properties are
    /// `publish.kafka.properties`.
    pub brokers: Option<String>,
    /// The consumer group the workers form on `streams_topic`. Default "livesku-workers".
    pub group_id: String,
    /// Stream registry: key = stream id, value = its spec (JSON), a tombstone removes it. Default "livesku.streams".
    pub streams_topic: String,
    /// Open episodes per stream, written by the stream's owner (key = stream id). Default "livesku.episodes".
    pub episodes_topic: String,
    /// Catalogue changes with their embeddings, read by every worker. Default "livesku.catalog".
    pub catalog_topic: String,
    /// Partitions of the registry and episodes topics when livesku creates them (they must be equal: a
    /// stream's registry and episode records share a partition number). Default 24.
    pub partitions: i32,
    /// Replication factor of the topics livesku creates. Default 1.
    pub replication: i32,
    /// A worker that stops heartbeating loses its streams after this long. Default 10000.
    pub session_timeout_ms: u64,
    /// Default 3000.
    pub heartbeat_interval_ms: u64,
    /// A product that was on screen when its stream changed worker, seen again within this many ms on the
    /// new worker: its `product.appeared` says `start_reason = "handover"`. Default 30000.
    pub handover_window_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            enabled: false,
            worker_id: None,
            brokers: None,
            group_id: "livesku-workers".into(),
            streams_topic: "livesku.streams".into(),
            episodes_topic: "livesku.episodes".into(),
            catalog_topic: "livesku.catalog".into(),
            partitions: 24,
            replication: 1,
            session_timeout_ms: 10_000,
            heartbeat_interval_ms: 3_000,
            handover_window_ms: 30_000,
        }
    }
}

fn invalid(key: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError { key: key.to_string(), problem: problem.into() }
}

/// Stream ids and worker ids reach URLs, metric labels and Kafka keys: plain characters only.
pub fn plain_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !id.starts_with('.')
}

impl ClusterConfig {
    /// The worker id in force (environment, then file, then `HOST/PID`).
    pub fn worker(&self) -> String {
        std::env::var("LIVESKU_WORKER_ID")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .or_else(|| self.worker_id.clone())
            .unwrap_or_else(crate::event::EventContext::default_worker)
    }

    /// The Kafka client settings of the cluster topics: `publish.kafka`'s, with `brokers` if set.
    pub fn kafka(&self, publish: &KafkaConfig) -> KafkaConfig {
        let mut k = publish.clone();
        if let Some(b) = &self.brokers {
            k.brokers = b.clone();
        }
        k.client_id = format!("{}-cluster", publish.client_id);
        k
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let from_env = std::env::var("LIVESKU_WORKER_ID").ok().filter(|s| !s.trim().is_empty());
        if let Some(id) = from_env.as_deref().map(str::trim).or(self.worker_id.as_deref()) {
            let key = if from_env.is_some() { "LIVESKU_WORKER_ID" } else { "cluster.worker_id" };
            if !plain_id(id) {
                return Err(invalid(key, format!("{id:?}: 1 to 64 characters of A-Z a-z 0-9 - _ . (not starting with a dot)")));
            }
        }
        if self.brokers.as_deref().is_some_and(|b| b.trim().is_empty()) {
            return Err(invalid("cluster.brokers", "must list at least one HOST:PORT (or leave it out for publish.kafka.brokers)"));
        }
        let legal = |t: &str| !t.is_empty() && t.len() <= 249 && t.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        for (key, t) in [
            ("cluster.streams_topic", &self.streams_topic),
            ("cluster.episodes_topic", &self.episodes_topic),
            ("cluster.catalog_topic", &self.catalog_topic),
        ] {
            if !legal(t) {
                return Err(invalid(key, "must be 1-249 characters of [a-zA-Z0-9._-]"));
            }
        }
        if self.group_id.trim().is_empty() {
            return Err(invalid("cluster.group_id", "must not be empty"));
        }
        if !(1..=10_000).contains(&self.partitions) {
            return Err(invalid("cluster.partitions", "must be between 1 and 10000"));
        }
        if !(1..=32).contains(&self.replication) {
            return Err(invalid("cluster.replication", "must be between 1 and 32"));
        }
        if !(1_000..=3_600_000).contains(&self.session_timeout_ms) {
            return Err(invalid("cluster.session_timeout_ms", "must be between 1000 and 3600000"));
        }
        if self.heartbeat_interval_ms == 0 || self.heartbeat_interval_ms.saturating_mul(3) > self.session_timeout_ms {
            return Err(invalid("cluster.heartbeat_interval_ms", "must be positive and at most a third of cluster.session_timeout_ms"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_must_fit_the_session() {
        let cfg = ClusterConfig { heartbeat_interval_ms: 5_000, ..Default::default() };
        assert_eq!(cfg.validate().unwrap_err().key, "cluster.heartbeat_interval_ms");
        assert!(ClusterConfig::default().validate().is_ok());
    }

    #[test]
    fn worker_ids_are_plain() {
        let cfg = ClusterConfig { worker_id: Some("a b".into()), ..Default::default() };
        assert_eq!(cfg.validate().unwrap_err().key, "cluster.worker_id");
        assert!(plain_id("worker-1.eu"));
    }
}
