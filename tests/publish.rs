//! Publishing to a real Kafka-compatible broker (tansu, see tests/common/broker.rs).
//! Fails loudly if tansu is not installed: run scripts/setup.sh.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use common::broker::{Broker, Received};
use livesku::event::{DetectionEvent, EventContext, SCHEMA};
use livesku::publish::{Outbox, PublishConfig, Publisher};
use livesku::track::{Match, Observation, TrackConfig, Tracker};
use serde_json::Value;

const TOPIC: &str = "detections";

/// Events of several streams, interleaved as a service would produce them: each stream shows product
/// a, then b, then a again, then ends.
fn scripted(streams: &[&str]) -> Vec<DetectionEvent> {
    let ctx =
        EventContext { model_version: "m@1".into(), gallery_version: "g@1".into(), worker: "test/1".into() };
    let mut t = Tracker::new(TrackConfig { update_interval_secs: 3.0, ..TrackConfig::default() });
    let mut out = Vec::new();
    for seq in 0..36u64 {
        for (i, s) in streams.iter().enumerate() {
            let p = ["a", "b", "a"][((seq + i as u64) / 12 % 3) as usize];
            let score = 0.7 + 0.01 * (seq % 12) as f32;
            let o = Observation {
                stream_id: (*s).into(),
                generation: 0,
                seq,
                pts_ms: seq * 1000,
                captured_at: SystemTime::now(),
                matches: vec![Match::new(p, score), Match::new("x", 0.3)],
                regions: Vec::new(),
                asr_text: None,
            };
            out.extend(t.observe(&o).iter().map(|d| DetectionEvent::from_decision(d, Some(p), &ctx)));
        }
    }
    out.extend(t.finish().iter().map(|d| DetectionEvent::from_decision(d, None, &ctx)));
    out
}

fn config(brokers: &str) -> PublishConfig {
    let mut cfg = PublishConfig::default();
    cfg.kafka.brokers = brokers.into();
    cfg.kafka.topic = TOPIC.into();
    cfg.validate().expect("valid config");
    cfg
}

/// Every message: keyed by its stream, headers set, schema-valid; no duplicates; per-stream order kept.
fn check(sent: &[DetectionEvent], got: &[Received]) {
    let schema: Value = serde_json::from_str(SCHEMA).unwrap();
    let validator = jsonschema::draft202012::new(&schema).unwrap();
    let mut ids = HashSet::new();
    let mut by_stream: HashMap<String, Vec<String>> = HashMap::new();
    for m in got {
        assert_eq!(m.header("content-type"), Some("application/json"));
        assert_eq!(m.header("schema-version"), Some("1"));
        let json: Value = serde_json::from_slice(&m.payload).expect("payload is JSON");
        let errors: Vec<String> = validator.iter_errors(&json).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "schema errors {errors:?} in {json}");
        let e: DetectionEvent = serde_json::from_value(json).unwrap();
        assert_eq!(m.key.as_deref(), Some(e.stream_id.as_str()), "key = stream id");
        assert!(ids.insert(e.event_id.clone()), "duplicate event {}", e.event_id);
        by_stream.entry(e.stream_id).or_default().push(e.event_id);
    }
    assert_eq!(got.len(), sent.len(), "every event arrives exactly once");
    let mut expected: HashMap<String, Vec<String>> = HashMap::new();
    for e in sent {
        expected.entry(e.stream_id.clone()).or_default().push(e.event_id.clone());
    }
    assert_eq!(by_stream, expected, "per-stream order is kept");
}

#[test]
fn events_arrive_keyed_in_order_with_headers_and_no_duplicates() {
    let broker = Broker::start(&[(TOPIC, 3)]);
    let sent = scripted(&["shop-1", "shop-2", "shop-3"]);
    let kinds: HashSet<&str> = sent.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(kinds.len(), 3, "the script covers appeared, updated and disappeared: {kinds:?}");
    let p = Publisher::start(&config(&broker.brokers())).unwrap();
    for e in &sent {
        assert!(p.publish(e.clone()));
    }
    let report = p.shutdown(Duration::from_secs(10));
    assert_eq!(report.undelivered, 0, "{report:?}");
    assert_eq!(report.metrics.delivered as usize, sent.len());
    assert_eq!((report.metrics.failed, report.metrics.dropped), (0, 0));
    let got = broker.consume(TOPIC, "t-order", sent.len(), Duration::from_secs(30), Duration::from_secs(1));
    check(&sent, &got);
    // Keyed by stream: one stream's events share a partition.
    let mut parts: HashMap<&str, HashSet<i32>> = HashMap::new();
    for m in &got {
        parts.entry(m.key.as_deref().unwrap()).or_default().insert(m.partition);
    }
    assert!(parts.values().all(|p| p.len() == 1), "{parts:?}");
}

