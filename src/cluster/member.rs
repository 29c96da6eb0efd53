//! The group member: one consumer of the stream registry in the workers' consumer group. The group
//! protocol (cooperative-sticky, so a join or leave moves only the partitions it must) decides which
//! registry partitions this worker owns; it runs exactly the streams whose latest record in those
//! partitions is a spec. Offsets are never committed: a partition newly assigned is read from its
//! beginning, and its streams start once the reader has reached the partition's end as of the assignment
//! (so a stream added and removed long ago never starts for a moment).
//!
//! "Never two owners" rests on the revoke callback: librdkafka gives a partition up only after
//! `pre_rebalance` returns, and that stops the partition's streams first (closing their episodes). A worker
//! that dies stops heartbeating; its partitions move after `session_timeout_ms`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;
use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::TopicPartitionList;

use super::handover::{EpisodeState, Handover};
use super::registry::{StreamSpec, read_to_end};
use super::{ClusterConfig, ClusterError, ClusterMetrics};
use crate::event::DetectionEvent;
use crate::publish::KafkaConfig;
use crate::service::Service;

/// How long a revoke waits for a stream's last events (its episode ends) before letting the partition go.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(8);

/// One owned registry partition.
#[derive(Default)]
struct Part {
    /// Latest spec per stream id read so far (tombstones remove).
    specs: BTreeMap<String, StreamSpec>,
    /// The partition's end as of its assignment; `None` once read up to it.
    catch_up_to: Option<i64>,
    /// Streams started here, with the spec they run.
    running: BTreeMap<String, StreamSpec>,
    /// The episodes records of the partition as of its assignment (what the previous owners left), taken
    /// by each stream as it starts here.
    previous: BTreeMap<String, EpisodeState>,
}

/// What the member thread and the rebalance callbacks share.
pub(crate) struct Owner {
    service: Arc<Service>,
    runtime: tokio::runtime::Handle,
    handover: Arc<Handover>,
    publish: Arc<dyn Fn(DetectionEvent) + Send + Sync>,
    kafka: KafkaConfig,
    cfg: ClusterConfig,
    parts: Mutex<BTreeMap<i32, Part>>,
    metrics: Arc<ClusterMetrics>,
}

struct Context {
    owner: Arc<Owner>,
}

impl ClientContext for Context {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(%error, reason, "cluster registry client error (retrying)");
    }
}

fn partitions(tpl: &TopicPartitionList) -> Vec<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            self.owner.revoke(&partitions(tpl));
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => self.owner.assigned(consumer, &partitions(tpl)),
            Rebalance::Error(e) => tracing::error!(error = %e, "cluster rebalance failed"),
            Rebalance::Revoke(_) => {}
        }
    }
}

