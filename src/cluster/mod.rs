//! Scale-out on Kafka: identical workers share the streams and the catalogue through topics, with the
//! consumer-group protocol as the only coordinator (docs/deploy.md).
//!
//! ```text
//!  livesku.streams (registry, compacted)  --group livesku-workers-->  member: runs the streams of its partitions
//!  livesku.episodes (compacted)           <-- each stream's owner writes its open episodes; a new owner reads them
//!  livesku.catalog (compacted)            --every worker reads all-->  catalogue follower: gallery inserts
//! ```
//!
//! [`Cluster`] holds the three clients; the named handle shared with the event path is [`Handover`].

pub mod catalog;
pub mod config;
pub mod handover;
mod member;
pub mod registry;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

pub use catalog::{CatalogRecord, CatalogWriter};
pub use config::{ClusterConfig, plain_id};
pub use handover::{EpisodeState, Handover};
pub use registry::{RegistryWriter, StreamSpec};

use crate::event::DetectionEvent;
use crate::publish::KafkaConfig;
use crate::service::Service;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("topic {0} does not exist (or has no partitions): start a worker once, or create it (docs/deploy.md)")]
    NoTopic(String),
    #[error("timed out {0}")]
    Timeout(String),
    #[error("cannot encode a record: {0}")]
    Encode(String),
    #[error("{0}")]
    Config(String),
    #[error("cannot start a cluster thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// Counters for `/metrics` (docs/metrics.md).
#[derive(Debug, Default)]
pub struct ClusterMetrics {
    pub rebalances: AtomicU64,
    pub started: AtomicU64,
    pub stopped: AtomicU64,
    pub catalog_applied: AtomicU64,
    pub catalog_refused: AtomicU64,
}

/// A worker's membership: the group member, the catalogue follower and the writers the API uses.
pub struct Cluster {
    pub worker: String,
    pub group: String,
    pub registry: RegistryWriter,
    pub catalog: CatalogWriter,
    pub metrics: Arc<ClusterMetrics>,
    member: parking_lot::Mutex<Option<member::Member>>,
    follower: parking_lot::Mutex<Option<catalog::CatalogFollower>>,
}

impl Cluster {
    /// Creates the topics if missing and joins the group. Must run on a tokio runtime (the member starts
    /// streams on it). `publish` is the event path (with `handover.on_event` in it): ends of episodes a dead
    /// owner left open go there.
    pub fn start(
        cfg: &ClusterConfig,
        publish_kafka: &KafkaConfig,
        service: Arc<Service>,
        handover: Arc<Handover>,
        publish: Arc<dyn Fn(DetectionEvent) + Send + Sync>,
    ) -> Result<Cluster, ClusterError> {
        let kafka = cfg.kafka(publish_kafka);
        ensure_topics(cfg, &kafka)?;
        let worker = cfg.worker();
        let metrics = Arc::new(ClusterMetrics::default());
        let model_version = service.gallery.model_version().to_string();
        let follower =
            catalog::CatalogFollower::start(&kafka, &cfg.catalog_topic, &model_version, service.gallery.clone(), metrics.clone())?;
        let member = member::Member::start(cfg, &kafka, service, handover, publish, metrics.clone())?;
        tracing::info!(%worker, group = %cfg.group_id, topic = %cfg.streams_topic, "joined the worker group");
        Ok(Cluster {
            registry: RegistryWriter::new(&kafka, &cfg.streams_topic)?,
            catalog: CatalogWriter::new(&kafka, &cfg.catalog_topic, &worker, &model_version)?,
            worker,
            group: cfg.group_id.clone(),
            metrics,
            member: parking_lot::Mutex::new(Some(member)),
            follower: parking_lot::Mutex::new(Some(follower)),
        })
    }

    /// Registry partitions owned and streams run by this worker now.
    pub fn owned(&self) -> (Vec<i32>, Vec<String>) {
        self.member.lock().as_ref().map(|m| m.owner.owned()).unwrap_or_default()
    }

    /// Before the service stops its streams on shutdown: their episode ends are handover ends.
    pub fn prepare_leave(&self) {
        if let Some(m) = self.member.lock().as_ref() {
            m.owner.hand_over_all();
        }
    }

    /// After the service has stopped (episodes closed): writes the handover records and leaves the group.
    /// Blocking.
    pub fn leave(&self) {
        let member = self.member.lock().take();
        if let Some(m) = member {
            m.owner.handed_over();
            m.leave();
        }
        let follower = self.follower.lock().take();
        if let Some(f) = follower {
            f.stop();
        }
    }
}

/// Creates the cluster topics that are missing: registry and episodes with `partitions` each and
/// compaction, the catalogue compacted; refuses registry/episodes topics of different partition counts.
pub fn ensure_topics(cfg: &ClusterConfig, kafka: &KafkaConfig) -> Result<(), ClusterError> {
    let admin: AdminClient<DefaultClientContext> = kafka.client_config("-admin").create()?;
    let timeout = Duration::from_secs(10);
    let compact = [("cleanup.policy", "compact")];
    let topics: Vec<NewTopic<'_>> = [&cfg.streams_topic, &cfg.episodes_topic, &cfg.catalog_topic]
        .into_iter()
        .map(|t| {
            let mut n = NewTopic::new(t, cfg.partitions, TopicReplication::Fixed(cfg.replication));
            for (k, v) in compact {
                n = n.set(k, v);
            }
            n
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(timeout)).request_timeout(Some(timeout));
    for r in futures::executor::block_on(admin.create_topics(&topics, &opts))? {
        match r {
            Ok(t) => tracing::info!(topic = %t, partitions = cfg.partitions, "cluster topic created"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((t, code)) => {
                tracing::warn!(topic = %t, ?code, "cluster topic creation failed");
                return Err(ClusterError::Kafka(KafkaError::AdminOp(code)));
            }
        }
    }
    let md = admin.inner().fetch_metadata(None, timeout)?;
    let count = |name: &str| md.topics().iter().find(|t| t.name() == name).map_or(0, |t| t.partitions().len());
    let (s, e) = (count(&cfg.streams_topic), count(&cfg.episodes_topic));
    if s != e {
        return Err(ClusterError::Config(format!(
            "{} has {s} partitions and {} has {e}: they must be equal (a stream's records share a partition number)",
            cfg.streams_topic, cfg.episodes_topic
        )));
    }
    Ok(())
}
