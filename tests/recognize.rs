//! End to end through the real model: a generated scene shows product A, an empty set, then product B
//! (with camera motion, lighting drift and a hand passing over the product); `livesku recognize` must
//! report exactly appeared(A), disappeared(A), appeared(B), disappeared(B), schema-valid, with event ids
//! that are the same when the same input is processed again.

mod common;

use std::time::Duration;

use common::run_livesku;
use common::scene::{assert_no_duplicates, expected_story, scene_fixture, story, validator};
use serde_json::Value;

#[test]
fn product_a_then_empty_set_then_product_b() {
    let (_dir, gallery, video) = scene_fixture();
    let recognize = || {
        let run = run_livesku(&["recognize", &video, "--gallery", &gallery], Duration::from_secs(180));
        assert!(run.success, "{}", run.stderr);
        run.lines
    };
    let events = recognize();
    let schema = validator();
    for e in &events {
        assert!(schema.is_valid(e), "not schema-valid: {e}");
        assert_eq!(e["stream_id"], "scene");
    }
    assert_eq!(story(&events), expected_story(), "{events:#?}");
    // Episodes sit where the products were shown (stream PTS, ms).
    let first_seen = |i: usize| {
        events.iter().filter(|e| e["type"] == "product.appeared").nth(i).unwrap()["first_seen"]["pts_ms"]
            .as_u64()
            .unwrap()
    };
    assert!(first_seen(0) < 3_000 && (22_000..26_000).contains(&first_seen(1)));
    let titles: Vec<&str> = events.iter().map(|e| e["title"].as_str().unwrap()).collect();
    assert!(titles.contains(&"Rocket launch scale model"), "{titles:?}");

    // Processing the same input again yields the same event ids (consumers dedupe on them).
    let ids =
        |evs: &[Value]| evs.iter().map(|e| e["event_id"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    assert_eq!(ids(&recognize()), ids(&events));
}

#[test]
fn missing_or_mismatched_gallery_fails_before_any_stream_starts() {
    let dir = tempfile::tempdir().unwrap();
    let video = dir.path().join("v.mp4");
    common::make_file(&video, &common::StreamSpec::default(), 1);
    let run = run_livesku(
        &["recognize", video.to_str().unwrap(), "--gallery", dir.path().join("nope").to_str().unwrap()],
        Duration::from_secs(60),
    );
    assert!(!run.success);
    assert!(run.stderr.contains("gallery"), "{}", run.stderr);
    assert!(run.of_kind("keyframe").next().is_none() && run.lines.is_empty());
}

#[test]
fn bad_service_config_names_the_key_and_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("livesku.toml");
    std::fs::write(&cfg, "[track]\nmin_hits = 9\nwindow = 5\n").unwrap();
    let run = run_livesku(&["run", "--config", cfg.to_str().unwrap()], Duration::from_secs(30));
    assert!(!run.success);
    assert!(run.stderr.contains("track.min_hits"), "{}", run.stderr);
    std::fs::write(&cfg, "[gallery]\npath = \"/nonexistent\"\n[[streams]]\nuri = \"gopher://x/y\"\n")
        .unwrap();
    let run = run_livesku(&["run", "--config", cfg.to_str().unwrap()], Duration::from_secs(30));
    assert!(!run.success);
    assert!(
        run.stderr.contains("streams[0].uri") && run.stderr.contains("unsupported scheme"),
        "{}",
        run.stderr
    );
}

#[test]
fn detections_reach_a_kafka_consumer_group_in_order() {
    let (_dir, gallery, video) = scene_fixture();
    let broker = common::broker::Broker::start(&[("detections", 3)]);
    let run = run_livesku(
        &[
            "recognize",
            &video,
            "--gallery",
            &gallery,
            "--sink",
            "kafka",
            "--brokers",
            &broker.brokers(),
            "--topic",
            "detections",
        ],
        Duration::from_secs(180),
    );
    assert!(run.success, "{}", run.stderr);
    assert!(run.lines.is_empty(), "the kafka sink prints nothing on stdout");
    let got = broker.consume("detections", "dashboard", 4, Duration::from_secs(30), Duration::from_secs(3));
    let schema = validator();
    let events: Vec<Value> = got.iter().map(|m| serde_json::from_slice(&m.payload).unwrap()).collect();
    for (m, e) in got.iter().zip(&events) {
        assert_eq!(m.key.as_deref(), Some("scene"), "keyed by stream");
        assert_eq!(m.header("content-type"), Some("application/json"));
        assert!(schema.is_valid(e), "not schema-valid: {e}");
    }
    assert_eq!(story(&events), expected_story(), "{events:#?}");
    assert_no_duplicates(&events);
}
