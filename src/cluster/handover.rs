//! Episodes across a change of owner. The owner of a stream writes the stream's open episodes to the
//! episodes topic (key = stream id, compacted) whenever they change, and marks what it hands over:
//!
//! - Leaving (a rebalance moves the stream away, or SIGTERM): the stream stops, its open episodes end with
//!   `product.disappeared` + `end_reason: "handover"`, and the record lists them as handed over.
//! - Dead owner (SIGKILL): the new owner reads the record and ends each episode still open there itself,
//!   `end_reason: "handover"`, with the id a restart of the dead worker would give that end
//!   ([`crate::event::restart_end_id`]), so consumers dedupe the two.
//! - Arriving: a product of the handed-over set that appears again within `handover_window_ms` on the new
//!   owner says `start_reason: "handover"` and `continues: <episode_id>`.
//!
//! Consumers therefore always see each episode end, and can join an episode with its continuation.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer, DefaultProducerContext};
use serde::{Deserialize, Serialize};

use super::ClusterError;
use super::registry::PARTITIONER;
use crate::event::DetectionEvent;
use crate::publish::KafkaConfig;

/// The episodes topic's record for one stream.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct EpisodeState {
    /// The worker that wrote it (the stream's owner then).
    pub worker: String,
    /// The latest event of each open episode.
    pub open: Vec<DetectionEvent>,
    /// Episodes the owner ended because it handed the stream over (product id, episode id).
    pub handed_over: Vec<(String, String)>,
    pub at: String,
}

#[derive(Default)]
struct Books {
    /// Streams this worker is handing away: their ends are handover ends.
    leaving: HashSet<String>,
    /// Per stream: episode id -> its latest event.
    open: HashMap<String, BTreeMap<String, DetectionEvent>>,
    handed_over: HashMap<String, Vec<(String, String)>>,
    /// Per stream that arrived here: when, and product -> the episode it continues.
    arriving: HashMap<String, (Instant, HashMap<String, String>)>,
}

/// The named handle between the matcher's event path (which calls [`Handover::on_event`] for every event)
/// and the group member (which calls `leaving`/`arrive`). Created by the cluster at start.
pub struct Handover {
    worker: String,
    window: Duration,
    books: Mutex<Books>,
    producer: ThreadedProducer<DefaultProducerContext>,
    topic: String,
}

impl Handover {
    pub fn new(kafka: &KafkaConfig, topic: &str, worker: &str, window: Duration) -> Result<Self, ClusterError> {
        let producer = kafka
            .client_config("-episodes")
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("partitioner", PARTITIONER)
            .set("linger.ms", "5")
            .create()?;
        Ok(Handover { worker: worker.to_string(), window, books: Mutex::default(), producer, topic: topic.to_string() })
    }

    /// Every event passes here before the sink: marks handover ends and continuations, and records the
    /// stream's open episodes.
    pub fn on_event(&self, ev: &mut DetectionEvent) {
        let mut b = self.books.lock();
        let stream = ev.stream_id.clone();
        match ev.event_type.as_str() {
            "product.disappeared" => {
                if b.leaving.contains(&stream) && ev.end_reason.is_none() {
                    ev.end_reason = Some("handover".into());
                    b.handed_over.entry(stream.clone()).or_default().push((ev.product_id.clone(), ev.episode_id.clone()));
                }
                if let Some(open) = b.open.get_mut(&stream) {
                    open.remove(&ev.episode_id);
                }
            }
            kind => {
                if kind == "product.appeared"
                    && let Some((since, products)) = b.arriving.get_mut(&stream)
                    && since.elapsed() <= self.window
                    && let Some(previous) = products.remove(&ev.product_id)
                {
                    ev.start_reason = Some("handover".into());
                    ev.continues = Some(previous);
                }
                b.open.entry(stream.clone()).or_default().insert(ev.episode_id.clone(), ev.clone());
            }
        }
        self.write(&b, &stream);
    }

    fn write(&self, b: &Books, stream: &str) {
        let state = EpisodeState {
            worker: self.worker.clone(),
            open: b.open.get(stream).map(|m| m.values().cloned().collect()).unwrap_or_default(),
            handed_over: b.handed_over.get(stream).cloned().unwrap_or_default(),
            at: crate::event::utc_now(),
        };
        let value = serde_json::to_vec(&state).unwrap_or_default();
        let record = BaseRecord::<str, [u8]>::to(&self.topic).key(stream).payload(&value);
        if let Err((e, _)) = self.producer.send(record) {
            tracing::warn!(%stream, error = %e, "episodes record not written: a takeover may miss this stream's open episodes");
        }
    }

    /// The stream is about to be stopped here for another worker to take over.
    pub fn leaving(&self, stream: &str) {
        let mut b = self.books.lock();
        b.leaving.insert(stream.to_string());
        b.handed_over.remove(stream);
    }

