//! The encode stage: a dynamic batcher shared by all streams. Each stream has its own bounded queue (the
//! keyframe channel ingest delivers into); one worker thread fills batches round-robin over the queues
//! (one frame per stream per pass, so a busy stream cannot starve a quiet one and a file waiting on its
//! full queue holds up nobody else; live queues before files), flushes when the batch is full or its oldest frame has waited
//! `max_wait`, and sends every embedding out together with the frame it came from. A queue's close is
//! its stream's end: once drained, `Flow::End` goes out behind the stream's last embedding.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Select, Sender, TryRecvError, TrySendError, bounded, unbounded};
use image::RgbImage;

use super::error::EncodeError;
use super::metrics::BatcherMetrics;
use super::model::{Encoder, FrameVectors};
use crate::messages::{Flow, Keyframe, StreamKey};
use crate::stage::{self, Health};

/// What the batcher runs: one keyframe's query vectors per image, in order. `localise` false: the whole
/// frames only (the batcher is behind on live streams and sheds the region passes before any frame).
pub trait BatchEncode: Send + 'static {
    fn encode_batch(
        &mut self,
        images: &[&RgbImage],
        texts: &[Option<&str>],
        localise: bool,
    ) -> Result<Vec<FrameVectors>, EncodeError>;
}

impl BatchEncode for Encoder {
    fn encode_batch(
        &mut self,
        images: &[&RgbImage],
        texts: &[Option<&str>],
        localise: bool,
    ) -> Result<Vec<FrameVectors>, EncodeError> {
        self.encode_frames(images, texts, localise)
    }
}

/// Gives the text heard (or read) on a stream before a keyframe's pts, fused by the text tower. Asked when
/// the frame's turn comes, so speech transcribed while it queued still counts.
pub type Tagger = Box<dyn Fn(&StreamKey, u64) -> Option<String> + Send>;

/// The result for one keyframe: the frame itself travels on with its embedding.
#[derive(Debug, Clone)]
pub struct Embedded {
    pub frame: Keyframe,
    pub text: Option<String>,
    /// The whole view's query vector.
    pub embedding: Vec<f32>,
    /// Salient regions small in the frame, each embedded from a crop (`[encoder.localise]`).
    pub regions: Vec<super::model::RegionVector>,
    /// Time between the frame's capture (it left the decoder) and the start of inference.
    pub waited: Duration,
}

/// What the encode stage sends on: embeddings, and each stream's end behind its last one.
pub type EncodedMsg = Flow<Embedded>;

#[derive(Debug, Clone, Copy)]
pub struct BatcherConfig {
    pub max_batch: usize,
    pub max_wait: Duration,
    pub queue_per_stream: usize,
    /// Results buffered before the worker blocks on a slow consumer.
    pub output_capacity: usize,
}

impl From<&super::config::EncoderConfig> for BatcherConfig {
    fn from(c: &super::config::EncoderConfig) -> Self {
        BatcherConfig {
            max_batch: c.max_batch,
            max_wait: Duration::from_millis(c.max_wait_ms),
            queue_per_stream: c.queue_per_stream,
            output_capacity: c.max_batch * 4,
        }
    }
}

/// A frame taken from its queue, with its speech tag.
struct Pending {
    frame: Keyframe,
    text: Option<String>,
    /// When it was captured, on the monotonic clock: `max_wait` counts from here, so a backlog (frames
    /// that already waited in their queue) is flushed at once instead of waiting for company.
    at: Instant,
    /// Its queue's `max_age` (live streams).
    max_age: Option<Duration>,
}

struct Queue {
    stream: StreamKey,
    rx: Receiver<Keyframe>,
    closed: bool,
    /// Live streams: frames captured longer ago than this when their turn comes are dropped (counted in
    /// `expired`). Measured from `captured_at`, so time spent anywhere since the decoder counts.
    max_age: Option<Duration>,
}

pub struct Batcher {
    control: Sender<Queue>,
    cfg: BatcherConfig,
    metrics: Arc<BatcherMetrics>,
    worker: JoinHandle<()>,
}

