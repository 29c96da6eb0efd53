//! One connection attempt of a stream: the appsink callbacks that turn decoded buffers into typed
//! messages. Callbacks run on GStreamer streaming threads and never block.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crossbeam_channel::{SendTimeoutError, Sender, TrySendError};
use gstreamer as gst;
use gstreamer_app::{AppSink, AppSinkCallbacks};
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;

use super::pipeline::AUDIO_RATE;
use super::stats::{Heartbeat, StreamStats};
use crate::config::{DecodeMode, IngestConfig};
use crate::messages::{AudioChunk, Keyframe, StreamKey};
use crate::sample::{NearDuplicateFilter, RateLimiter, phash};

/// Where a stream's output goes; every channel is bounded.
///
/// The service gives each stream a keyframe channel of its own (the encoder drains them round-robin), so a
/// file waiting on a full queue holds up its own streaming thread and nothing else. The stream's end is
/// that channel's close: once the stream is gone for good (stopped, failed, end of file) every sender is
/// dropped, and the receiver sees `Disconnected` only after the last frame, so the end can neither
/// overtake a frame nor be lost.
#[derive(Clone)]
pub struct Outputs {
    pub keyframes: Sender<Keyframe>,
    /// `None`: nobody listens (ASR off), and the stream's audio is not even decoded.
    pub audio: Option<Sender<AudioChunk>>,
    /// Sees every delivered keyframe before it is queued (the dashboard's "camera now" tile, which must not
    /// lag behind a busy encoder). Runs on the streaming thread: it must be quick and never block.
    pub preview: Option<Preview>,
}

/// See [`Outputs::preview`].
pub type Preview = Arc<dyn Fn(&Keyframe) + Send + Sync>;

/// How often a file's blocked send looks whether the stream is being stopped.
const BLOCKED_SEND_POLL: Duration = Duration::from_millis(100);

/// State shared by the two appsink callbacks of one session.
pub(super) struct Session {
    pub key: StreamKey,
    pub stats: Arc<StreamStats>,
    pub heartbeat: Arc<Heartbeat>,
    /// Taken by [`Session::close`]: afterwards this session holds no sender of the stream.
    outputs: Mutex<Option<Outputs>>,
    /// Set before teardown, so a file blocked on a full queue gives up instead of deadlocking it.
    stopping: AtomicBool,
    /// Stream-clock time at which this session's running time 0 lies.
    pub offset_ms: u64,
    video: Mutex<VideoState>,
    audio: Mutex<AudioState>,
    audio_chunk_samples: usize,
    /// Files block on a full channel; live streams drop (and count) instead.
    block_when_full: bool,
}

struct VideoState {
    dedup: NearDuplicateFilter,
    /// Only used with `decode = "all"`: in keyframe mode the decoder probe already rate-limits.
    limiter: Option<RateLimiter>,
}

#[derive(Default)]
struct AudioState {
    pending: Vec<f32>,
    pending_pts_ms: Option<u64>,
}

impl Session {
    pub fn new(
        key: StreamKey,
        cfg: &IngestConfig,
        stats: Arc<StreamStats>,
        heartbeat: Arc<Heartbeat>,
        outputs: Outputs,
        offset_ms: u64,
        block_when_full: bool,
    ) -> Arc<Self> {
        let limiter = (cfg.decode == DecodeMode::All).then(|| RateLimiter::new(cfg.max_rate_hz));
        Arc::new(Self {
            key,
            stats,
            heartbeat,
            outputs: Mutex::new(Some(outputs)),
            stopping: AtomicBool::new(false),
            offset_ms,
            video: Mutex::new(VideoState {
                dedup: NearDuplicateFilter::new(
                    cfg.dedup_max_distance,
                    (cfg.dedup_refresh_secs * 1000.0) as u64,
                ),
                limiter,
            }),
            audio: Mutex::new(AudioState::default()),
            audio_chunk_samples: (AUDIO_RATE as usize * cfg.audio_chunk_ms as usize) / 1000,
            block_when_full,
        })
    }

    /// The pipeline is being torn down: blocked sends give up.
    pub fn stop(&self) {
        self.stopping.store(true, Relaxed);
    }

    /// Drops this session's senders (after teardown and the audio flush): the stream's end, once the
    /// supervisor's own copy is gone too.
    pub fn close(&self) {
        if let Ok(mut o) = self.outputs.lock() {
            o.take();
        }
    }

    fn outputs(&self) -> Option<Outputs> {
        self.outputs.lock().ok().and_then(|o| o.clone())
    }

    /// A live stream never waits (full = drop, counted by the caller); a file waits for its consumer
    /// (GStreamer simply pauses) unless the stream is being stopped.
    fn deliver<T>(&self, tx: &Sender<T>, msg: T) -> Result<(), TrySendError<T>> {
        if !self.block_when_full {
            return tx.try_send(msg);
        }
        let mut msg = msg;
        loop {
            match tx.send_timeout(msg, BLOCKED_SEND_POLL) {
                Ok(()) => return Ok(()),
                Err(SendTimeoutError::Disconnected(m)) => return Err(TrySendError::Disconnected(m)),
                Err(SendTimeoutError::Timeout(m)) if self.stopping.load(Relaxed) => return Err(TrySendError::Full(m)),
                Err(SendTimeoutError::Timeout(m)) => msg = m,
            }
        }
    }

