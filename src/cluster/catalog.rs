//! Catalogue changes shared by every worker: key = product id, value = [`CatalogRecord`] (the product,
//! its embedding and the model version that made it), a tombstone removes the product. The worker that
//! takes `POST /gallery/products` embeds once and writes the records; every worker (not as a group: each
//! reads every partition) applies them to its own gallery. Where it got to is kept in the gallery directory
//! (`cluster-catalog.json`), so a worker that restarts, or starts later, catches up from there.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::{ClusterError, ClusterMetrics};
use crate::gallery::Product;
use crate::gallery::admin::GalleryControl;
use crate::gallery::build::{THUMBNAIL_KEY, THUMBS_DIR, thumbnail_name};
use crate::publish::KafkaConfig;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogRecord {
    /// The manifest version of the model that embedded the product: a worker running another refuses it.
    pub model_version: String,
    /// The worker that took the request.
    pub origin: String,
    pub product: Product,
    /// The embedding, little-endian f32, base64.
    pub vector: String,
    /// The gallery thumbnail (JPEG, base64), so every worker's dashboard shows the product.
    #[serde(default)]
    pub thumbnail: Option<String>,
}

impl CatalogRecord {
    fn vector(&self) -> Result<Vec<f32>, String> {
        crate::vector_b64::decode(&self.vector).map_err(|e| format!("vector: {e}"))
    }
}

/// Writes catalogue records (the API's gallery handlers).
pub struct CatalogWriter {
    producer: FutureProducer,
    topic: String,
    origin: String,
    model_version: String,
}

impl CatalogWriter {
    pub fn new(kafka: &KafkaConfig, topic: &str, origin: &str, model_version: &str) -> Result<Self, ClusterError> {
        let producer = kafka
            .client_config("-catalog")
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", "15000")
            .set("compression.type", "lz4")
            .create()?;
        Ok(CatalogWriter { producer, topic: topic.into(), origin: origin.into(), model_version: model_version.into() })
    }

    /// Publishes products this worker has just embedded (and added to its own gallery).
    pub async fn put(&self, gallery: &GalleryControl, items: &[(Product, Vec<f32>)]) -> Result<(), ClusterError> {
        for (product, vector) in items {
            let thumbnail = product
                .metadata
                .get(THUMBNAIL_KEY)
                .and_then(|v| v.as_str())
                .and_then(|name| std::fs::read(gallery.dir().join(THUMBS_DIR).join(name)).ok())
                .map(|b| B64.encode(b));
            let record = CatalogRecord {
                model_version: self.model_version.clone(),
                origin: self.origin.clone(),
                product: product.clone(),
                vector: crate::vector_b64::encode(vector),
                thumbnail,
            };
            let value = serde_json::to_vec(&record).map_err(|e| ClusterError::Encode(e.to_string()))?;
            let r = FutureRecord::to(&self.topic).key(product.product_id.as_str()).payload(&value);
            self.producer.send(r, Duration::from_secs(5)).await.map_err(|(e, _)| ClusterError::Kafka(e))?;
        }
        Ok(())
    }

    pub async fn remove(&self, product_id: &str) -> Result<(), ClusterError> {
        let r: FutureRecord<'_, str, [u8]> = FutureRecord::to(&self.topic).key(product_id);
        self.producer.send(r, Duration::from_secs(5)).await.map(|_| ()).map_err(|(e, _)| ClusterError::Kafka(e))
    }
}

const OFFSETS_FILE: &str = "cluster-catalog.json";

#[derive(Debug, Default, Serialize, Deserialize)]
struct Offsets {
    topic: String,
    /// partition -> next offset to read.
    next: BTreeMap<i32, i64>,
}