/// A stream's queue, for callers that submit frames themselves (tests, benches). Dropping it closes the
/// queue: the stream's `End` follows its last embedding.
pub struct StreamSender {
    stream: StreamKey,
    tx: Sender<Keyframe>,
}

impl StreamSender {
    /// Submits a frame, blocking while this stream's queue is full (back-pressure towards the caller).
    pub fn send(&self, frame: Keyframe) -> Result<(), EncodeError> {
        self.tx.send(frame).map_err(|_| EncodeError::Stopped)
    }

    /// Submits a frame unless the queue is full; the frame comes back in the error (hence its size).
    #[allow(clippy::result_large_err)]
    pub fn try_send(&self, frame: Keyframe) -> Result<(), TrySendError<Keyframe>> {
        self.tx.try_send(frame)
    }

    pub fn stream(&self) -> &StreamKey {
        &self.stream
    }
}

impl Batcher {
    /// Starts the worker thread (a supervised stage, see [`crate::stage`]); embeddings and stream ends
    /// come out of the returned receiver. `tag` gives each frame its speech text (`None`: no text).
    pub fn start<E: BatchEncode>(
        encoder: E,
        cfg: BatcherConfig,
        tag: Option<Tagger>,
        health: &Health,
    ) -> std::io::Result<(Batcher, Receiver<EncodedMsg>)> {
        let cfg = BatcherConfig {
            max_batch: cfg.max_batch.max(1),
            queue_per_stream: cfg.queue_per_stream.max(1),
            ..cfg
        };
        let (control, control_rx) = unbounded();
        let (out_tx, out_rx) = bounded(cfg.output_capacity.max(1));
        let metrics = Arc::new(BatcherMetrics::default());
        let m = metrics.clone();
        let worker = stage::spawn(health, "encoder", move || {
            Worker {
                encoder,
                cfg,
                tag: tag.unwrap_or_else(|| Box::new(|_, _| None)),
                control: control_rx,
                control_open: true,
                streams: Vec::new(),
                cursor: 0,
                out: out_tx,
                ended_pending: Vec::new(),
                metrics: m,
            }
            .run()
        })?;
        Ok((Batcher { control, cfg, metrics, worker }, out_rx))
    }

    /// Serves `frames` as one stream's queue; the channel's close is the stream's end. `max_age` is for
    /// live streams: a frame captured longer ago than that when its turn comes is dropped, so an
    /// overloaded encoder works on what is on screen now, not on a backlog. Files (`None`) wait.
    pub fn open(
        &self,
        stream: StreamKey,
        frames: Receiver<Keyframe>,
        max_age: Option<Duration>,
    ) -> Result<(), EncodeError> {
        self.control
            .send(Queue { stream, rx: frames, closed: false, max_age })
            .map_err(|_| EncodeError::Stopped)
    }

    /// Capacity of one stream's queue (`encoder.queue_per_stream`).
    pub fn queue_capacity(&self) -> usize {
        self.cfg.queue_per_stream
    }

    /// Opens a queue of `queue_capacity` for one stream; every frame submitted is encoded.
    pub fn stream(&self, stream: StreamKey) -> Result<StreamSender, EncodeError> {
        self.sender(stream, None)
    }

    /// Like [`Batcher::stream`], with live expiry (see [`Batcher::open`]).
    pub fn live_stream(&self, stream: StreamKey, max_age: Duration) -> Result<StreamSender, EncodeError> {
        self.sender(stream, Some(max_age))
    }

    fn sender(&self, stream: StreamKey, max_age: Option<Duration>) -> Result<StreamSender, EncodeError> {
        let (tx, rx) = bounded(self.cfg.queue_per_stream);
        self.open(stream.clone(), rx, max_age)?;
        Ok(StreamSender { stream, tx })
    }

    pub fn metrics(&self) -> Arc<BatcherMetrics> {
        self.metrics.clone()
    }

    /// Stops accepting new streams and waits until every open stream has been closed and drained.
    pub fn finish(self) {
        drop(self.control);
        // A panic is reported by the stage wrapper (health), not here.
        let _ = self.worker.join();
    }
}

