use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::event::{DetectionEvent, EventContext};
use crate::track::{Match, Observation, TrackConfig, Tracker};

fn events(n: usize) -> Vec<DetectionEvent> {
    let ctx = EventContext { model_version: "m".into(), gallery_version: "g".into(), worker: "w".into() };
    let mut t = Tracker::new(TrackConfig::default());
    let mut out = Vec::new();
    let mut seq = 0u64;
    while out.len() < n {
        // Alternate products every 8 keyframes: appeared/disappeared pairs.
        let p = if (seq / 8).is_multiple_of(2) { "a" } else { "b" };
        let o = Observation {
            stream_id: "s".into(),
            generation: 0,
            seq,
            pts_ms: seq * 1000,
            captured_at: std::time::SystemTime::now(),
            matches: vec![Match::new(p, 0.9), Match::new("x", 0.3)],
            regions: Vec::new(),
            asr_text: None,
        };
        out.extend(t.observe(&o).iter().map(|d| DetectionEvent::from_decision(d, None, &ctx)));
        seq += 1;
    }
    out.truncate(n);
    out
}

/// A sink slower than the producer of events.
struct Slow(Arc<PublishMetrics>);
impl Sink for Slow {
    fn send(&mut self, _: &DetectionEvent, _: &[u8], _: Duration) -> Result<(), PublishError> {
        std::thread::sleep(Duration::from_millis(20));
        self.0.settle(&self.0.delivered);
        Ok(())
    }
    fn flush(&mut self, _: Duration) -> u64 {
        0
    }
}

#[test]
fn publish_never_blocks_and_drops_newest_when_full() {
    let metrics = Arc::new(PublishMetrics::default());
    let cfg = PublishConfig { channel_capacity: 4, ..PublishConfig::default() };
    let p = Publisher::with_sink(Box::new(Slow(metrics.clone())), metrics, &cfg).unwrap();
    let evs = events(50);
    let start = Instant::now();
    let accepted = evs.into_iter().filter(|e| p.publish(e.clone())).count();
    assert!(start.elapsed() < Duration::from_millis(100), "publish() blocked: {:?}", start.elapsed());
    assert!((4..=6).contains(&accepted), "accepted {accepted}");
    let r = p.shutdown(Duration::from_secs(5));
    assert_eq!(r.undelivered, 0);
    assert_eq!(r.metrics.delivered as usize, accepted);
    assert_eq!(r.metrics.dropped as usize, 50 - accepted);
    assert_eq!(r.metrics.buffered, 0);
}

#[test]
fn file_sink_writes_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out/events.jsonl");
    let cfg = PublishConfig { sink: SinkKind::File, file: Some(path.clone()), ..PublishConfig::default() };
    cfg.validate().unwrap();
    let p = Publisher::start(&cfg).unwrap();
    let evs = events(6);
    for e in &evs {
        assert!(p.publish(e.clone()));
    }
    let r = p.shutdown(Duration::from_secs(5));
    assert_eq!((r.undelivered, r.metrics.delivered), (0, 6));
    let text = std::fs::read_to_string(&path).unwrap();
    let back: Vec<DetectionEvent> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(back, evs);
}

#[test]
fn config_validation_names_keys() {
    PublishConfig::default().validate().unwrap();
    let cfg: PublishConfig = toml::from_str(
        r#"
        sink = "kafka"
        max_buffered_events = 500
        [kafka]
        brokers = "k1:9092,k2:9092"
        topic = "shop.detections"
        [kafka.properties]
        "security.protocol" = "SASL_SSL"
        "sasl.mechanism" = "PLAIN"
        "sasl.username" = "u"
        "#,
    )
    .unwrap();
    cfg.validate().unwrap();
    assert_eq!(cfg.kafka.properties["security.protocol"], "SASL_SSL");
    let key = |c: PublishConfig| c.validate().unwrap_err().key;
    let mut c = cfg.clone();
    c.kafka.properties.insert("acks".into(), "1".into());
    assert_eq!(key(c), "publish.kafka.properties.\"acks\"");
    let mut c = cfg.clone();
    c.kafka.compression = "zstd".into();
    assert_eq!(key(c), "publish.kafka.compression");
    let mut c = cfg.clone();
    c.kafka.topic = "bad topic".into();
    assert_eq!(key(c), "publish.kafka.topic");
    assert_eq!(key(PublishConfig { sink: SinkKind::File, ..PublishConfig::default() }), "publish.file");
    assert!(toml::from_str::<PublishConfig>("[kafka]\nbroker = \"x\"").is_err(), "unknown keys are rejected");
}