/// Applies every worker's catalogue records to this worker's gallery, from a thread of its own.
pub(crate) struct CatalogFollower {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl CatalogFollower {
    pub fn start(
        kafka: &KafkaConfig,
        topic: &str,
        model_version: &str,
        gallery: Arc<GalleryControl>,
        metrics: Arc<ClusterMetrics>,
    ) -> Result<Self, ClusterError> {
        let consumer: BaseConsumer = kafka
            .client_config("-catalog-reader")
            .set("group.id", "livesku-catalog-reader")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .create()?;
        let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        let parts: Vec<i32> = md.topics().iter().filter(|t| t.name() == topic).flat_map(|t| t.partitions().iter().map(|p| p.id())).collect();
        if parts.is_empty() {
            return Err(ClusterError::NoTopic(topic.to_string()));
        }
        let path = gallery.dir().join(OFFSETS_FILE);
        let offsets: Offsets = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .filter(|o: &Offsets| o.topic == topic)
            .unwrap_or_else(|| Offsets { topic: topic.to_string(), ..Default::default() });
        let mut tpl = TopicPartitionList::new();
        for p in &parts {
            let at = offsets.next.get(p).map_or(Offset::Beginning, |o| Offset::Offset(*o));
            tpl.add_partition_offset(topic, *p, at)?;
        }
        consumer.assign(&tpl)?;
        // The end of each partition that holds records (an unknown end is not waited for).
        let highs: BTreeMap<i32, i64> = parts
            .iter()
            .filter_map(|p| consumer.fetch_watermarks(topic, *p, Duration::from_secs(10)).ok().map(|(low, high)| (*p, low, high)))
            .filter(|(_, low, high)| high > low)
            .map(|(p, _, high)| (p, high))
            .collect();
        let mut reader =
            Reader { consumer, path, offsets, unsaved: 0, gallery, model_version: model_version.to_string(), metrics };
        reader.catch_up(&highs);
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::Builder::new().name("cluster-catalog".into()).spawn(move || {
            while !s.load(Ordering::Relaxed) {
                reader.poll(Duration::from_millis(200));
            }
            reader.save();
        })?;
        Ok(CatalogFollower { stop, thread: Some(thread) })
    }

    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The catalogue consumer and where it got to.
struct Reader {
    consumer: BaseConsumer,
    path: PathBuf,
    offsets: Offsets,
    /// Records applied since the offsets were last saved: they are saved when the topic goes quiet (or
    /// every 256 records), not per record.
    unsaved: usize,
    gallery: Arc<GalleryControl>,
    model_version: String,
    metrics: Arc<ClusterMetrics>,
}

impl Reader {
    /// Before the worker joins the group and runs streams: applies the records up to the topic's end as of
    /// start (`highs`), so that a worker that starts late does not match with yesterday's gallery. Ends
    /// at the end, after 2 s without a record (a compacted-away tail), or after 30 s (with a warning).
    fn catch_up(&mut self, highs: &BTreeMap<i32, i64>) {
        let started = Instant::now();
        let mut quiet_since = Instant::now();
        let behind = |o: &Offsets| highs.iter().filter(|(p, h)| o.next.get(p).copied().unwrap_or(0) < **h).count();
        while behind(&self.offsets) > 0 {
            if self.poll(Duration::from_millis(200)) {
                quiet_since = Instant::now();
            } else if quiet_since.elapsed() >= Duration::from_secs(2) {
                break;
            }
            if started.elapsed() >= Duration::from_secs(30) {
                tracing::warn!(partitions_behind = behind(&self.offsets), "catalogue not caught up after 30 s: streams start on the gallery as it is, the rest follows");
                break;
            }
        }
        self.save();
        tracing::info!(took_ms = started.elapsed().as_millis() as u64, applied = self.metrics.catalog_applied.load(Ordering::Relaxed), "catalogue caught up");
    }