pub(crate) struct Member {
    pub owner: Arc<Owner>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Member {
    pub fn start(
        cfg: &ClusterConfig,
        kafka: &KafkaConfig,
        service: Arc<Service>,
        handover: Arc<Handover>,
        publish: Arc<dyn Fn(DetectionEvent) + Send + Sync>,
        metrics: Arc<ClusterMetrics>,
    ) -> Result<Member, ClusterError> {
        let owner = Arc::new(Owner {
            service,
            runtime: tokio::runtime::Handle::current(),
            handover,
            publish,
            kafka: kafka.clone(),
            cfg: cfg.clone(),
            parts: Mutex::default(),
            metrics,
        });
        let consumer: BaseConsumer<Context> = kafka
            .client_config("-member")
            .set("group.id", &cfg.group_id)
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", cfg.session_timeout_ms.to_string())
            .set("heartbeat.interval.ms", cfg.heartbeat_interval_ms.to_string())
            .set("enable.partition.eof", "false")
            // A partition taken over is read at once (the default waits up to 500 ms per fetch).
            .set("fetch.wait.max.ms", "100")
            .create_with_context(Context { owner: owner.clone() })?;
        consumer.subscribe(&[&cfg.streams_topic])?;
        let stop = Arc::new(AtomicBool::new(false));
        let (o, s) = (owner.clone(), stop.clone());
        let thread = std::thread::Builder::new().name("cluster-member".into()).spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match consumer.poll(Duration::from_millis(200)) {
                    Some(Ok(m)) => o.record(m.partition(), m.offset(), m.key().unwrap_or_default(), m.payload()),
                    Some(Err(e)) => tracing::warn!(error = %e, "cluster registry read failed (retrying)"),
                    None => {}
                }
            }
            // Leaving the group gives the partitions up (the streams are stopped already).
            consumer.unsubscribe();
            let _ = consumer.poll(Duration::from_millis(100));
        })?;
        Ok(Member { owner, stop, thread: Some(thread) })
    }

    /// Leaves the group (after the service has stopped every stream and closed its episodes).
    pub fn leave(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Owner {
    /// Partitions owned and streams run here, for answers and metrics.
    pub fn owned(&self) -> (Vec<i32>, Vec<String>) {
        let parts = self.parts.lock();
        (parts.keys().copied().collect(), parts.values().flat_map(|p| p.running.keys().cloned()).collect())
    }

    fn assigned(&self, consumer: &BaseConsumer<Context>, ps: &[i32]) {
        let topic = &self.cfg.streams_topic;
        // What the previous owners left, read once for all the new partitions: a previous owner that
        // handed over cleanly flushed its records before it gave the partition up.
        let mut previous: BTreeMap<i32, BTreeMap<String, EpisodeState>> = BTreeMap::new();
        let read = read_to_end(&self.kafka, &self.cfg.episodes_topic, Some(ps), Duration::from_secs(15), |p, _, key, value| {
            let id = String::from_utf8_lossy(key).into_owned();
            let records = previous.entry(p).or_default();
            match value.map(serde_json::from_slice::<EpisodeState>) {
                Some(Ok(s)) => {
                    records.insert(id, s);
                }
                _ => {
                    records.remove(&id);
                }
            }
        });
        if let Err(e) = read {
            tracing::error!(partitions = ?ps, error = %e, "episodes topic unreadable: open episodes of a previous owner are not ended");
        }
        let mut ready = Vec::new();
        {
            let mut parts = self.parts.lock();
            for p in ps {
                let end = match consumer.fetch_watermarks(topic, *p, Duration::from_secs(10)) {
                    Ok((low, high)) => (high > low).then_some(high),
                    Err(e) => {
                        // Without the end the partition is treated as read once its first record arrives.
                        tracing::warn!(partition = p, error = %e, "registry partition end unknown");
                        None
                    }
                };
                let previous = previous.remove(p).unwrap_or_default();
                parts.insert(*p, Part { catch_up_to: end, previous, ..Part::default() });
                if end.is_none() {
                    ready.push(*p);
                }
            }
        }
        tracing::info!(partitions = ?ps, "registry partitions assigned");
        self.metrics.rebalances.fetch_add(1, Ordering::Relaxed);
        for p in ready {
            self.reconcile(p);
        }
    }

    fn record(&self, p: i32, offset: i64, key: &[u8], value: Option<&[u8]>) {
        let id = String::from_utf8_lossy(key).into_owned();
        let caught_up = {
            let mut parts = self.parts.lock();
            let Some(part) = parts.get_mut(&p) else { return };
            match value.map(StreamSpec::parse) {
                None => {
                    part.specs.remove(&id);
                }
                Some(Ok(spec)) if super::plain_id(&id) => {
                    part.specs.insert(id, spec);
                }
                Some(Ok(_)) => tracing::error!(partition = p, offset, stream = %id, "registry record skipped: the stream id is not plain (A-Z a-z 0-9 - _ ., at most 64)"),
                Some(Err(e)) => tracing::error!(partition = p, offset, stream = %id, error = %e, "registry record skipped"),
            }
            if part.catch_up_to.is_some_and(|end| offset + 1 >= end) {
                part.catch_up_to = None;
            }
            part.catch_up_to.is_none()
        };
        if caught_up {
            self.reconcile(p);
        }
    }

    /// Starts and stops the partition's streams to match its specs.
    fn reconcile(&self, p: i32) {
        let (stop, start) = {
            let parts = self.parts.lock();
            let Some(part) = parts.get(&p) else { return };
            let stop: Vec<String> =
                part.running.iter().filter(|(id, spec)| part.specs.get(*id) != Some(*spec)).map(|(id, _)| id.clone()).collect();
            let start: Vec<(String, StreamSpec)> = part
                .specs
                .iter()
                .filter(|(id, spec)| part.running.get(*id) != Some(*spec) || stop.contains(id))
                .map(|(id, s)| (id.clone(), s.clone()))
                .collect();
            (stop, start)
        };
        for id in &stop {
            self.stop_stream(p, id);
        }
        for (id, spec) in start {
            let previous = self.parts.lock().get_mut(&p).and_then(|part| part.previous.remove(&id));
            for end in self.handover.arrive(&id, previous) {
                (self.publish)(end);
            }
            let _rt = self.runtime.enter();
            match self.service.add_stream_with(Some(&id), &spec.uri, &spec.options) {
                Ok(_) => {
                    tracing::info!(stream = %id, partition = p, "stream started (registry)");
                    self.metrics.started.fetch_add(1, Ordering::Relaxed);
                }
                // Still marked running: a bad spec is reported once, not retried at every record.
                Err(e) => tracing::error!(stream = %id, partition = p, error = %e, "registry stream cannot start: fix its spec with `livesku streams add`"),
            }
            if let Some(part) = self.parts.lock().get_mut(&p) {
                part.running.insert(id, spec);
            }
        }
    }

    /// Stops one stream of partition `p` (unregistered, or its spec changed).
    fn stop_stream(&self, p: i32, id: &str) {
        match self.runtime.block_on(self.service.remove_stream_drained(id, DRAIN_TIMEOUT)) {
            Ok(_) => tracing::info!(stream = %id, partition = p, "stream stopped (registry)"),
            Err(e) => tracing::warn!(stream = %id, partition = p, error = %e, "stream stop"),
        }
        self.metrics.stopped.fetch_add(1, Ordering::Relaxed);
        if let Some(part) = self.parts.lock().get_mut(&p) {
            part.running.remove(id);
        }
    }

    /// The partitions go to other workers: their streams stop here first.
    fn revoke(&self, ps: &[i32]) {
        tracing::info!(partitions = ?ps, "registry partitions revoked");
        let ids: Vec<(i32, String)> = {
            let parts = self.parts.lock();
            ps.iter().flat_map(|p| parts.get(p).into_iter().flat_map(move |part| part.running.keys().map(move |id| (*p, id.clone())))).collect()
        };
        for (_, id) in &ids {
            self.handover.leaving(id);
        }
        let stops = ids.iter().map(|(_, id)| self.service.remove_stream_drained(id, DRAIN_TIMEOUT));
        for (r, (_, id)) in self.runtime.block_on(futures::future::join_all(stops)).into_iter().zip(&ids) {
            if let Err(e) = r {
                tracing::warn!(stream = %id, error = %e, "stream stop on revoke");
            }
        }
        let names: Vec<String> = ids.into_iter().map(|(_, id)| id).collect();
        self.handover.left(&names, Duration::from_secs(5));
        self.metrics.stopped.fetch_add(names.len() as u64, Ordering::Relaxed);
        let mut parts = self.parts.lock();
        for p in ps {
            parts.remove(p);
        }
    }

    /// Shutdown: every stream here is handed over (the caller stops them through the service).
    pub fn hand_over_all(&self) {
        let (_, ids) = self.owned();
        for id in &ids {
            self.handover.leaving(id);
        }
    }

    /// After shutdown: flushes the episodes records so that the next owners read the handover.
    pub fn handed_over(&self) {
        let (_, ids) = self.owned();
        self.handover.left(&ids, Duration::from_secs(5));
    }
}