struct Worker<E> {
    encoder: E,
    cfg: BatcherConfig,
    tag: Tagger,
    control: Receiver<Queue>,
    control_open: bool,
    streams: Vec<Queue>,
    /// Stream to visit first in the next pass.
    cursor: usize,
    out: Sender<EncodedMsg>,
    /// Closed streams whose last frames may still sit in the batch being built.
    ended_pending: Vec<StreamKey>,
    metrics: Arc<BatcherMetrics>,
}

/// The stage after the encoder has gone: nothing encoded can be delivered any more.
const OUTPUT_GONE: &str = "its output channel closed (the matcher has stopped)";

impl<E: BatchEncode> Worker<E> {
    fn run(mut self) -> Result<(), String> {
        let mut batch: Vec<Pending> = Vec::with_capacity(self.cfg.max_batch);
        loop {
            self.accept_streams();
            self.sweep(&mut batch);
            if batch.is_empty() {
                self.announce_ends()?;
                if !self.control_open && self.streams.is_empty() {
                    return Ok(());
                }
                self.wait(None);
                continue;
            }
            let deadline = batch.iter().map(|p| p.at).min().unwrap_or_else(Instant::now) + self.cfg.max_wait;
            while batch.len() < self.cfg.max_batch && Instant::now() < deadline {
                if !self.wait(Some(deadline)) {
                    break;
                }
                self.accept_streams();
                self.sweep(&mut batch);
            }
            self.flush(&mut batch)?;
            self.announce_ends()?;
        }
    }

    /// Called with no batch pending: every frame of the closed streams has been sent out, so their ends
    /// go out behind them (a blocking send: the end is never dropped).
    fn announce_ends(&mut self) -> Result<(), String> {
        for key in self.ended_pending.drain(..) {
            self.out.send(Flow::End(key)).map_err(|_| OUTPUT_GONE.to_string())?;
        }
        Ok(())
    }

    fn accept_streams(&mut self) {
        loop {
            match self.control.try_recv() {
                Ok(q) => {
                    self.streams.push(q);
                    self.metrics
                        .open_queues
                        .store(self.streams.len() as u64, std::sync::atomic::Ordering::Relaxed);
                }
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => {
                    self.control_open = false;
                    return;
                }
            }
        }
    }

    /// Takes frames round-robin, one per stream per pass, until the batch is full or the queues are empty;
    /// live streams' frames first. A file waits for its turn (its streaming thread blocks), a live stream
    /// drops what its queue cannot hold: many files opened next to one live stream would otherwise take
    /// all but a sliver of the encoder from it.
    fn sweep(&mut self, batch: &mut Vec<Pending>) {
        if self.streams.iter().any(|q| q.max_age.is_some()) {
            self.sweep_of(batch, true);
        }
        self.sweep_of(batch, false);
    }

    fn sweep_of(&mut self, batch: &mut Vec<Pending>, live_only: bool) {
        loop {
            let n = self.streams.len();
            if n == 0 {
                return;
            }
            let mut progressed = false;
            let mut visited = 0;
            while visited < n && batch.len() < self.cfg.max_batch {
                let q = &mut self.streams[(self.cursor + visited) % n];
                if live_only && q.max_age.is_none() {
                    visited += 1;
                    continue;
                }
                match q.rx.try_recv() {
                    Ok(f) if q.max_age.is_some_and(|m| age(&f) > m) => {
                        self.metrics.expired.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        progressed = true;
                    }
                    Ok(frame) => {
                        let text = (self.tag)(&q.stream, frame.pts_ms);
                        let at = Instant::now().checked_sub(age(&frame)).unwrap_or_else(Instant::now);
                        batch.push(Pending { frame, text, at, max_age: q.max_age });
                        progressed = true;
                    }
                    Err(TryRecvError::Empty) => {}
                    Err(TryRecvError::Disconnected) => q.closed = true,
                }
                visited += 1;
            }
            self.cursor = (self.cursor + visited) % n;
            if self.streams.iter().any(|q| q.closed) {
                self.streams.retain(|q| {
                    if q.closed {
                        tracing::debug!(stream = %q.stream, "encoder queue closed");
                        self.ended_pending.push(q.stream.clone());
                    }
                    !q.closed
                });
                self.metrics
                    .open_queues
                    .store(self.streams.len() as u64, std::sync::atomic::Ordering::Relaxed);
                self.cursor = if self.streams.is_empty() { 0 } else { self.cursor % self.streams.len() };
            }
            if !progressed || batch.len() >= self.cfg.max_batch {
                return;
            }
        }
    }