    pub fn install(self: &Arc<Self>, keyframes: &AppSink, audio: Option<&AppSink>) {
        let this = self.clone();
        keyframes.set_callbacks(
            AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    this.heartbeat.beat();
                    this.on_video(&sample);
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        let Some(audio) = audio else { return };
        let this = self.clone();
        let on_eos = self.clone();
        audio.set_callbacks(
            AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    this.heartbeat.beat();
                    this.on_audio(&sample);
                    Ok(gst::FlowSuccess::Ok)
                })
                .eos(move |_| on_eos.flush_audio())
                .build(),
        );
    }

    /// Stream-clock milliseconds of a buffer: its running time plus the session offset.
    fn pts_ms(&self, sample: &gst::Sample) -> Option<u64> {
        let pts = sample.buffer()?.pts()?;
        let running = sample
            .segment()
            .and_then(|s| s.downcast_ref::<gst::ClockTime>())
            .and_then(|s| s.to_running_time(pts))
            .unwrap_or(pts);
        Some(self.offset_ms + running.mseconds())
    }

    fn on_video(&self, sample: &gst::Sample) {
        let Some(pts_ms) = self.pts_ms(sample) else {
            return;
        };
        let Ok(mut state) = self.video.lock() else {
            return;
        };
        if let Some(limiter) = state.limiter.as_mut()
            && !limiter.admit(pts_ms * 1_000_000)
        {
            return;
        }
        let Some(image) = rgb_image(sample) else {
            tracing::warn!(stream = %self.key.id, "keyframe buffer could not be mapped as RGB");
            return;
        };
        let hash = phash(&image);
        if !state.dedup.admit(hash, pts_ms) {
            self.stats.duplicates_skipped.fetch_add(1, Relaxed);
            return;
        }
        drop(state);
        let frame = Keyframe {
            stream_id: self.key.id.clone(),
            generation: self.key.generation,
            seq: self.stats.keyframes.load(Relaxed),
            pts_ms,
            captured_at: SystemTime::now(),
            image,
            phash: hash,
        };
        let Some(outputs) = self.outputs() else { return };
        if let Some(preview) = &outputs.preview {
            preview(&frame);
        }
        match self.deliver(&outputs.keyframes, frame) {
            Ok(()) => self.stats.keyframe_delivered(),
            Err(TrySendError::Full(_)) => {
                self.stats.dropped.fetch_add(1, Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => self.consumer_gone("keyframes"),
        }
    }

    fn on_audio(&self, sample: &gst::Sample) {
        let Some(buffer) = sample.buffer() else {
            return;
        };
        let pts_ms = self.pts_ms(sample);
        let Ok(map) = buffer.map_readable() else {
            return;
        };
        let bytes = map.as_slice();
        let Ok(mut state) = self.audio.lock() else {
            return;
        };
        if state.pending_pts_ms.is_none() {
            state.pending_pts_ms = pts_ms;
        }
        state.pending.extend(
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        );
        if state.pending.len() >= self.audio_chunk_samples {
            self.send_audio(&mut state);
        }
    }

    /// Sends what is pending (end of stream or session teardown), so the total duration adds up.
    pub fn flush_audio(&self) {
        if let Ok(mut state) = self.audio.lock()
            && !state.pending.is_empty()
        {
            self.send_audio(&mut state);
        }
    }

    fn send_audio(&self, state: &mut AudioState) {
        let samples = std::mem::take(&mut state.pending);
        let pts_ms = state.pending_pts_ms.take().unwrap_or(self.offset_ms);
        let ms = samples.len() as u64 * 1000 / AUDIO_RATE as u64;
        let chunk = AudioChunk {
            stream_id: self.key.id.clone(),
            generation: self.key.generation,
            pts_ms,
            sample_rate: AUDIO_RATE,
            samples,
        };
        let Some(tx) = self.outputs().and_then(|o| o.audio) else { return };
        match self.deliver(&tx, chunk) {
            Ok(()) => {
                self.stats.audio_ms.fetch_add(ms, Relaxed);
            }
            Err(TrySendError::Full(_)) => {
                self.stats.audio_dropped.fetch_add(1, Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => self.consumer_gone("audio"),
        }
    }

    /// The stage after ingest has stopped: nothing this stream sends can arrive any more. The service
    /// notices the dead stage through its health (src/service/health.rs); this says it once per session.
    fn consumer_gone(&self, what: &str) {
        if !self.stopping.swap(true, Relaxed) {
            tracing::error!(stream = %self.key.id, "{what} channel closed by its consumer: output of this stream is lost");
        }
    }
}

/// Copies a decoded RGB frame into a tightly packed image (GStreamer rows may be padded).
fn rgb_image(sample: &gst::Sample) -> Option<image::RgbImage> {
    let info = gst_video::VideoInfo::from_caps(sample.caps()?).ok()?;
    let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(sample.buffer()?, &info).ok()?;
    let (w, h) = (frame.width() as usize, frame.height() as usize);
    let stride = frame.plane_stride()[0] as usize;
    let data = frame.plane_data(0).ok()?;
    let mut out = Vec::with_capacity(w * h * 3);
    for row in 0..h {
        out.extend_from_slice(data.get(row * stride..row * stride + w * 3)?);
    }
    image::RgbImage::from_raw(w as u32, h as u32, out)
}
