//! Dynamic batcher shared by all streams. Each stream submits into its own bounded queue; one worker
//! thread fills batches round-robin over the queues (one frame per stream per pass, so a busy stream
//! cannot starve a quiet one), flushes when the batch is full or its oldest frame has waited `max_wait`,
//! and sends every embedding out together with the frame it came from. When a stream's queue is closed
//! and drained, its id goes out on [`Batcher::ended`] after the last of its embeddings.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Select, Sender, TryRecvError, TrySendError, bounded, unbounded};
use image::RgbImage;

use super::error::EncodeError;
use super::metrics::BatcherMetrics;
use super::model::{Encoder, Side};
use crate::messages::{Keyframe, StreamId};

/// What the batcher runs: one query vector per image, in order.
pub trait BatchEncode: Send + 'static {
    fn encode_batch(
        &mut self,
        images: &[&RgbImage],
        texts: &[Option<&str>],
    ) -> Result<Vec<Vec<f32>>, EncodeError>;
}

impl BatchEncode for Encoder {
    fn encode_batch(
        &mut self,
        images: &[&RgbImage],
        texts: &[Option<&str>],
    ) -> Result<Vec<Vec<f32>>, EncodeError> {
        let clips: Vec<[&RgbImage; 1]> = images.iter().map(|i| [*i]).collect();
        let refs: Vec<&[&RgbImage]> = clips.iter().map(|c| c.as_slice()).collect();
        self.encode(&refs, texts, Side::Query)
    }
}

/// A keyframe to embed, with the text heard or read around it, if any.
#[derive(Debug, Clone)]
pub struct EncodeRequest {
    pub frame: Keyframe,
    pub text: Option<String>,
}

/// The result for one request: the frame itself travels back with its embedding.
#[derive(Debug, Clone)]
pub struct Embedded {
    pub frame: Keyframe,
    pub text: Option<String>,
    pub embedding: Vec<f32>,
    /// Time between submit and the start of inference.
    pub waited: Duration,
}

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

struct Pending {
    req: EncodeRequest,
    at: Instant,
}

struct Queue {
    stream: StreamId,
    rx: Receiver<Pending>,
    closed: bool,
    /// Live streams: frames older than this when their turn comes are dropped (counted in `expired`).
    max_age: Option<Duration>,
}

pub struct Batcher {
    control: Sender<Queue>,
    ended: Receiver<StreamId>,
    cfg: BatcherConfig,
    metrics: Arc<BatcherMetrics>,
    worker: JoinHandle<()>,
}

/// A stream's handle for submitting frames. Dropping it closes the stream's queue (after it drains).
pub struct StreamSender {
    stream: StreamId,
    tx: Sender<Pending>,
}

impl StreamSender {
    /// Submits a frame, blocking while this stream's queue is full (back-pressure towards ingest).
    pub fn send(&self, req: EncodeRequest) -> Result<(), EncodeError> {
        self.tx.send(Pending { req, at: Instant::now() }).map_err(|_| EncodeError::Stopped)
    }

    /// Submits a frame unless the queue is full; the frame comes back in the error (hence its size).
    #[allow(clippy::result_large_err)]
    pub fn try_send(&self, req: EncodeRequest) -> Result<(), TrySendError<EncodeRequest>> {
        self.tx.try_send(Pending { req, at: Instant::now() }).map_err(|e| match e {
            TrySendError::Full(p) => TrySendError::Full(p.req),
            TrySendError::Disconnected(p) => TrySendError::Disconnected(p.req),
        })
    }

    pub fn stream_id(&self) -> &StreamId {
        &self.stream
    }
}

impl Batcher {
    /// Starts the worker thread; embeddings come out of the returned receiver.
    pub fn start<E: BatchEncode>(
        encoder: E,
        cfg: BatcherConfig,
    ) -> std::io::Result<(Batcher, Receiver<Embedded>)> {
        let cfg = BatcherConfig {
            max_batch: cfg.max_batch.max(1),
            queue_per_stream: cfg.queue_per_stream.max(1),
            ..cfg
        };
        let (control, control_rx) = unbounded();
        let (out_tx, out_rx) = bounded(cfg.output_capacity.max(1));
        let (ended_tx, ended_rx) = unbounded();
        let metrics = Arc::new(BatcherMetrics::default());
        let m = metrics.clone();
        let worker = std::thread::Builder::new().name("livesku-encoder".into()).spawn(move || {
            Worker {
                encoder,
                cfg,
                control: control_rx,
                control_open: true,
                streams: Vec::new(),
                cursor: 0,
                out: out_tx,
                ended: ended_tx,
                ended_pending: Vec::new(),
                metrics: m,
            }
            .run()
        })?;
        Ok((Batcher { control, ended: ended_rx, cfg, metrics, worker }, out_rx))
    }