#[test]
fn broker_started_after_the_producer_loses_nothing() {
    let port = common::free_port();
    let sent = scripted(&["late-1", "late-2"]);
    let p = Publisher::start(&config(&format!("127.0.0.1:{port}"))).unwrap();
    let (early, late) = sent.split_at(sent.len() / 2);
    for e in early {
        assert!(p.publish(e.clone()));
    }
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(p.metrics().delivered, 0, "nothing can be delivered yet");
    let broker = Broker::start_on(port, &[(TOPIC, 2)]);
    for e in late {
        assert!(p.publish(e.clone()));
    }
    let report = p.shutdown(Duration::from_secs(30));
    assert_eq!(report.undelivered, 0, "{report:?}");
    assert_eq!(report.metrics.delivered as usize, sent.len());
    let got = broker.consume(TOPIC, "t-late", sent.len(), Duration::from_secs(30), Duration::from_secs(1));
    check(&sent, &got);
}

#[test]
fn flush_reports_the_undelivered_count_when_the_broker_is_down() {
    let port = common::free_port();
    let sent = scripted(&["down"]);
    let p = Publisher::start(&config(&format!("127.0.0.1:{port}"))).unwrap();
    for e in &sent {
        assert!(p.publish(e.clone()));
    }
    let started = std::time::Instant::now();
    let report = p.shutdown(Duration::from_millis(500));
    assert!(started.elapsed() < Duration::from_secs(5), "shutdown respects its timeout");
    assert_eq!(report.undelivered as usize, sent.len(), "{report:?}");
    assert_eq!(report.metrics.delivered, 0);
}

#[test]
fn outbox_backlog_is_delivered_after_a_restart_before_new_events_and_then_removed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.redb");
    let port = common::free_port();
    let mut cfg = config(&format!("127.0.0.1:{port}"));
    cfg.outbox.path = Some(path.clone());
    // The first run stops mid-episode (as a SIGKILL would: nobody ends its episodes); the second run's
    // events are of other streams (a restarted tracker starts new episodes).
    let first = scripted(&["r-1", "r-2"]);
    let backlog = &first[..first.len() / 2];
    let fresh = scripted(&["r-3"]);

    // First run: no broker. Everything accepted is persisted and stays when the process stops.
    let p = Publisher::start(&cfg).unwrap();
    for e in backlog {
        assert!(p.publish(e.clone()));
    }
    let r = p.shutdown(Duration::from_millis(300));
    assert_eq!(r.undelivered as usize, backlog.len(), "{r:?}");
    drop(p);
    let ids = |payloads: Vec<Vec<u8>>| -> Vec<String> {
        payloads.iter().map(|b| serde_json::from_slice::<DetectionEvent>(b).unwrap().event_id).collect()
    };
    let outbox = Outbox::open(Some(&path)).unwrap();
    let pending = outbox.read_from(0, usize::MAX).unwrap();
    assert_eq!(
        ids(pending.into_iter().map(|p| p.payload).collect()),
        backlog.iter().map(|e| e.event_id.clone()).collect::<Vec<_>>(),
        "persisted in emission order"
    );
    let mut open: Vec<String> = outbox.open_episodes().unwrap().into_iter().map(|(id, _)| id).collect();
    open.sort();
    let mut expected_open: Vec<String> = backlog.iter().map(|e| e.episode_id.clone()).collect();
    expected_open.retain(|id| !backlog.iter().any(|e| &e.episode_id == id && e.event_type == "product.disappeared"));
    expected_open.sort();
    expected_open.dedup();
    assert_eq!(open, expected_open, "the outbox knows which episodes are open");
    assert!(!open.is_empty(), "the script stops mid-episode");
    drop(outbox);

    // Second run on the same outbox, broker up: the backlog first, then the ends of its open episodes, then
    // the new events, each stream in order.
    let broker = Broker::start_on(port, &[(TOPIC, 2)]);
    let p = Publisher::start(&cfg).unwrap();
    for e in &fresh {
        assert!(p.publish(e.clone()));
    }
    let r = p.shutdown(Duration::from_secs(30));
    assert_eq!(r.undelivered, 0, "{r:?}");
    let total = backlog.len() + open.len() + fresh.len();
    assert_eq!((r.metrics.removed as usize, r.metrics.buffered), (total, 0), "{r:?}");
    drop(p);
    let got = broker.consume(TOPIC, "t-restart", total, Duration::from_secs(30), Duration::from_secs(1));
    let ends: Vec<DetectionEvent> = got
        .iter()
        .map(|m| serde_json::from_slice::<DetectionEvent>(&m.payload).unwrap())
        .filter(|e| e.end_reason.is_some())
        .collect();
    let mut ended: Vec<String> = ends.iter().map(|e| e.episode_id.clone()).collect();
    ended.sort();
    assert_eq!(ended, open, "the restart ends exactly the open episodes");
    for end in &ends {
        let latest = backlog.iter().rev().find(|e| e.episode_id == end.episode_id).unwrap();
        assert_eq!((end.event_type.as_str(), end.end_reason.as_deref()), ("product.disappeared", Some("restart")));
        assert_eq!(end.last_seen, latest.last_seen, "it ends where it was last seen");
    }
    let sent: Vec<DetectionEvent> = backlog.iter().cloned().chain(ends).chain(fresh).collect();
    check(&sent, &got);
    assert_eq!(Outbox::open(Some(&path)).unwrap().totals().events, 0, "delivered events are removed");
}