    /// The stream's ends are all out: its record is flushed so that the next owner reads it.
    pub fn left(&self, streams: &[String], timeout: Duration) {
        if let Err(e) = self.producer.flush(timeout) {
            tracing::warn!(error = %e, "episodes records not flushed before the handover");
        }
        let mut b = self.books.lock();
        for s in streams {
            b.leaving.remove(s);
            b.open.remove(s);
            b.handed_over.remove(s);
            b.arriving.remove(s);
        }
    }

    /// The stream arrives here; `previous` is its episodes record, if any. Returns the ends of episodes a
    /// dead owner left open (to publish before the stream starts) and records what may continue.
    pub fn arrive(&self, stream: &str, previous: Option<EpisodeState>) -> Vec<DetectionEvent> {
        let Some(prev) = previous else { return Vec::new() };
        let mut continuing: HashMap<String, String> = prev.handed_over.iter().cloned().collect();
        let ends: Vec<DetectionEvent> = prev
            .open
            .into_iter()
            .map(|mut e| {
                continuing.insert(e.product_id.clone(), e.episode_id.clone());
                e.event_type = "product.disappeared".into();
                e.update_seq = 0;
                e.event_id = crate::event::restart_end_id(&e.episode_id);
                e.end_reason = Some("handover".into());
                e.start_reason = None;
                e.continues = None;
                e.worker = self.worker.clone();
                e.emitted_at = crate::event::utc_now();
                e
            })
            .collect();
        let mut b = self.books.lock();
        b.open.remove(stream);
        b.handed_over.remove(stream);
        if !continuing.is_empty() {
            b.arriving.insert(stream.to_string(), (Instant::now(), continuing));
        }
        // This worker owns the stream now: its record says so (and that nothing is open yet).
        self.write(&b, stream);
        ends
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: &str, stream: &str, product: &str, episode: &str) -> DetectionEvent {
        let seen = serde_json::json!({"seq": 1, "pts_ms": 1000, "utc": "2026-12-02T00:00:01.000Z"});
        serde_json::from_value(serde_json::json!({
            "schema_version": 1, "event_id": format!("{kind}-{episode}"), "episode_id": episode, "type": kind,
            "stream_id": stream, "product_id": product, "title": null, "score": 0.8, "runner_up": null,
            "update_seq": 0, "first_seen": seen, "last_seen": seen,
            "evidence": {"window": 3, "hits": 2, "keyframes": []}, "asr_text": null, "model_version": "m@1",
            "gallery_version": "g", "worker": "w-old", "emitted_at": "2026-12-02T00:00:01.000Z"
        }))
        .unwrap()
    }

    /// Nothing listens on port 9: records queue in the producer, the books are what is tested.
    fn books(worker: &str) -> Handover {
        let kafka = KafkaConfig { brokers: "127.0.0.1:9".into(), ..KafkaConfig::default() };
        Handover::new(&kafka, "episodes", worker, Duration::from_secs(30)).unwrap()
    }

    #[test]
    fn a_stream_handed_away_ends_its_episodes_as_handovers_and_lists_them() {
        let h = books("w1");
        h.on_event(&mut ev("product.appeared", "s", "p", "e1"));
        let mut natural = ev("product.disappeared", "s", "p", "e1");
        h.on_event(&mut natural);
        assert_eq!(natural.end_reason, None, "an end seen on screen is an ordinary end");
        h.on_event(&mut ev("product.appeared", "s", "q", "e2"));
        h.leaving("s");
        let mut end = ev("product.disappeared", "s", "q", "e2");
        h.on_event(&mut end);
        assert_eq!(end.end_reason.as_deref(), Some("handover"));
        let b = h.books.lock();
        assert_eq!(b.handed_over["s"], vec![("q".to_string(), "e2".to_string())]);
        assert!(b.open["s"].is_empty());
    }

    #[test]
    fn a_new_owner_ends_what_a_dead_one_left_open_and_marks_the_continuation() {
        let h = books("w2");
        let prev = EpisodeState {
            worker: "w1".into(),
            open: vec![ev("product.appeared", "s", "p", "e1")],
            handed_over: vec![("q".into(), "e0".into())],
            at: String::new(),
        };
        let ends = h.arrive("s", Some(prev));
        assert_eq!(ends.len(), 1);
        let end = &ends[0];
        assert_eq!((end.event_type.as_str(), end.end_reason.as_deref(), end.worker.as_str()), ("product.disappeared", Some("handover"), "w2"));
        // The id a restart of the dead worker would give the same end: consumers dedupe the two.
        assert_eq!(end.event_id, crate::event::restart_end_id("e1"));
        let mut again = ev("product.appeared", "s", "p", "e9");
        h.on_event(&mut again);
        assert_eq!((again.start_reason.as_deref(), again.continues.as_deref()), (Some("handover"), Some("e1")));
        let mut handed = ev("product.appeared", "s", "q", "e10");
        h.on_event(&mut handed);
        assert_eq!(handed.continues.as_deref(), Some("e0"));
        // Once only: a later episode of the same product is a new one.
        let mut later = ev("product.appeared", "s", "p", "e11");
        h.on_event(&mut later);
        assert_eq!(later.start_reason, None);
        assert!(h.arrive("t", None).is_empty());
    }
}