    /// Blocks until a queue or the control channel has something (or is closed); false on timeout.
    fn wait(&self, deadline: Option<Instant>) -> bool {
        let mut sel = Select::new();
        if self.control_open {
            sel.recv(&self.control);
        }
        for q in &self.streams {
            sel.recv(&q.rx);
        }
        match deadline {
            Some(d) => sel.ready_deadline(d).is_ok(),
            None => {
                sel.ready();
                true
            }
        }
    }

    /// Encodes and sends the batch.
    fn flush(&mut self, batch: &mut Vec<Pending>) -> Result<(), String> {
        let waits: Vec<Duration> = batch.iter().map(|p| age(&p.frame)).collect();
        self.metrics.record_batch(batch.len(), waits.iter().copied());
        let items = std::mem::take(batch);
        let results = self.encode(&items);
        *batch = Vec::with_capacity(self.cfg.max_batch);
        for ((p, result), waited) in items.into_iter().zip(results).zip(waits) {
            match result {
                Ok(FrameVectors { whole: embedding, regions }) => {
                    self.metrics.region_crops.fetch_add(regions.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    let e = Embedded { frame: p.frame, text: p.text, embedding, regions, waited };
                    self.out.send(Flow::Item(e)).map_err(|_| OUTPUT_GONE.to_string())?;
                }
                Err(e) => {
                    self.metrics.failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::warn!(stream = %p.frame.stream_id, seq = p.frame.seq, error = %e, "frame not encoded");
                }
            }
        }
        Ok(())
    }

    /// One result per item. When the batch fails as a whole, each frame is retried alone so one bad frame
    /// costs only itself.
    fn encode(&mut self, items: &[Pending]) -> Vec<Result<FrameVectors, EncodeError>> {
        let images: Vec<&RgbImage> = items.iter().map(|p| &p.frame.image).collect();
        let texts: Vec<Option<&str>> = items.iter().map(|p| p.text.as_deref()).collect();
        // Region passes cost up to one more tower pass each. A batch goes without them when a live frame
        // in it has already used a quarter of its age budget (500 ms by default: the encoder is behind
        // and catches up instead of letting latency grow; at half the budget, 20 live streams on 2 cores
        // reached a p99 of 2.1 s, against 1.0 s without region passes), and when it holds file frames
        // while live streams are open (a file's backlog would otherwise fill whole batches at two or three
        // passes a frame, and the live frames arriving meanwhile would expire). Files alone always get them.
        let live_open = self.streams.iter().any(|q| q.max_age.is_some());
        let localise = items.iter().all(|p| match p.max_age {
            Some(m) => age(&p.frame) < m / 4,
            None => !live_open,
        });
        if !localise {
            self.metrics.regions_shed.fetch_add(items.len() as u64, std::sync::atomic::Ordering::Relaxed);
        }
        match self.encoder.encode_batch(&images, &texts, localise) {
            Ok(v) if v.len() == items.len() => v.into_iter().map(Ok).collect(),
            Ok(v) => {
                let reason = format!("encoder returned {} vectors for {} frames", v.len(), items.len());
                items
                    .iter()
                    .map(|_| Err(EncodeError::Output { name: "batch".into(), reason: reason.clone() }))
                    .collect()
            }
            Err(e) if items.len() == 1 => vec![Err(e)],
            Err(e) => {
                tracing::warn!(error = %e, size = items.len(), "batch failed; retrying frames one by one");
                (0..items.len())
                    .map(|i| {
                        self.encoder
                            .encode_batch(&images[i..=i], &texts[i..=i], localise)
                            .and_then(|mut v| v.pop().ok_or(EncodeError::Stopped))
                    })
                    .collect()
            }
        }
    }
}

/// Time since the frame left the decoder (zero if the wall clock stepped back).
fn age(frame: &Keyframe) -> Duration {
    SystemTime::now().duration_since(frame.captured_at).unwrap_or_default()
}
