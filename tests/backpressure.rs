//! Backpressure policy of ingest: a live stream whose consumer is slow drops sampled frames (counted)
//! instead of stalling GStreamer or growing memory; a file waits for its consumer and loses nothing.

mod common;

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Receiver;
use livesku::config::IngestConfig;
use livesku::ingest::{self, Outputs, Source, StatsSnapshot};
use livesku::messages::{Keyframe, StreamState};

/// Runs one stream with channels of capacity 2; `consume` sees the keyframe receiver while it runs.
fn run_stream(uri: &str, secs: u64, consume: impl FnOnce(&Receiver<Keyframe>)) -> StatsSnapshot {
    let cfg = Arc::new(IngestConfig { max_rate_hz: 0.0, dedup_max_distance: 0, ..IngestConfig::default() });
    let (kf_tx, kf_rx) = crossbeam_channel::bounded(2);
    let (audio_tx, _audio_rx) = crossbeam_channel::bounded(2);
    let (status_tx, _status_rx) = crossbeam_channel::bounded(16);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let source = Source::parse(uri).unwrap();
    let handle = rt.block_on(async {
        ingest::spawn("s".into(), source, cfg, Outputs { keyframes: kf_tx, audio: Some(audio_tx), preview: None }, status_tx)
    });
    let stats = handle.stats.clone();
    std::thread::sleep(Duration::from_secs(secs));
    consume(&kf_rx);
    rt.block_on(async {
        handle.stop();
        tokio::time::timeout(Duration::from_secs(10), handle.wait()).await.expect("stream must stop");
    });
    stats.snapshot()
}

#[test]
fn live_stream_with_a_stuck_consumer_drops_and_counts() {
    let servers = common::Servers::start();
    let url = servers.rtmp_url("bp");
    let _publisher = common::publish_rtmp(&url, &common::StreamSpec::default());
    let stats = run_stream(&url, 8, |_| {});
    // Frames kept arriving and were dropped, not queued; the stream stopped only when asked.
    assert_eq!(stats.state, StreamState::Stopped);
    assert_eq!(stats.keyframes, 2, "{stats:?}");
    assert!(stats.dropped >= 3, "{stats:?}");
    assert!(stats.audio_dropped > 0, "{stats:?}");
    assert_eq!(stats.reconnects, 0, "a full channel must not look like a stall: {stats:?}");
}

#[test]
fn file_waits_for_a_slow_consumer_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("clip.mp4");
    common::make_file(&file, &common::StreamSpec { audio: false, ..Default::default() }, 6);
    let mut got = Vec::new();
    let stats = run_stream(file.to_str().unwrap(), 1, |rx| {
        // Read slowly until the file is done.
        while let Ok(kf) = rx.recv_timeout(Duration::from_secs(3)) {
            got.push(kf.pts_ms);
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    assert_eq!(got, [0, 1000, 2000, 3000, 4000, 5000]);
    assert_eq!(stats.dropped, 0);
}