    /// Reads and applies at most one record; `false` when none came within `timeout`.
    fn poll(&mut self, timeout: Duration) -> bool {
        let msg = match self.consumer.poll(timeout) {
            None => {
                self.save();
                return false;
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "catalogue topic read failed (retrying)");
                return false;
            }
            Some(Ok(m)) => m,
        };
        let id = String::from_utf8_lossy(msg.key().unwrap_or_default()).into_owned();
        let (p, off) = (msg.partition(), msg.offset());
        match apply(&self.gallery, &self.model_version, &id, msg.payload()) {
            Ok(true) => {
                self.metrics.catalog_applied.fetch_add(1, Ordering::Relaxed);
            }
            Ok(false) => {}
            Err(reason) => {
                self.metrics.catalog_refused.fetch_add(1, Ordering::Relaxed);
                tracing::error!(product = %id, partition = p, offset = off, %reason, "catalogue record refused");
            }
        }
        self.offsets.next.insert(p, off + 1);
        self.unsaved += 1;
        if self.unsaved >= 256 {
            self.save();
        }
        true
    }

    fn save(&mut self) {
        if self.unsaved > 0 {
            save(&self.path, &self.offsets);
            self.unsaved = 0;
        }
    }
}

fn save(path: &PathBuf, offsets: &Offsets) {
    let tmp = path.with_extension("json.tmp");
    let ok = serde_json::to_vec(offsets).ok().is_some_and(|b| std::fs::write(&tmp, b).is_ok() && std::fs::rename(&tmp, path).is_ok());
    if !ok {
        tracing::warn!(path = %path.display(), "catalogue offsets not saved: a restart reads those records again (harmless)");
    }
}

/// Applies one record; `Ok(false)` when the gallery already has it as recorded.
fn apply(gallery: &GalleryControl, model_version: &str, id: &str, value: Option<&[u8]>) -> Result<bool, String> {
    let Some(value) = value else {
        return gallery.remove(&[id.to_string()]).map(|missing| missing.is_empty()).map_err(|e| e.to_string());
    };
    let record: CatalogRecord = serde_json::from_slice(value).map_err(|e| format!("not a catalogue record: {e}"))?;
    if record.model_version != model_version {
        return Err(format!(
            "embedded by model {} (on worker {}), this worker runs {model_version}: run every worker on the same model",
            record.model_version, record.origin
        ));
    }
    if record.product.product_id != id {
        return Err(format!("key {id:?} does not match product_id {:?}", record.product.product_id));
    }
    let vector = record.vector()?;
    if gallery.has(id, &vector) {
        return Ok(false);
    }
    if let Some(thumb) = &record.thumbnail {
        let bytes = B64.decode(thumb).map_err(|e| format!("thumbnail: {e}"))?;
        let dir = gallery.dir().join(THUMBS_DIR);
        let written = std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(dir.join(thumbnail_name(id)), bytes));
        if let Err(e) = written {
            tracing::warn!(product = %id, error = %e, "thumbnail not written");
        }
    }
    let mut product = record.product;
    // Only the name this worker serves (build::thumbnail_name) is kept.
    if product.metadata.contains_key(THUMBNAIL_KEY) {
        product.metadata.insert(THUMBNAIL_KEY.into(), thumbnail_name(id).into());
    }
    gallery.insert(&[(product, vector)]).map(|_| true).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_carries_its_vector_exactly() {
        let v = vec![0.25f32, -1.5, 3.0e-7];
        let record = CatalogRecord {
            model_version: "m@1".into(),
            origin: "w1".into(),
            product: Product { row: 0, product_id: "p".into(), title: "P".into(), metadata: Default::default() },
            vector: crate::vector_b64::encode(&v),
            thumbnail: None,
        };
        let back: CatalogRecord = serde_json::from_slice(&serde_json::to_vec(&record).unwrap()).unwrap();
        assert_eq!(back.vector().unwrap(), v);
        let bad = CatalogRecord { vector: B64.encode([1u8, 2, 3]), ..back };
        assert!(bad.vector().unwrap_err().contains("multiple of 4"));
    }
}
