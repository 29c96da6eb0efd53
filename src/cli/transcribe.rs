//! `livesku transcribe <URI> [--duration SECS]`: speech to text on one source; one JSON line per
//! utterance (`stream_id`, `start_ms`, `end_ms` on the stream clock, `text`, `confidence`).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::json;

use crate::asr::{AsrConfig, AsrStage};
use crate::config::IngestConfig;
use crate::ingest::{self, Outputs, Source, StreamHandle};
use crate::messages::{StreamKey, StreamState};

#[derive(clap::Args)]
pub struct Args {
    /// Stream URI (rtmp://, http(s)://…m3u8, rtsp://, srt://, file://) or a file path.
    #[arg(value_name = "URI")]
    uri: String,
    /// Stop after this many seconds (default: when the source ends).
    #[arg(long, value_name = "SECS", value_parser = super::until::parse_duration)]
    duration: Option<Duration>,
    /// Directory with base-en/ and silero_vad.onnx (default: the model cache, see models/asr.sh).
    #[arg(long, value_name = "DIR")]
    model_dir: Option<PathBuf>,
    /// Transcription worker threads.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Keep retrying when the first connection fails (default: report the error and exit).
    #[arg(long)]
    retry: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let source = Source::parse(&args.uri)?;
    // Video is not needed: sample as few keyframes as ingest allows (they are dropped unread).
    let cfg = Arc::new(IngestConfig { fail_fast: !args.retry, max_rate_hz: 0.1, ..IngestConfig::default() });
    cfg.validate()?;
    let asr_cfg = AsrConfig {
        model_dir: args.model_dir.clone(),
        workers: args.workers,
        // A file or a short command-line run should lose nothing: allow a deep queue.
        queue: 256,
        ..AsrConfig::default()
    };
    asr_cfg.validate()?;
    ingest::pipeline::init()?;

    let (kf_tx, kf_rx) = crossbeam_channel::bounded(cfg.channel_capacity);
    let (audio_tx, audio_rx) = crossbeam_channel::bounded(cfg.channel_capacity);
    let (status_tx, status_rx) = crossbeam_channel::bounded(256);
    let drain = std::thread::spawn(move || {
        kf_rx.iter().for_each(drop);
        status_rx.iter().for_each(drop);
    });
    let health = crate::stage::Health::default();
    let asr = AsrStage::start(&asr_cfg, vec![audio_rx], |t| {
        let line = json!({"stream_id": &*t.stream_id, "start_ms": t.start_ms, "end_ms": t.end_ms,
                          "text": t.text, "confidence": t.confidence});
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}").and_then(|_| out.flush());
    }, &health)
    .context("cannot start speech recognition")?;

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let id = source.default_id();
    let handle = runtime.block_on(async {
        ingest::spawn(
            StreamKey::new(id, 0),
            source,
            cfg.clone(),
            Outputs { keyframes: kf_tx, audio: Some(audio_tx), preview: None },
            status_tx,
        )
    });
    let snap = runtime.block_on(supervise(handle, args.duration));
    drop(runtime);
    // The stream's senders are gone: the VAD flushes, the workers finish the queue, then return.
    let metrics = asr.metrics.clone();
    asr.join();
    let _ = drain.join();
    tracing::info!(counters = ?metrics.snapshot(), "transcription finished");
    if let Some(failure) = health.failure() {
        bail!("{failure}");
    }
    if snap.state == StreamState::Failed {
        bail!("stream failed: {}", snap.last_error.as_deref().unwrap_or("unknown error"));
    }
    Ok(ExitCode::SUCCESS)
}

/// Waits for the stream to end, the duration to pass, or Ctrl-C; then stops it.
async fn supervise(handle: StreamHandle, duration: Option<Duration>) -> ingest::StatsSnapshot {
    super::until::until(duration, || handle.is_finished()).await;
    handle.stop();
    let stats = handle.stats.clone();
    handle.wait().await;
    stats.snapshot()
}
