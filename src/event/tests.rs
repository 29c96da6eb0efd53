use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::*;
use crate::track::{Match, Observation, TrackConfig, Tracker};

fn ctx() -> EventContext {
    EventContext {
        model_version: "dinov2-s@1".into(),
        gallery_version: "g-42".into(),
        worker: "host/1".into(),
    }
}

/// A script exercising every event type: a on, a updated, a off, b on, b flushed at stream end.
fn scripted_events(stream: &str) -> Vec<DetectionEvent> {
    let mut t = Tracker::new(TrackConfig { update_interval_secs: 2.0, ..TrackConfig::default() });
    let mut out = Vec::new();
    for seq in 0..30u64 {
        let (p, s) = if seq < 15 { ("a", 0.62 + 0.02 * seq as f32) } else { ("b", 0.8) };
        let o = Observation {
            stream_id: stream.into(),
            generation: 0,
            seq,
            pts_ms: seq * 500,
            captured_at: SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + seq * 500),
            matches: vec![Match::new(p, s), Match::new("other", 0.4)],
            regions: Vec::new(),
            asr_text: (seq == 1).then(|| "look at this kettle".to_string()),
        };
        for d in t.observe(&o) {
            out.push(DetectionEvent::from_decision(&d, Some("Kettle"), &ctx()));
        }
    }
    for d in t.end_stream(&crate::messages::StreamKey::new(stream, 0)) {
        out.push(DetectionEvent::from_decision(&d, None, &ctx()));
    }
    out
}

fn validator() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(SCHEMA).expect("schema is JSON");
    jsonschema::draft202012::new(&schema).expect("schema compiles")
}

#[test]
fn every_emitted_event_is_schema_valid() {
    let v = validator();
    let events = scripted_events("shop-1");
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    for t in ["product.appeared", "product.updated", "product.disappeared"] {
        assert!(types.contains(&t), "script should produce {t}: {types:?}");
    }
    for e in &events {
        let json: Value = serde_json::from_slice(&e.to_json()).unwrap();
        let errors: Vec<String> = v.iter_errors(&json).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{json}\n{errors:#?}");
        assert_eq!(json["schema_version"], 1);
    }
}

#[test]
fn schema_rejects_malformed_events() {
    let v = validator();
    let good: Value = serde_json::from_slice(&scripted_events("s")[0].to_json()).unwrap();
    assert!(v.is_valid(&good));
    for (field, bad) in [
        ("type", Value::from("product.moved")),
        ("event_id", Value::from("xyz")),
        ("schema_version", Value::from(2)),
        ("score", Value::from("high")),
        ("runner_up", serde_json::json!({"product_id": "x"})),
    ] {
        let mut e = good.clone();
        e[field] = bad;
        assert!(!v.is_valid(&e), "{field} should be rejected");
    }
    let mut e = good.clone();
    e.as_object_mut().unwrap().remove("asr_text");
    assert!(!v.is_valid(&e), "asr_text is required (nullable)");
}

#[test]
fn event_ids_are_deterministic_and_unique() {
    let a = scripted_events("shop-1");
    let b = scripted_events("shop-1");
    let ids = |v: &[DetectionEvent]| v.iter().map(|e| e.event_id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&a), ids(&b), "a replay gives the same ids");
    let mut uniq = ids(&a);
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), a.len(), "no two events share an id");
    assert_ne!(ids(&a), ids(&scripted_events("shop-2")), "the stream is part of the id");
    // One episode shares its episode_id across appeared/updated/disappeared.
    let ep_a: Vec<_> = a.iter().filter(|e| e.product_id == "a").map(|e| e.episode_id.as_str()).collect();
    assert!(ep_a.len() >= 3 && ep_a.iter().all(|x| *x == ep_a[0]));
    assert_eq!(event_id("s", 0, "p", 5, "product.updated", 1), event_id("s", 0, "p", 5, "product.updated", 1));
    assert_ne!(event_id("s", 0, "p", 5, "product.updated", 1), event_id("s", 0, "p", 5, "product.updated", 2));
    // A stream added again under the same id is another session: same clock values, other ids.
    assert_ne!(event_id("s", 0, "p", 5, "product.updated", 1), event_id("s", 1, "p", 5, "product.updated", 1));
    assert_ne!(episode_id("s", 0, "p", 5), episode_id("s", 2, "p", 5));
}

#[test]
fn fields_carry_the_decision() {
    let e = &scripted_events("shop-1")[0];
    assert_eq!(e.event_type, "product.appeared");
    assert_eq!(e.title.as_deref(), Some("Kettle"));
    assert_eq!(e.runner_up, Some(RunnerUp { product_id: "other".into(), score: 0.4 }));
    assert_eq!(e.first_seen.pts_ms, 0);
    assert_eq!(e.first_seen.utc, "2023-11-14T22:13:20.000Z");
    assert_eq!(e.asr_text.as_deref(), Some("look at this kettle"));
    assert_eq!(
        (e.model_version.as_str(), e.gallery_version.as_str(), e.worker.as_str()),
        ("dinov2-s@1", "g-42", "host/1")
    );
    assert_eq!(e.evidence.keyframes.len(), 3);
    let back: DetectionEvent = serde_json::from_slice(&e.to_json()).unwrap();
    assert_eq!(&back, e);
    assert!(EventContext::default_worker().contains('/'));
}
