//! A consumer that never reads must not stall a stream or grow memory: frames are dropped and counted.

mod common;

use std::sync::Arc;
use std::time::Duration;

use livesku::config::IngestConfig;
use livesku::ingest::{self, Outputs, Source};
use livesku::messages::StreamState;

#[test]
fn slow_consumer_gets_drops_not_a_stall() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("clip.mp4");
    common::make_file(&file, &common::StreamSpec::default(), 8);
    let cfg = Arc::new(IngestConfig { max_rate_hz: 0.0, dedup_max_distance: 0, ..IngestConfig::default() });
    // Room for two keyframes and two audio chunks; nobody reads.
    let (kf_tx, kf_rx) = crossbeam_channel::bounded(2);
    let (audio_tx, _audio_rx) = crossbeam_channel::bounded(2);
    let (status_tx, _status_rx) = crossbeam_channel::bounded(16);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let stats = rt.block_on(async {
        let source = Source::parse(file.to_str().unwrap()).unwrap();
        let handle = ingest::spawn("clip".into(), source, cfg, Outputs { keyframes: kf_tx, audio: audio_tx }, status_tx);
        let stats = handle.stats.clone();
        tokio::time::timeout(Duration::from_secs(20), handle.wait()).await.expect("stream must end, not stall");
        stats.snapshot()
    });
    assert_eq!(stats.state, StreamState::Stopped);
    assert_eq!(stats.keyframes, 2);
    assert_eq!(stats.dropped, 6);
    assert!(stats.audio_dropped > 0);
    assert_eq!(kf_rx.len(), 2);
}
