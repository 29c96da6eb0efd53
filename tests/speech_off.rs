//! With speech off (`[asr] enabled = false`) nothing listens to a stream's audio, so the service does not
//! decode it: a file with a sound track still gives its whole story, ends, and has no audio counted.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::scene::{demo_gallery, expected_story, render_silent_scene, story};
use livesku::messages::StreamState;
use livesku::service::{Service, ServiceConfig};
use parking_lot::Mutex;
use serde_json::Value;

fn run(gallery: &str, video: &str, asr: bool) -> (Vec<Value>, f64) {
    let mut cfg = ServiceConfig::default();
    cfg.gallery.path = Some(gallery.into());
    cfg.asr.enabled = asr;
    cfg.ingest.max_rate_hz = 1.0;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    let events: Arc<Mutex<Vec<Value>>> = Arc::default();
    let sink = events.clone();
    let service = Service::start(&cfg, move |ev| sink.lock().push(serde_json::to_value(&ev).unwrap()))
        .expect("service starts (run scripts/setup.sh)");
    service.add_stream(Some("file"), video).expect("add the file");
    let started = Instant::now();
    let info = loop {
        let info = service.stream_info("file").expect("the stream is listed");
        if info.stats.state == StreamState::Stopped {
            break info;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "the file did not end: {:?}", info.stats);
        std::thread::sleep(Duration::from_millis(100));
    };
    rt.block_on(service.shutdown(tokio::time::Instant::now() + Duration::from_secs(20)));
    assert!(info.stats.keyframes >= 30, "{:?}", info.stats);
    let events = events.lock().clone();
    (events, info.stats.audio_seconds)
}

#[test]
fn without_speech_the_audio_is_not_decoded_and_the_story_is_whole() {
    let dir = tempfile::tempdir().unwrap();
    let gallery = demo_gallery(dir.path());
    let video = dir.path().join("scene.mp4");
    render_silent_scene(&video, &[("coffee.png", 0, 14), ("rocket.jpg", 22, 40)], 40);
    let video = video.to_str().unwrap();

    let (events, audio_seconds) = run(&gallery, video, false);
    let expected = expected_story();
    assert_eq!(story(&events), expected);
    assert_eq!(audio_seconds, 0.0, "speech is off: the sound track must not be decoded");

    // The same file with speech on: its sound track is decoded (the check above can fail).
    let (events, audio_seconds) = run(&gallery, video, true);
    assert_eq!(story(&events), expected);
    assert!(audio_seconds > 35.0, "{audio_seconds}");
}
