//! The recognition service: builds the pipeline from its stages and runs streams through it.
//!
//! ```text
//!  ingest (one supervised GStreamer pipeline per stream, src/ingest)
//!    | keyframes: a bounded queue per stream       audio: a live and a file channel (live first)
//!    v                                               v
//!  encode (src/encode/batcher.rs: round-robin     speech (src/asr): VAD -> Moonshine -> transcript
//!    over the queues, speech tag, ORT batches)      windows, read by the encoder's tagger
//!    | Flow<Embedded>: embeddings, then each stream's End behind its last one
//!    v
//!  match (src/matcher: gallery search, abstention, tracker)
//!    | matcher::Output: events (and the speech heard, for the dashboard)
//!    v
//!  sink (src/publish) + the dashboard's board (src/api/board.rs)
//! ```
//!
//! Each stage thread is supervised (src/stage.rs): a dead stage fails [`Service::health`]. A stream is
//! keyed `(id, generation)` from ingest on ([`StreamKey`]); its end travels in band through every stage.

pub mod config;

use std::collections::HashMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Sender;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

pub use config::{ApiConfig, ServiceConfig, StreamEntry};

use crate::api::board::Board;
use crate::asr::{AsrError, AsrMetrics, AsrStage, Transcripts};
use crate::config::{ConfigError, IngestConfig};
use crate::encode::{Batcher, BatcherConfig, EncodeError, Encoder, metrics::BatcherMetrics};
use crate::event::{DetectionEvent, EventContext};
use crate::gallery::admin::GalleryControl;
use crate::gallery::{Gallery, GalleryError, Searcher};
use crate::ingest::{self, IngestError, Outputs, Source, StatsSnapshot, StreamHandle};
use crate::matcher::{self, Background, BackgroundError, MatchMetrics, Matcher};
use crate::messages::{AudioChunk, StatusChange, StreamId, StreamKey};
use crate::stage::{self, Health};
use crate::track::Tracker;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("encoder: {0}")]
    Encode(#[from] EncodeError),
    #[error("gallery {path}: {source}")]
    Gallery { path: String, source: GalleryError },
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Background(#[from] BackgroundError),
    #[error("speech recognition: {0}")]
    Asr(#[from] AsrError),
    #[error("stream id '{0}' is already in use")]
    DuplicateStream(String),
    #[error("no stream with id '{0}'")]
    UnknownStream(String),
    #[error("{0}")]
    BadOptions(String),
    #[error("the service is shutting down")]
    ShuttingDown,
    #[error("cannot start a worker thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// A running service. Streams can be added and removed while it runs (`&self`: the control API shares
/// it); [`Service::shutdown`] drains every stage.
pub struct Service {
    ingest_cfg: Arc<IngestConfig>,
    /// `encoder.live_max_age_ms`, for live streams' encoder queues.
    live_max_age: Option<Duration>,
    /// The pipeline's entry points; `None` once shutdown has begun.
    inputs: Mutex<Option<Inputs>>,
    streams: Mutex<Streams>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// First stage failure, if any (`/readyz`, and `livesku run` stops on it).
    pub health: Health,
    pub context: EventContext,
    /// The dashboard's live view: fed by each stream's ingest (latest frame) and the matcher's output.
    pub board: Arc<Board>,
    pub match_metrics: Arc<MatchMetrics>,
    pub encoder_metrics: Arc<BatcherMetrics>,
    pub gallery: Arc<GalleryControl>,
    /// Recent transcripts per stream (written by the ASR workers, read by the encoder's tagger).
    pub transcripts: Transcripts,
    /// `None` when `[asr] enabled = false`.
    pub asr_metrics: Option<Arc<AsrMetrics>>,
    /// Streams whose removal waits for the matcher to have closed their episodes
    /// ([`Service::remove_stream_drained`]); the matcher's thread signals each end.
    drains: Arc<Mutex<HashMap<StreamKey, tokio::sync::oneshot::Sender<()>>>>,
}

/// Where a new stream's output goes.
struct Inputs {
    batcher: Batcher,
    /// Speech audio of live streams, and of files: apart, so a file (which waits on a full channel
    /// instead of dropping) cannot crowd live speech out; the VAD serves live first. `None` with ASR
    /// off: streams then do not decode their audio at all.
    live_audio: Option<Sender<AudioChunk>>,
    file_audio: Option<Sender<AudioChunk>>,
    /// Nobody needs the change notifications (states are read from the stream handles): the receiver
    /// is gone and supervisors' sends fail harmlessly.
    status: Sender<StatusChange>,
}

#[derive(Default)]
struct Streams {
    running: Vec<Stream>,
    /// Sessions started so far per id: the next session's generation.
    generations: HashMap<StreamId, u64>,
    /// First generation of an id: 0, or in a cluster the start time (unix ms), so that a stream that
    /// moves between workers never repeats an episode's (and its events') id.
    generation_base: u64,
}

/// One added stream.
struct Stream {
    handle: StreamHandle,
    /// Redacted (no stream key, password or secret query value): it is shown in answers and the dashboard.
    uri: String,
    live: bool,
    added_unix_ms: u64,
}

/// Per-stream overrides of `[ingest]` settings (`POST /streams` `options`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StreamOptions {
    pub max_rate_hz: Option<f64>,
    pub dedup_max_distance: Option<u32>,
    pub stall_timeout_secs: Option<f64>,
    pub max_reconnects: Option<u32>,
    pub fail_fast: Option<bool>,
}

/// What the API and the dashboard report about a stream (one shape for both).
#[derive(Debug, Clone, Serialize)]
pub struct StreamInfo {
    pub id: String,
    /// Session number of this id in this process (0 for the first; in a worker group the worker's start
    /// time in unix ms for the first, so that ids of episodes never repeat across workers).
    pub generation: u64,
    /// The source URI with its secrets replaced by `***`.
    pub uri: String,
    pub live: bool,
    pub added_unix_ms: u64,
    #[serde(flatten)]
    pub stats: StatsSnapshot,
}

impl Service {
    /// Loads the model and the gallery (refusing a gallery built by another model) and starts the
    /// stage threads. Streams are added with [`Service::add_stream`], on a tokio runtime.
    pub fn start(
        cfg: &ServiceConfig,
        emit: impl FnMut(DetectionEvent) + Send + 'static,
    ) -> Result<Self, ServiceError> {
        cfg.validate()?;
        ingest::pipeline::init()?;
        let health = Health::default();
        let gallery_dir = cfg.gallery_path()?;
        // With ASR off no keyframe carries text: the text tower opens only if one ever does.
        let mut encoder = if cfg.asr.enabled { Encoder::open(&cfg.encoder)? } else { Encoder::open_deferring_text(&cfg.encoder)? };
        if cfg.encoder.warmup {
            // The crop pass is the largest: up to `max_regions` crops of each keyframe of a full batch.
            let items = cfg.encoder.max_batch * cfg.encoder.localise.max_regions.max(1);
            let took = encoder.warm_up(items)?;
            tracing::info!(items, took_ms = took.as_millis() as u64, "encoder warmed up");
        }
        let gallery = Gallery::open(gallery_dir, Some(&encoder.manifest))
            .map_err(|source| ServiceError::Gallery { path: gallery_dir.display().to_string(), source })?;
        let background = Background::load_or_build(&mut encoder, &cfg.gallery.background_images, gallery_dir)?;
        let context = EventContext {
            model_version: format!("{}@{}", encoder.manifest.name, encoder.manifest.version),
            gallery_version: gallery_version(&gallery),
            worker: cfg.cluster.worker(),
        };
        let manifest = encoder.manifest.clone();
        let tracker = Tracker::new(cfg.track.clone().calibrated(manifest.track.as_ref())?);
        let settings = matcher::Settings {
            background_margin: cfg.gallery.background_margin,
            visual_dim: manifest.visual.dim,
            top_k: cfg.gallery.top_k.unwrap_or(5),
        };
        let searcher = Searcher::new(gallery, &cfg.gallery.search);
        let gallery =
            Arc::new(GalleryControl::new(gallery_dir, manifest, cfg.encoder.clone(), cfg.gallery.search, searcher));
        let board = Arc::new(Board::default());
        let mut threads = Vec::new();

        // Speech: VAD + Moonshine workers fill the transcript windows the encoder tags keyframes from.
        let transcripts = Transcripts::default();
        let (asr_metrics, live_audio, file_audio) = if cfg.asr.enabled {
            let (live_audio, live_rx) = crossbeam_channel::bounded::<AudioChunk>(cfg.ingest.channel_capacity);
            let (file_audio, file_rx) = crossbeam_channel::bounded::<AudioChunk>(cfg.ingest.channel_capacity);
            let sink = transcripts.clone();
            let asr = AsrStage::start(
                &cfg.asr,
                vec![live_rx, file_rx],
                move |t| {
                    tracing::debug!(stream = %t.stream_id, start_ms = t.start_ms, end_ms = t.end_ms, text = %t.text, "transcript");
                    sink.push(t)
                },
                &health,
            )?;
            let metrics = asr.metrics.clone();
            threads.extend(asr.into_threads());
            (Some(metrics), Some(live_audio), Some(file_audio))
        } else {
            (None, None, None)
        };

        // Encode: per-stream queues (opened in add_stream) -> batches -> embeddings.
        let (tags, window_ms) = (transcripts.clone(), (cfg.asr.window_secs * 1000.0) as u64);
        let tagger: crate::encode::batcher::Tagger = Box::new(move |key, pts| tags.tag(key, pts, window_ms));
        let (batcher, embedded) = Batcher::start(encoder, BatcherConfig::from(&cfg.encoder), Some(tagger), &health)?;
        let encoder_metrics = batcher.metrics();

        // Match: embeddings -> observations -> tracker decisions -> events, to the sink and the board.
        let matcher = Matcher::new(
            settings,
            gallery.searcher.clone(),
            background,
            tracker,
            context.clone(),
        );
        let match_metrics = matcher.metrics.clone();
        let (view, mut emit) = (board.clone(), emit);
        let drains: Arc<Mutex<HashMap<StreamKey, tokio::sync::oneshot::Sender<()>>>> = Arc::default();
        let drained = drains.clone();
        threads.push(stage::spawn(&health, "matcher", move || {
            matcher.run(embedded, |out| match out {
                matcher::Output::Event { event, image_url } => {
                    view.event(&event, image_url);
                    emit(*event);
                }
                matcher::Output::Heard { stream, text } => view.asr_text(&stream.id, &text),
                matcher::Output::Matched { stream, seq } => view.processed(&stream.id, seq),
                matcher::Output::Ended { stream } => {
                    if let Some(tx) = drained.lock().remove(&stream) {
                        let _ = tx.send(());
                    }
                }
            })
        })?);

        let (status, _) = crossbeam_channel::bounded(1);
        Ok(Service {
            ingest_cfg: Arc::new(cfg.ingest.clone()),
            live_max_age: (cfg.encoder.live_max_age_ms > 0).then(|| Duration::from_millis(cfg.encoder.live_max_age_ms)),
            inputs: Mutex::new(Some(Inputs { batcher, live_audio, file_audio, status })),
            streams: Mutex::new(Streams {
                generation_base: if cfg.cluster.enabled { ingest::unix_ms(std::time::SystemTime::now()) } else { 0 },
                ..Streams::default()
            }),
            threads: Mutex::new(threads),
            health,
            context,
            board,
            match_metrics,
            encoder_metrics,
            gallery,
            transcripts,
            asr_metrics,
            drains,
        })
    }

    /// Starts watching a stream; `id` defaults to [`Source::default_id`] (never made from a secret).
    /// Must run on a tokio runtime; returns at once (connecting happens in the stream's task).
    pub fn add_stream(&self, id: Option<&str>, uri: &str) -> Result<StreamId, ServiceError> {
        self.add_stream_with(id, uri, &StreamOptions::default())
    }

    pub fn add_stream_with(
        &self,
        id: Option<&str>,
        uri: &str,
        opts: &StreamOptions,
    ) -> Result<StreamId, ServiceError> {
        let source = Source::parse(uri)?;
        let id: StreamId = id.map(str::to_string).unwrap_or_else(|| source.default_id()).into();
        let cfg = self.stream_config(opts)?;
        let inputs = self.inputs.lock();
        let Some(inputs) = inputs.as_ref() else {
            return Err(ServiceError::ShuttingDown);
        };
        // Held across the check and the push, so two concurrent adds of one id cannot both pass.
        let mut streams = self.streams.lock();
        // An ended stream keeps its id (and its last error) until it is removed.
        if streams.running.iter().any(|s| s.handle.id == id) {
            return Err(ServiceError::DuplicateStream(id.to_string()));
        }
        let base = streams.generation_base;
        let generation = streams.generations.entry(id.clone()).or_insert(base);
        let key = StreamKey { id: id.clone(), generation: *generation };
        *generation += 1;
        // The stream's own queue into the encoder: a file waiting on it holds up nobody else.
        let (frames, queue) = crossbeam_channel::bounded(inputs.batcher.queue_capacity());
        let max_age = self.live_max_age.filter(|_| source.live);
        inputs.batcher.open(key.clone(), queue, max_age)?;
        let board = self.board.clone();
        let outputs = Outputs {
            keyframes: frames,
            audio: if source.live { inputs.live_audio.clone() } else { inputs.file_audio.clone() },
            preview: Some(Arc::new(move |frame| board.frame(frame.clone()))),
        };
        let (live, shown_uri) = (source.live, source.redacted());
        let handle = ingest::spawn(key, source, cfg, outputs, inputs.status.clone());
        streams.running.push(Stream {
            handle,
            uri: shown_uri,
            live,
            added_unix_ms: ingest::unix_ms(std::time::SystemTime::now()),
        });
        drop(streams);
        self.board.add_stream(&id);
        Ok(id)
    }

    fn stream_config(&self, o: &StreamOptions) -> Result<Arc<IngestConfig>, ServiceError> {
        let mut cfg = (*self.ingest_cfg).clone();
        cfg.max_rate_hz = o.max_rate_hz.unwrap_or(cfg.max_rate_hz);
        cfg.dedup_max_distance = o.dedup_max_distance.unwrap_or(cfg.dedup_max_distance);
        cfg.stall_timeout_secs = o.stall_timeout_secs.unwrap_or(cfg.stall_timeout_secs);
        cfg.max_reconnects = o.max_reconnects.or(cfg.max_reconnects);
        cfg.fail_fast = o.fail_fast.unwrap_or(cfg.fail_fast);
        cfg.validate().map_err(|e| ServiceError::BadOptions(format!("options: {e}")))?;
        Ok(Arc::new(cfg))
    }

    /// Stops a stream and frees everything of it: its pipeline (torn down before this returns), its
    /// encoder queue (closed with the pipeline; the encoder serves what is left, then sends the stream's
    /// end), its tracker state (the matcher closes its episodes on that end) and its dashboard view.
    /// Other streams are not touched.
    pub async fn remove_stream(&self, id: &str) -> Result<StatsSnapshot, ServiceError> {
        self.remove(id, None).await
    }

    /// [`Service::remove_stream`], then waits (up to `timeout`) until the matcher has closed the stream's
    /// episodes and handed their events to the sink: a cluster hands the stream over only after that.
    pub async fn remove_stream_drained(&self, id: &str, timeout: Duration) -> Result<StatsSnapshot, ServiceError> {
        self.remove(id, Some(timeout)).await
    }

    async fn remove(&self, id: &str, drain: Option<Duration>) -> Result<StatsSnapshot, ServiceError> {
        let mut drained = None;
        let stream = {
            let mut streams = self.streams.lock();
            let i = streams.running.iter().position(|s| &*s.handle.id == id);
            let stream =
                i.map(|i| streams.running.remove(i)).ok_or_else(|| ServiceError::UnknownStream(id.to_string()))?;
            if drain.is_some() && !stream.handle.is_finished() {
                let (tx, rx) = tokio::sync::oneshot::channel();
                self.drains.lock().insert(stream.handle.key.clone(), tx);
                drained = Some(rx);
            }
            stream
        };
        stream.handle.stop();
        let (stats, key) = (stream.handle.stats.clone(), stream.handle.key.clone());
        stream.handle.wait().await;
        self.transcripts.remove(&key);
        if let (Some(rx), Some(timeout)) = (drained, drain) {
            if tokio::time::timeout(timeout, rx).await.is_err() {
                tracing::warn!(stream = %id, "stream's last events not out within {timeout:?}");
            }
            self.drains.lock().remove(&key);
        }
        // Unless the id was added again meanwhile.
        let streams = self.streams.lock();
        if !streams.running.iter().any(|s| &*s.handle.id == id) {
            self.board.remove_stream(id);
        }
        Ok(stats.snapshot())
    }

    pub fn stream_ids(&self) -> Vec<StreamId> {
        self.streams.lock().running.iter().map(|s| s.handle.id.clone()).collect()
    }

    pub fn stream_info(&self, id: &str) -> Option<StreamInfo> {
        self.streams.lock().running.iter().find(|s| &*s.handle.id == id).map(info)
    }

    pub fn stream_infos(&self) -> Vec<StreamInfo> {
        self.streams.lock().running.iter().map(info).collect()
    }

    /// False once shutdown has begun.
    pub fn accepting(&self) -> bool {
        self.inputs.lock().is_some()
    }

    /// True once every added stream has ended (files at their end, failed streams).
    pub fn all_streams_ended(&self) -> bool {
        self.streams.lock().running.iter().all(|s| s.handle.is_finished())
    }

    /// Stops every stream at once, lets the encoder and matcher drain (closing open episodes) and joins
    /// the stage threads, giving up at `deadline` (what is still running then is logged and left to the
    /// process exit). Returns each stream's final counters.
    pub async fn shutdown(&self, deadline: tokio::time::Instant) -> Vec<(String, StatsSnapshot)> {
        let inputs = self.inputs.lock().take();
        let streams = std::mem::take(&mut self.streams.lock().running);
        streams.iter().for_each(|s| s.handle.stop());
        let stats: Vec<(String, Arc<ingest::StreamStats>)> =
            streams.iter().map(|s| (s.handle.id.to_string(), s.handle.stats.clone())).collect();
        let waits = futures::future::join_all(streams.into_iter().map(|s| s.handle.wait()));
        if tokio::time::timeout_at(deadline, waits).await.is_err() {
            tracing::error!("shutdown: streams still tearing down at the deadline");
        }
        // With every stream's queue closed and the audio sender gone, the stages end in order: encoder,
        // matcher (closing what is still open), speech.
        let threads = std::mem::take(&mut *self.threads.lock());
        let stages = tokio::task::spawn_blocking(move || {
            if let Some(inputs) = inputs {
                drop((inputs.live_audio, inputs.file_audio));
                inputs.batcher.finish();
            }
            for t in threads {
                let _ = t.join();
            }
        });
        if tokio::time::timeout_at(deadline, stages).await.is_err() {
            tracing::error!("shutdown: pipeline stages still draining at the deadline");
        }
        stats.into_iter().map(|(id, s)| (id, s.snapshot())).collect()
    }
}

fn info(s: &Stream) -> StreamInfo {
    StreamInfo {
        id: s.handle.id.to_string(),
        generation: s.handle.key.generation,
        uri: s.uri.clone(),
        live: s.live,
        added_unix_ms: s.added_unix_ms,
        stats: s.handle.stats.snapshot(),
    }
}

/// Identifies the gallery's content: the model it was built with and its size.
fn gallery_version(g: &Gallery) -> String {
    let sha = g.meta.manifest_sha256.get(..12).unwrap_or(&g.meta.manifest_sha256);
    format!("{}-{sha}-{}", g.meta.model_version, g.meta.rows)
}
