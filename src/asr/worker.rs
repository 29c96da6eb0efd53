//! The ASR stage: one VAD thread segments every stream's audio (cheap: one small model call per 32 ms
//! window), and `workers` Moonshine threads transcribe the utterances. The queue between them is bounded:
//! when the workers fall behind, new utterances are dropped and counted rather than queued without bound,
//! so transcripts stay current and memory stays flat. Video never waits for any of this.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError, TrySendError};
use serde::Serialize;

use super::config::AsrConfig;
use super::moonshine::Moonshine;
use super::segment::{Segmenter, Utterance};
use super::vad::{SAMPLE_RATE, Vad, VadState, WINDOW};
use super::{AsrError, Transcript};
use crate::encode::Provider;
use crate::encode::runtime::SessionOptions;
use crate::messages::{AudioChunk, StreamKey};

/// A jump in a stream's audio clock larger than this (a reconnect, lost data) ends the open utterance.
const MAX_GAP_MS: u64 = 300;
/// A stream without audio for this long (ended, removed, stalled) has its open utterance transcribed and
/// its VAD state freed; the audio channel carries no end-of-stream marker.
const IDLE_AFTER: Duration = Duration::from_secs(10);
const SWEEP_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub struct AsrMetrics {
    /// Audio analysed by the VAD, in ms.
    pub audio_ms: AtomicU64,
    pub utterances: AtomicU64,
    /// Utterances dropped because every worker was busy and the queue was full.
    pub dropped: AtomicU64,
    pub transcribed: AtomicU64,
    /// Transcripts discarded as empty or below `min_confidence`.
    pub rejected: AtomicU64,
    /// Audio transcribed, in ms, and the time spent on it (VAD and Moonshine, thread time).
    pub speech_ms: AtomicU64,
    pub decode_us: AtomicU64,
    pub vad_us: AtomicU64,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct AsrCounters {
    pub audio_ms: u64,
    pub utterances: u64,
    pub dropped: u64,
    pub transcribed: u64,
    pub rejected: u64,
    pub speech_ms: u64,
    pub decode_ms: u64,
    pub vad_ms: u64,
}

impl AsrMetrics {
    pub fn snapshot(&self) -> AsrCounters {
        AsrCounters {
            audio_ms: self.audio_ms.load(Relaxed),
            utterances: self.utterances.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            transcribed: self.transcribed.load(Relaxed),
            rejected: self.rejected.load(Relaxed),
            speech_ms: self.speech_ms.load(Relaxed),
            decode_ms: self.decode_us.load(Relaxed) / 1000,
            vad_ms: self.vad_us.load(Relaxed) / 1000,
        }
    }
}

/// An utterance waiting for a worker.
struct Job {
    stream: StreamKey,
    start_ms: u64,
    samples: Vec<f32>,
}

pub struct AsrStage {
    threads: Vec<JoinHandle<()>>,
    pub metrics: Arc<AsrMetrics>,
}

impl AsrStage {
    /// Loads the models (failing loudly when a file is missing) and starts the threads. Runs until
    /// `audio` closes; then open utterances are flushed and transcribed before the threads end.
    /// The threads are supervised stages (`asr-N`, `vad`): a panic fails `health` (see [`crate::stage`]).
    /// `audio`: the input channels, most urgent first (the service passes live streams' channel before
    /// the files' one, so a file that keeps its channel full cannot crowd live speech out).
    pub fn start(
        cfg: &AsrConfig,
        audio: Vec<Receiver<AudioChunk>>,
        on_transcript: impl Fn(Transcript) + Send + Sync + 'static,
        health: &crate::stage::Health,
    ) -> Result<Self, AsrError> {
        let dir = cfg.model_dir();
        let opts = SessionOptions { provider: Provider::Cpu, intra_threads: cfg.intra_threads };
        let vad = Vad::open(&dir.join("silero_vad.onnx"), opts)?;
        let metrics = Arc::new(AsrMetrics::default());
        let on_transcript: Arc<dyn Fn(Transcript) + Send + Sync> = Arc::new(on_transcript);
        let (job_tx, job_rx) = crossbeam_channel::bounded::<Job>(cfg.queue);
        let mut threads = Vec::new();
        for i in 0..cfg.workers {
            let mut model = Moonshine::open(&dir.join("base-en"), opts, cfg.max_tokens_per_sec)?;
            let (rx, m, out) = (job_rx.clone(), metrics.clone(), on_transcript.clone());
            let min_conf = cfg.min_confidence;
            threads.push(crate::stage::spawn(health, &format!("asr-{i}"), move || {
                transcribe_loop(&mut model, rx, &m, min_conf, &*out);
                Ok(())
            })?);
        }
        let (vcfg, m) = (cfg.vad.clone(), metrics.clone());
        let mut vad = vad;
        threads.push(crate::stage::spawn(health, "vad", move || {
            segment_loop(&mut vad, &vcfg, audio, job_tx, &m);
            Ok(())
        })?);
        Ok(AsrStage { threads, metrics })
    }

    /// The stage's threads, for a caller that joins its threads together; they end after `audio` closes.
    pub fn into_threads(self) -> Vec<JoinHandle<()>> {
        self.threads
    }

    /// Waits for every thread (call after the audio senders are gone).
    pub fn join(self) {
        // A panic has been reported by the stage wrapper.
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Per-stream segmentation state.
struct StreamSeg {
    vad: VadState,
    seg: Segmenter,
    /// Stream-clock time of the segmenter's sample 0.
    origin_ms: u64,
    /// Samples since `origin_ms`.
    pos: u64,
    pending: Vec<f32>,
    last_seen: Instant,
}

impl StreamSeg {
    fn expected_ms(&self) -> u64 {
        self.origin_ms + self.pos * 1000 / SAMPLE_RATE as u64
    }
}

fn segment_loop(
    vad: &mut Vad,
    cfg: &super::VadConfig,
    audio: Vec<Receiver<AudioChunk>>,
    jobs: Sender<Job>,
    m: &AsrMetrics,
) {
    let mut audio = AudioInputs::new(audio);
    // Per stream session: a stream added again under the same id starts with a fresh segmenter.
    let mut streams: HashMap<StreamKey, StreamSeg> = HashMap::new();
    let mut warned_rate = false;
    let submit = |key: &StreamKey, origin_ms: u64, u: Utterance| {
        m.utterances.fetch_add(1, Relaxed);
        let job = Job {
            stream: key.clone(),
            start_ms: origin_ms + u.start * 1000 / SAMPLE_RATE as u64,
            samples: u.samples,
        };
        match jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(job)) => {
                let n = m.dropped.fetch_add(1, Relaxed) + 1;
                tracing::warn!(stream = %job.stream, start_ms = job.start_ms, dropped = n,
                    "ASR workers saturated: utterance dropped");
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    };
    let mut last_sweep = Instant::now();
    loop {
        let chunk = match audio.recv_timeout(SWEEP_EVERY) {
            Ok(c) => Some(c),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        if last_sweep.elapsed() >= SWEEP_EVERY {
            last_sweep = Instant::now();
            let idle: Vec<StreamKey> = streams
                .iter()
                .filter(|(_, s)| s.last_seen.elapsed() >= IDLE_AFTER)
                .map(|(id, _)| id.clone())
                .collect();
            for id in idle {
                if let Some(mut st) = streams.remove(&id) {
                    tracing::debug!(stream = %id, "no audio for a while: segmentation state freed");
                    if let Some(u) = st.seg.flush() {
                        submit(&id, st.origin_ms, u);
                    }
                }
            }
        }
        let Some(chunk) = chunk else { continue };
        if chunk.sample_rate != SAMPLE_RATE {
            if !warned_rate {
                tracing::error!(rate = chunk.sample_rate, "ASR expects 16 kHz audio; chunk ignored");
                warned_rate = true;
            }
            continue;
        }
        m.audio_ms.fetch_add((chunk.samples.len() as u64 * 1000) / SAMPLE_RATE as u64, Relaxed);
        let key = StreamKey { id: chunk.stream_id.clone(), generation: chunk.generation };
        let st = streams.entry(key.clone()).or_insert_with(|| StreamSeg {
            vad: VadState::default(),
            seg: Segmenter::new(cfg),
            origin_ms: chunk.pts_ms,
            pos: 0,
            pending: Vec::new(),
            last_seen: Instant::now(),
        });
        st.last_seen = Instant::now();
        if st.expected_ms().abs_diff(chunk.pts_ms) > MAX_GAP_MS {
            tracing::debug!(stream = %chunk.stream_id, expected = st.expected_ms(), got = chunk.pts_ms,
                "audio clock jump: restarting segmentation");
            if let Some(u) = st.seg.flush() {
                submit(&key, st.origin_ms, u);
            }
            st.vad.reset();
            st.pending.clear();
            st.origin_ms = chunk.pts_ms;
            st.pos = 0;
        }
        st.pending.extend_from_slice(&chunk.samples);
        let started = Instant::now();
        let mut at = 0;
        while st.pending.len() - at >= WINDOW {
            let window = &st.pending[at..at + WINDOW];
            at += WINDOW;
            st.pos += WINDOW as u64;
            let p = match vad.prob(&mut st.vad, window) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(stream = %chunk.stream_id, "VAD failed: {e}");
                    0.0
                }
            };
            if let Some(u) = st.seg.push(window, p) {
                submit(&key, st.origin_ms, u);
            }
        }
        st.pending.drain(..at);
        m.vad_us.fetch_add(started.elapsed().as_micros() as u64, Relaxed);
    }
    // Audio closed: every stream has ended; their last utterances still count.
    for (id, mut st) in streams {
        if let Some(u) = st.seg.flush() {
            // Blocking here is fine: nothing else is left to wait on, and dropping the end of a
            // file's speech would lose text for no reason.
            m.utterances.fetch_add(1, Relaxed);
            let job = Job {
                stream: id,
                start_ms: st.origin_ms + u.start * 1000 / SAMPLE_RATE as u64,
                samples: u.samples,
            };
            let _ = jobs.send(job);
        }
    }
}

/// Audio channels in priority order; a closed one is dropped from the set. (Also the service's drain
/// when nothing transcribes.)
pub struct AudioInputs(Vec<Option<Receiver<AudioChunk>>>);

impl AudioInputs {
    pub fn new(channels: Vec<Receiver<AudioChunk>>) -> Self {
        AudioInputs(channels.into_iter().map(Some).collect())
    }

    /// The next chunk, taken from the first channel that has one (waiting at most `timeout`);
    /// `Disconnected` once every channel is closed and drained.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<AudioChunk, RecvTimeoutError> {
        let deadline = Instant::now() + timeout;
        loop {
            for slot in self.0.iter_mut() {
                if let Some(rx) = slot {
                    match rx.try_recv() {
                        Ok(c) => return Ok(c),
                        Err(TryRecvError::Disconnected) => *slot = None,
                        Err(TryRecvError::Empty) => {}
                    }
                }
            }
            let open: Vec<&Receiver<AudioChunk>> = self.0.iter().flatten().collect();
            if open.is_empty() {
                return Err(RecvTimeoutError::Disconnected);
            }
            let mut sel = crossbeam_channel::Select::new();
            for rx in &open {
                sel.recv(rx);
            }
            // Something is ready (or closed): the priority pass above takes it.
            if sel.ready_deadline(deadline).is_err() {
                return Err(RecvTimeoutError::Timeout);
            }
        }
    }
}

fn transcribe_loop(
    model: &mut Moonshine,
    jobs: Receiver<Job>,
    m: &AsrMetrics,
    min_confidence: f32,
    out: &(dyn Fn(Transcript) + Send + Sync),
) {
    for job in jobs {
        let started = Instant::now();
        let result = model.transcribe(&job.samples);
        m.decode_us.fetch_add(started.elapsed().as_micros() as u64, Relaxed);
        let dur_ms = job.samples.len() as u64 * 1000 / SAMPLE_RATE as u64;
        m.speech_ms.fetch_add(dur_ms, Relaxed);
        let d = match result {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(stream = %job.stream, start_ms = job.start_ms, "ASR failed: {e}");
                continue;
            }
        };
        let confidence = d.mean_logprob.exp();
        // Noise and music can make the decoder produce confident-looking fragments; empty text, a
        // low confidence or a hit token bound (a repetition loop) are not worth tagging frames with.
        if d.text.trim().is_empty() || confidence < min_confidence || d.truncated {
            m.rejected.fetch_add(1, Relaxed);
            tracing::debug!(stream = %job.stream, text = %d.text, confidence, truncated = d.truncated,
                "transcript rejected");
            continue;
        }
        m.transcribed.fetch_add(1, Relaxed);
        out(Transcript {
            stream_id: job.stream.id,
            generation: job.stream.generation,
            start_ms: job.start_ms,
            end_ms: job.start_ms + dur_ms,
            text: d.text,
            confidence,
            mean_logprob: d.mean_logprob,
            truncated: d.truncated,
        });
    }
}