#[test]
fn kafka_sink_starts_without_a_broker_and_reports_undelivered() {
    // Nothing listens on port 1: the producer starts anyway, and the flush reports what is stuck.
    let mut cfg = PublishConfig::default();
    cfg.kafka.brokers = "127.0.0.1:1".into();
    let p = Publisher::start(&cfg).unwrap();
    for e in events(3) {
        assert!(p.publish(e));
    }
    let r = p.shutdown(Duration::from_millis(500));
    assert_eq!(r.undelivered, 3);
    assert_eq!(r.metrics.delivered, 0);
}

#[test]
fn outbox_keeps_order_and_what_is_pending_across_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool/outbox.redb");
    let ob = Outbox::open(Some(&path)).unwrap();
    let seqs: Vec<u64> =
        (0..5).map(|i| ob.append(&format!("s{}", i % 2), format!("p{i}").as_bytes(), Episode::End("e")).unwrap()).collect();
    assert_eq!(seqs, [0, 1, 2, 3, 4]);
    assert_eq!(ob.remove(&[0, 2]).unwrap(), 2);
    assert_eq!(ob.remove(&[2]).unwrap(), 0, "removing twice is harmless");
    let t = ob.totals();
    assert_eq!((t.events, t.bytes), (3, 3 * entry_size("s1", b"p1")));
    assert!(t.oldest_ms > 0);
    // Another opener while it is open is refused, naming the key.
    let e = Outbox::open(Some(&path)).err().expect("a second opener is refused");
    assert!(matches!(&e, PublishError::Config { key, .. } if key == "publish.outbox.path"), "{e}");
    drop(ob);

    // As after a restart: the same events, in order, and numbering goes on after the last one.
    let ob = Outbox::open(Some(&path)).unwrap();
    assert_eq!(ob.totals(), t);
    let back = ob.read_from(0, 10).unwrap();
    assert_eq!(back.iter().map(|p| p.seq).collect::<Vec<_>>(), [1, 3, 4]);
    assert_eq!((back[0].key.as_str(), back[0].payload.as_slice()), ("s1", &b"p1"[..]));
    assert_eq!(ob.append("s0", b"p5", Episode::End("e")).unwrap(), 5);
    assert_eq!(ob.read_from(4, 10).unwrap().iter().map(|p| p.seq).collect::<Vec<_>>(), [4, 5]);
    assert_eq!(ob.read_from(0, 2).unwrap().len(), 2, "reads are bounded");
    ob.remove(&[1, 3, 4, 5]).unwrap();
    assert_eq!(ob.totals().events, 0);
    assert_eq!(ob.totals().oldest_ms, 0);
}

