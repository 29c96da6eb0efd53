//! End to end through the real model: a generated scene shows product A, an empty set, then product B
//! (with camera motion, lighting drift and a hand passing over the product); `livesku recognize` must
//! report exactly appeared(A), disappeared(A), appeared(B), disappeared(B), schema-valid, with event ids
//! that are the same when the same input is processed again.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::run_livesku;
use serde_json::Value;

fn demo_dir() -> std::path::PathBuf {
    let dir = livesku::paths::cache_dir().join("demo");
    assert!(dir.join("catalog.jsonl").is_file(), "demo products missing in {}: run scripts/setup.sh", dir.display());
    dir
}

/// Renders the scene with scripts/demo/scene.py and encodes it to H.264 MP4 (0.5 s GOP).
fn render_scene(out: &Path, shows: &[(&str, u32, u32)], seconds: u32) {
    let python = livesku::paths::venv_python();
    assert!(python.is_file(), "{} missing: run scripts/setup.sh", python.display());
    let demo = demo_dir();
    let mut args = vec![
        concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/demo/scene.py").to_string(),
        "--seconds".into(),
        seconds.to_string(),
    ];
    for (img, start, end) in shows {
        args.push("--show".into());
        args.push(format!("{}:{start}:{end}", demo.join(img).display()));
    }
    let mut scene = Command::new(python).args(&args).stdout(Stdio::piped()).spawn().expect("run scene.py");
    let frames = scene.stdout.take().unwrap();
    let status = Command::new("gst-launch-1.0")
        .args(["-q", "fdsrc", "!", "rawvideoparse", "width=640", "height=360", "format=rgb", "framerate=15/1"])
        .args(["!", "videoconvert", "!", "x264enc", "speed-preset=ultrafast", "key-int-max=8", "!", "h264parse"])
        .args(["!", "mp4mux", "!", "filesink", &format!("location={}", out.display())])
        .stdin(frames)
        .status()
        .expect("gst-launch-1.0 is missing: run scripts/setup.sh");
    assert!(status.success() && scene.wait().unwrap().success(), "could not render the scene");
}

fn validator() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(livesku::event::SCHEMA).unwrap();
    jsonschema::validator_for(&schema).expect("the event schema compiles")
}

/// A gallery of the demo products and a 40 s scene: espresso set 0-14 s, empty set, rocket 22-40 s.
fn scene_fixture() -> (tempfile::TempDir, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let gallery = dir.path().join("gallery");
    let catalog = demo_dir().join("catalog.jsonl");
    let build = run_livesku(
        &["gallery", "build", "--catalog", catalog.to_str().unwrap(), "--out", gallery.to_str().unwrap()],
        Duration::from_secs(120),
    );
    assert!(build.success, "{}", build.stderr);
    let video = dir.path().join("scene.mp4");
    render_scene(&video, &[("coffee.png", 0, 14), ("rocket.jpg", 22, 40)], 40);
    let (g, v) = (gallery.to_str().unwrap().to_string(), video.to_str().unwrap().to_string());
    (dir, g, v)
}

const STORY: [(&str, &str); 4] = [
    ("product.appeared", "sku-espresso-set"),
    ("product.disappeared", "sku-espresso-set"),
    ("product.appeared", "sku-rocket-model"),
    ("product.disappeared", "sku-rocket-model"),
];

fn story(events: &[Value]) -> Vec<(String, String)> {
    events
        .iter()
        .filter(|e| e["type"] != "product.updated")
        .map(|e| (e["type"].as_str().unwrap().into(), e["product_id"].as_str().unwrap().into()))
        .collect()
}

#[test]
fn product_a_then_empty_set_then_product_b() {
    let (_dir, gallery, video) = scene_fixture();
    let recognize = || {
        let run = run_livesku(
            &["recognize", &video, "--gallery", &gallery],
            Duration::from_secs(180),
        );
        assert!(run.success, "{}", run.stderr);
        run.lines
    };
    let events = recognize();
    let schema = validator();
    for e in &events {
        assert!(schema.is_valid(e), "not schema-valid: {e}");
        assert_eq!(e["stream_id"], "scene");
    }
    assert_eq!(story(&events), STORY.map(|(a, b)| (a.to_string(), b.to_string())), "{events:#?}");
    // Episodes sit where the products were shown (stream PTS, ms).
    let first_seen = |i: usize| events.iter().filter(|e| e["type"] == "product.appeared").nth(i).unwrap()["first_seen"]["pts_ms"].as_u64().unwrap();
    assert!(first_seen(0) < 3_000 && (22_000..26_000).contains(&first_seen(1)));
    let titles: Vec<&str> = events.iter().map(|e| e["title"].as_str().unwrap()).collect();
    assert!(titles.contains(&"Rocket launch scale model"), "{titles:?}");

    // Processing the same input again yields the same event ids (consumers dedupe on them).
    let ids = |evs: &[Value]| evs.iter().map(|e| e["event_id"].as_str().unwrap().to_string()).collect::<Vec<_>>();
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
    std::fs::write(&cfg, "[gallery]\npath = \"/nonexistent\"\n[[streams]]\nuri = \"gopher://x/y\"\n").unwrap();
    let run = run_livesku(&["run", "--config", cfg.to_str().unwrap()], Duration::from_secs(30));
    assert!(!run.success);
    assert!(run.stderr.contains("streams[0].uri") && run.stderr.contains("unsupported scheme"), "{}", run.stderr);
}

#[test]
fn detections_reach_a_kafka_consumer_group_in_order() {
    let (_dir, gallery, video) = scene_fixture();
    let broker = common::broker::Broker::start(&[("detections", 3)]);
    let run = run_livesku(
        &["recognize", &video, "--gallery", &gallery, "--sink", "kafka", "--brokers", &broker.brokers(), "--topic", "detections"],
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
    assert_eq!(story(&events), STORY.map(|(a, b)| (a.to_string(), b.to_string())), "{events:#?}");
    let mut ids: Vec<&str> = events.iter().map(|e| e["event_id"].as_str().unwrap()).collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "no duplicates");
}
