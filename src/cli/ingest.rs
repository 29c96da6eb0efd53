//! `livesku ingest <URI>...`: runs the ingest stage alone and prints one JSON line per event.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use crossbeam_channel::{Receiver, select};
use serde_json::json;

use crate::config::{AspectPolicy, DecodeMode, IngestConfig};
use crate::ingest::{self, Outputs, Source, StreamHandle, unix_ms};
use crate::messages::{AudioChunk, Keyframe, StatusChange, StreamKey, StreamState};

#[derive(clap::Args)]
pub struct Args {
    /// Stream URIs (rtmp://, http(s)://…m3u8, rtsp://, srt://, file://) or file paths; several are
    /// ingested concurrently.
    #[arg(required = true, value_name = "URI")]
    uris: Vec<String>,
    /// Stop after this many seconds (default: when every source has ended).
    #[arg(long, value_name = "SECS", value_parser = super::until::parse_duration)]
    duration: Option<Duration>,
    /// Also write each sampled keyframe as `<stream>-<seq>.png` into this directory.
    #[arg(long, value_name = "DIR")]
    out_dir: Option<PathBuf>,
    /// Output frame size, e.g. 224x224.
    #[arg(long, value_name = "WxH")]
    size: Option<String>,
    #[arg(long, value_enum)]
    aspect: Option<AspectPolicy>,
    #[arg(long, value_enum)]
    decode: Option<DecodeMode>,
    /// Maximum sampled keyframes per second per stream (0 = every key unit).
    #[arg(long, value_name = "HZ")]
    max_rate: Option<f64>,
    /// Near-duplicate threshold in pHash bits (0 = keep every keyframe).
    #[arg(long, value_name = "BITS")]
    dedup_distance: Option<u32>,
    /// Seconds without any data before a live source counts as stalled.
    #[arg(long, value_name = "SECS")]
    stall_timeout: Option<f64>,
    /// Keep retrying when the first connection fails (default: report the error and exit).
    #[arg(long)]
    retry: bool,
}

impl Args {
    fn config(&self) -> anyhow::Result<IngestConfig> {
        let mut cfg = IngestConfig {
            fail_fast: !self.retry,
            ..IngestConfig::default()
        };
        if let Some(size) = &self.size {
            let (w, h) = size
                .split_once('x')
                .context("--size must look like 224x224")?;
            cfg.width = w.parse().context("--size: width is not a number")?;
            cfg.height = h.parse().context("--size: height is not a number")?;
        }
        cfg.aspect = self.aspect.unwrap_or(cfg.aspect);
        cfg.decode = self.decode.unwrap_or(cfg.decode);
        cfg.max_rate_hz = self.max_rate.unwrap_or(cfg.max_rate_hz);
        cfg.dedup_max_distance = self.dedup_distance.unwrap_or(cfg.dedup_max_distance);
        cfg.stall_timeout_secs = self.stall_timeout.unwrap_or(cfg.stall_timeout_secs);
        cfg.validate()?;
        Ok(cfg)
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let cfg = Arc::new(args.config()?);
    let sources = args
        .uris
        .iter()
        .map(|u| Source::parse(u))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(dir) = &args.out_dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create --out-dir {}", dir.display()))?;
    }
    ingest::pipeline::init()?;