#[test]
fn a_restart_ends_the_episodes_a_killed_run_left_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("outbox.redb");
    // Two episodes: the first ended, the second cut by the "kill" after an update.
    let evs = events(40);
    let open_id = evs.iter().rev().find(|e| e.event_type == "product.appeared").unwrap().episode_id.clone();
    let cut = evs.iter().rposition(|e| e.episode_id == open_id && e.event_type != "product.disappeared").unwrap();
    let ob = Outbox::open(Some(&path)).unwrap();
    for e in &evs[..=cut] {
        let episode = if e.event_type == "product.disappeared" { Episode::End(&e.episode_id) } else { Episode::Open(&e.episode_id) };
        ob.append(&e.stream_id, &e.to_json(), episode).unwrap();
    }
    let ended = evs[..=cut].iter().filter(|e| e.event_type == "product.disappeared").count();
    assert!(ended > 0, "the fixture has ended episodes too");
    assert_eq!(ob.open_episodes().unwrap().len(), 1);
    drop(ob);

    let ob = Outbox::open(Some(&path)).unwrap();
    assert_eq!(durable::close_orphans(&ob).unwrap(), 1);
    let last = ob.read_from(0, usize::MAX).unwrap().pop().unwrap();
    let end: DetectionEvent = serde_json::from_slice(&last.payload).unwrap();
    let latest = &evs[cut];
    assert_eq!((end.event_type.as_str(), end.end_reason.as_deref()), ("product.disappeared", Some("restart")));
    assert_eq!((&end.episode_id, &end.stream_id, &last.key), (&open_id, &latest.stream_id, &latest.stream_id));
    assert_eq!(end.last_seen, latest.last_seen, "it ends where it was last seen");
    assert_eq!(end.event_id, crate::event::restart_end_id(&open_id));
    assert!(evs.iter().all(|e| e.event_id != end.event_id));
    // The schema takes it.
    let schema: serde_json::Value = serde_json::from_str(crate::event::SCHEMA).unwrap();
    let v = serde_json::to_value(&end).unwrap();
    assert!(jsonschema::draft202012::new(&schema).unwrap().is_valid(&v), "{v}");
    // Ended in the same commit: a second restart has nothing left to close.
    assert!(ob.open_episodes().unwrap().is_empty());
    drop(ob);
    assert_eq!(durable::close_orphans(&Outbox::open(Some(&path)).unwrap()).unwrap(), 0);
}

#[test]
fn full_outbox_refuses_new_episodes_but_never_the_end_of_an_accepted_one() {
    let mut cfg = PublishConfig::default();
    cfg.kafka.brokers = "127.0.0.1:1".into();
    cfg.outbox.max_bytes = 4096;
    cfg.validate().unwrap();
    let p = Publisher::start(&cfg).unwrap();
    let evs = events(80);
    let (mut accepted, mut refused) = (std::collections::HashSet::new(), std::collections::HashSet::new());
    for e in &evs {
        let ok = p.publish(e.clone());
        match e.event_type.as_str() {
            "product.appeared" if ok => assert!(accepted.insert(e.episode_id.clone())),
            "product.appeared" => assert!(refused.insert(e.episode_id.clone())),
            "product.disappeared" => assert_eq!(ok, accepted.contains(&e.episode_id), "{e:?}"),
            _ => assert!(!(ok && refused.contains(&e.episode_id)), "an update of a refused episode: {e:?}"),
        }
    }
    assert!(!accepted.is_empty() && !refused.is_empty(), "accepted {accepted:?}, refused {refused:?}");
    let m = p.metrics();
    assert_eq!(m.accepted + m.dropped, evs.len() as u64, "{m:?}");
    assert_eq!(m.buffered, m.accepted, "nothing can be delivered: all accepted events are in the outbox");
    assert!(m.outbox_bytes > 0 && m.outbox_peak_bytes >= m.outbox_bytes, "{m:?}");
    assert_eq!(p.shutdown(Duration::from_millis(200)).undelivered, m.accepted);
}

#[test]
fn outbox_config_is_validated() {
    let cfg: PublishConfig = toml::from_str("[outbox]\npath = \"/var/lib/livesku/outbox.redb\"\nmax_bytes = 1048576").unwrap();
    cfg.validate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = |c: PublishConfig| c.validate().unwrap_err().key;
    let mut c = cfg.clone();
    c.outbox.max_bytes = 100;
    assert_eq!(key(c), "publish.outbox.max_bytes");
    let mut c = cfg.clone();
    c.outbox.path = Some(dir.path().to_path_buf());
    assert_eq!(key(c), "publish.outbox.path");
    assert!(toml::from_str::<PublishConfig>("[kafka]\nmessage_timeout_ms = 5").is_err(), "the outbox retries until delivered");
}