    /// Opens a queue for one stream; every frame submitted is encoded.
    pub fn stream(&self, stream: StreamId) -> Result<StreamSender, EncodeError> {
        self.open(stream, None)
    }

    /// Opens a queue for a live stream: a frame that has waited longer than `max_age` when its turn
    /// comes is dropped, so an overloaded encoder works on what is on screen now, not on a backlog.
    pub fn live_stream(&self, stream: StreamId, max_age: Duration) -> Result<StreamSender, EncodeError> {
        self.open(stream, Some(max_age))
    }

    fn open(&self, stream: StreamId, max_age: Option<Duration>) -> Result<StreamSender, EncodeError> {
        let (tx, rx) = bounded(self.cfg.queue_per_stream);
        self.control
            .send(Queue { stream: stream.clone(), rx, closed: false, max_age })
            .map_err(|_| EncodeError::Stopped)?;
        Ok(StreamSender { stream, tx })
    }

    /// Streams whose queue was closed, each sent once its last embedding is already in the output
    /// channel: a consumer that drains the output before acting on an id sees every frame of the stream.
    pub fn ended(&self) -> Receiver<StreamId> {
        self.ended.clone()
    }

    pub fn metrics(&self) -> Arc<BatcherMetrics> {
        self.metrics.clone()
    }

    /// Stops accepting new streams and waits until every open stream has been closed and drained.
    pub fn finish(self) {
        drop(self.control);
        if self.worker.join().is_err() {
            tracing::error!("encoder worker panicked");
        }
    }
}

struct Worker<E> {
    encoder: E,
    cfg: BatcherConfig,
    control: Receiver<Queue>,
    control_open: bool,
    streams: Vec<Queue>,
    /// Stream to visit first in the next pass.
    cursor: usize,
    out: Sender<Embedded>,
    ended: Sender<StreamId>,
    /// Closed streams whose last frames may still sit in the batch being built.
    ended_pending: Vec<StreamId>,
    metrics: Arc<BatcherMetrics>,
}

impl<E: BatchEncode> Worker<E> {
    fn run(mut self) {
        let mut batch: Vec<Pending> = Vec::with_capacity(self.cfg.max_batch);
        loop {
            self.accept_streams();
            self.sweep(&mut batch);
            if batch.is_empty() {
                self.announce_ends();
                if !self.control_open && self.streams.is_empty() {
                    return;
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
            if !self.flush(&mut batch) {
                return;
            }
            self.announce_ends();
        }
    }

    /// Called with no batch pending: every frame of the closed streams has been sent out.
    fn announce_ends(&mut self) {
        for id in self.ended_pending.drain(..) {
            let _ = self.ended.send(id);
        }
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

    /// Takes frames round-robin, one per stream per pass, until the batch is full or the queues are empty.
    fn sweep(&mut self, batch: &mut Vec<Pending>) {
        loop {
            let n = self.streams.len();
            if n == 0 {
                return;
            }
            let mut progressed = false;
            let mut visited = 0;
            while visited < n && batch.len() < self.cfg.max_batch {
                let q = &mut self.streams[(self.cursor + visited) % n];
                match q.rx.try_recv() {
                    Ok(p) if q.max_age.is_some_and(|m| p.at.elapsed() > m) => {
                        self.metrics.expired.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        progressed = true;
                    }
                    Ok(p) => {
                        batch.push(p);
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

    /// Encodes and sends the batch; false when the consumer has gone away.
    fn flush(&mut self, batch: &mut Vec<Pending>) -> bool {
        let started = Instant::now();
        self.metrics.record_batch(batch.len(), batch.iter().map(|p| started - p.at));
        let items = std::mem::take(batch);
        let results = self.encode(&items);
        *batch = Vec::with_capacity(self.cfg.max_batch);
        for (p, result) in items.into_iter().zip(results) {
            match result {
                Ok(embedding) => {
                    let waited = started - p.at;
                    let e = Embedded { frame: p.req.frame, text: p.req.text, embedding, waited };
                    if self.out.send(e).is_err() {
                        return false;
                    }
                }
                Err(e) => {
                    self.metrics.failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::warn!(stream = %p.req.frame.stream_id, seq = p.req.frame.seq, error = %e, "frame not encoded");
                }
            }
        }
        true
    }

    /// One result per item. When the batch fails as a whole, each frame is retried alone so one bad frame
    /// costs only itself.
    fn encode(&mut self, items: &[Pending]) -> Vec<Result<Vec<f32>, EncodeError>> {
        let images: Vec<&RgbImage> = items.iter().map(|p| &p.req.frame.image).collect();
        let texts: Vec<Option<&str>> = items.iter().map(|p| p.req.text.as_deref()).collect();
        match self.encoder.encode_batch(&images, &texts) {
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
                            .encode_batch(&images[i..=i], &texts[i..=i])
                            .and_then(|mut v| v.pop().ok_or(EncodeError::Stopped))
                    })
                    .collect()
            }
        }
    }
}