    let (kf_tx, kf_rx) = crossbeam_channel::bounded(cfg.channel_capacity);
    let (audio_tx, audio_rx) = crossbeam_channel::bounded(cfg.channel_capacity);
    let (status_tx, status_rx) = crossbeam_channel::bounded(256);
    let printer = {
        let out_dir = args.out_dir.clone();
        std::thread::spawn(move || print_events(kf_rx, audio_rx, status_rx, out_dir.as_deref()))
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let handles: Vec<StreamHandle> = runtime.block_on(async {
        // One channel for all streams: the printer is their only consumer.
        let outputs = Outputs { keyframes: kf_tx, audio: Some(audio_tx), preview: None };
        unique_ids(&sources)
            .into_iter()
            .zip(sources)
            .map(|(id, src)| {
                ingest::spawn(
                    StreamKey::new(id, 0),
                    src,
                    cfg.clone(),
                    outputs.clone(),
                    status_tx.clone(),
                )
            })
            .collect()
    });
    drop(status_tx);
    let stats = runtime.block_on(supervise(handles, args.duration));
    drop(runtime);
    // All senders are gone with the streams: the printer drains what is left and returns.
    let _ = printer.join();

    let mut out = std::io::stdout().lock();
    let mut failed = Vec::new();
    for (id, snap) in &stats {
        if snap.state == StreamState::Failed {
            failed.push(format!(
                "stream '{id}' failed: {}",
                snap.last_error.as_deref().unwrap_or("unknown error")
            ));
        }
        let mut line = serde_json::to_value(snap)?;
        line["kind"] = json!("stats");
        line["stream_id"] = json!(id);
        let _ = writeln!(out, "{line}");
    }
    match failed.as_slice() {
        [] => Ok(ExitCode::SUCCESS),
        [one] => bail!("{one}"),
        many => bail!("{}", many.join("; ")),
    }
}

/// Waits for every stream to end, the duration to pass, or Ctrl-C; then stops and joins them.
async fn supervise(
    handles: Vec<StreamHandle>,
    duration: Option<Duration>,
) -> Vec<(String, ingest::StatsSnapshot)> {
    super::until::until(duration, || handles.iter().all(StreamHandle::is_finished)).await;
    handles.iter().for_each(StreamHandle::stop);
    let mut stats = Vec::new();
    for h in handles {
        let (id, st) = (h.id.to_string(), h.stats.clone());
        h.wait().await;
        stats.push((id, st.snapshot()));
    }
    stats
}

fn unique_ids(sources: &[Source]) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for s in sources {
        let base = s.default_id();
        let mut id = base.clone();
        let mut n = 1;
        while ids.contains(&id) {
            n += 1;
            id = format!("{base}-{n}");
        }
        ids.push(id);
    }
    ids
}

fn print_events(
    keyframes: Receiver<Keyframe>,
    audio: Receiver<AudioChunk>,
    status: Receiver<StatusChange>,
    out_dir: Option<&Path>,
) {
    let mut out = std::io::stdout().lock();
    let (mut keyframes, mut audio, mut status) = (keyframes, audio, status);
    // A closed channel is swapped for `never()` so select! stops waking on it.
    let mut open = 3;
    while open > 0 {
        let line = select! {
            recv(keyframes) -> m => match m {
                Ok(kf) => keyframe_line(&kf, out_dir),
                Err(_) => { keyframes = crossbeam_channel::never(); open -= 1; continue }
            },
            recv(audio) -> m => match m {
                Ok(a) => json!({"kind": "audio", "stream_id": &*a.stream_id, "pts_ms": a.pts_ms,
                                "seconds": a.seconds(), "sample_rate": a.sample_rate}),
                Err(_) => { audio = crossbeam_channel::never(); open -= 1; continue }
            },
            recv(status) -> m => match m {
                Ok(s) => { let mut v = json!(s); v["kind"] = json!("status"); v }
                Err(_) => { status = crossbeam_channel::never(); open -= 1; continue }
            },
        };
        if writeln!(out, "{line}").and_then(|_| out.flush()).is_err() {
            return; // stdout closed (e.g. piped into `head`)
        }
    }
}

fn keyframe_line(kf: &Keyframe, out_dir: Option<&Path>) -> serde_json::Value {
    let mut line = json!({
        "kind": "keyframe", "stream_id": &*kf.stream_id, "seq": kf.seq, "pts_ms": kf.pts_ms,
        "wall_ms": unix_ms(kf.captured_at), "width": kf.image.width(), "height": kf.image.height(),
        "phash": format!("{:016x}", kf.phash),
    });
    if let Some(dir) = out_dir {
        let path = dir.join(format!("{}-{:06}.png", kf.stream_id, kf.seq));
        match kf.image.save(&path) {
            Ok(()) => line["file"] = json!(path.display().to_string()),
            Err(e) => tracing::warn!(path = %path.display(), "cannot write keyframe: {e}"),
        }
    }
    line
}
