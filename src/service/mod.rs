//! The recognition service: ingest -> router -> shared encoder batcher -> matcher (gallery search +
//! tracker) -> events. Each stage runs on its own thread(s) and hands typed messages over bounded
//! channels; see `README.md` for the picture and `config/README.md` for the settings.

mod background;
pub mod board;
pub mod catalog;
pub mod config;
mod matcher;
pub mod metrics;
mod router;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::thread::JoinHandle;

use crossbeam_channel::Sender;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use background::{Background, BackgroundError};
use board::Board;
use catalog::GalleryControl;
pub use config::{ApiConfig, ServiceConfig, StreamEntry};
use matcher::Matcher;
use metrics::ServiceMetrics;

use crate::asr::{AsrError, AsrMetrics, AsrStage, Transcripts};
use crate::config::{ConfigError, IngestConfig};
use crate::encode::{Batcher, BatcherConfig, EncodeError, Encoder, metrics::BatcherMetrics};
use crate::event::{DetectionEvent, EventContext};
use crate::gallery::{Gallery, GalleryError, Searcher};
use crate::ingest::{self, IngestError, Outputs, Source, StatsSnapshot, StreamHandle};
use crate::messages::{StatusChange, StreamId};
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
    senders: Mutex<Option<(Outputs, Sender<StatusChange>)>>,
    streams: Mutex<Vec<Stream>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Live stream ids (their frames are dropped when the encoder is saturated; files wait).
    live: LiveSet,
    /// Keyframes dropped between ingest and the encoder (encoder saturated).
    pub encoder_dropped: Arc<AtomicU64>,
    pub context: EventContext,
    pub board: Arc<Board>,
    pub metrics: Arc<ServiceMetrics>,
    pub encoder_metrics: Arc<BatcherMetrics>,
    pub gallery: Arc<GalleryControl>,
    /// Recent transcripts per stream (written by the ASR workers, read by the router to tag keyframes).
    pub transcripts: Transcripts,
    /// `None` when `[asr] enabled = false`.
    pub asr_metrics: Option<Arc<AsrMetrics>>,
}

/// One added stream.
struct Stream {
    handle: StreamHandle,
    uri: String,
    live: bool,
    added_unix_ms: u64,
}

/// Per-stream overrides of `[ingest]` settings (`POST /streams` `options`).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StreamOptions {
    pub max_rate_hz: Option<f64>,
    pub dedup_max_distance: Option<u32>,
    pub stall_timeout_secs: Option<f64>,
    pub max_reconnects: Option<u32>,
    pub fail_fast: Option<bool>,
}

/// What the API reports about a stream.
#[derive(Debug, Clone, Serialize)]
pub struct StreamInfo {
    pub id: String,
    pub uri: String,
    pub live: bool,
    pub added_unix_ms: u64,
    #[serde(flatten)]
    pub stats: StatsSnapshot,
}

type LiveSet = Arc<parking_lot::RwLock<HashSet<StreamId>>>;

impl Service {
    /// Loads the model and the gallery (refusing a gallery built by another model) and starts the
    /// stage threads. Streams are added with [`Service::add_stream`], on a tokio runtime.
    pub fn start(
        cfg: &ServiceConfig,
        emit: impl FnMut(DetectionEvent) + Send + 'static,
    ) -> Result<Self, ServiceError> {
        cfg.validate()?;
        ingest::pipeline::init()?;
        let gallery_dir = cfg.gallery_path()?;
        let mut encoder = Encoder::open(&cfg.encoder)?;
        let background = Background::build(&mut encoder, &cfg.gallery.background_images)?;
        let gallery = Gallery::open(gallery_dir, Some(&encoder.manifest))
            .map_err(|source| ServiceError::Gallery { path: gallery_dir.display().to_string(), source })?;
        let context = EventContext {
            model_version: format!("{}@{}", encoder.manifest.name, encoder.manifest.version),
            gallery_version: gallery_version(&gallery),
            worker: EventContext::default_worker(),
        };
        let manifest = encoder.manifest.clone();
        let visual_dim = manifest.visual.dim;
        let searcher = Searcher::new(gallery, &cfg.gallery.search);
        let gallery = Arc::new(GalleryControl::new(
            gallery_dir,
            manifest,
            cfg.encoder.clone(),
            cfg.gallery.search,
            searcher,
        ));
        let (batcher, embedded) = Batcher::start(encoder, BatcherConfig::from(&cfg.encoder))?;
        let (encoder_metrics, ended) = (batcher.metrics(), batcher.ended());
        let (board, metrics) = (Arc::new(Board::default()), Arc::new(ServiceMetrics::default()));

        let ingest_cfg = Arc::new(cfg.ingest.clone());
        let (kf_tx, kf_rx) = crossbeam_channel::bounded(ingest_cfg.channel_capacity);
        let (audio_tx, audio_rx) =
            crossbeam_channel::bounded::<crate::messages::AudioChunk>(ingest_cfg.channel_capacity);
        // Stream states are read from the stream handles (API, shutdown); nothing here needs the change
        // notifications, so the receiving end is dropped and supervisors' sends fail harmlessly.
        let (status_tx, _) = crossbeam_channel::bounded(1);
        let encoder_dropped = Arc::new(AtomicU64::new(0));

        let live: LiveSet = Default::default();
        let mut threads = Vec::new();
        let (dropped, live_ids) = (encoder_dropped.clone(), live.clone());
        let transcripts = Transcripts::default();
        let (tags, window_ms) = (transcripts.clone(), (cfg.asr.window_secs * 1000.0) as u64);
        let seen_board = board.clone();
        let live_max_age = (cfg.encoder.live_max_age_ms > 0)
            .then(|| std::time::Duration::from_millis(cfg.encoder.live_max_age_ms));
        threads.push(spawn("livesku-router", move || {
            router::run(
                kf_rx,
                batcher,
                dropped,
                |id| live_ids.read().contains(id),
                live_max_age,
                |id, pts| tags.tag(id, pts, window_ms),
                |frame| seen_board.frame(frame.clone()),
            )
        })?);
        let matcher = Matcher {
            searcher: gallery.searcher.clone(),
            board: board.clone(),
            metrics: metrics.clone(),
            background,
            background_margin: cfg.gallery.background_margin,
            visual_dim,
            tracker: Tracker::new(cfg.track.clone()),
            top_k: cfg.gallery.top_k.unwrap_or(5),
            context: context.clone(),
            speech: Default::default(),
        };
        threads.push(spawn("livesku-matcher", move || matcher.run(embedded, ended, emit))?);
        // Speech: VAD + Moonshine workers fill the transcript windows the router tags keyframes from.
        let asr_metrics = if cfg.asr.enabled {
            let sink = transcripts.clone();
            let stage = AsrStage::start(&cfg.asr, audio_rx, move |t| {
                tracing::debug!(stream = %t.stream_id, start_ms = t.start_ms, end_ms = t.end_ms, text = %t.text, "transcript");
                sink.push(t)
            })?;
            let metrics = stage.metrics.clone();
            threads.extend(stage.into_threads());
            Some(metrics)
        } else {
            threads.push(spawn("livesku-audio", move || audio_rx.iter().for_each(drop))?);
            None
        };

        Ok(Service {
            ingest_cfg,
            senders: Mutex::new(Some((Outputs { keyframes: kf_tx, audio: audio_tx }, status_tx))),
            streams: Mutex::new(Vec::new()),
            threads: Mutex::new(threads),
            encoder_dropped,
            context,
            live,
            board,
            metrics,
            encoder_metrics,
            gallery,
            transcripts,
            asr_metrics,
        })
    }

    /// Starts watching a stream; `id` defaults to the URI's last path segment. Must run on a tokio
    /// runtime; returns at once (connecting happens in the stream's task).
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
        let senders = self.senders.lock();
        let Some((outputs, status)) = senders.as_ref() else {
            return Err(ServiceError::ShuttingDown);
        };
        // Held across the check and the push, so two concurrent adds of one id cannot both pass.
        let mut streams = self.streams.lock();
        // An ended stream keeps its id (and its last error) until it is removed.
        if streams.iter().any(|s| s.handle.id == id) {
            return Err(ServiceError::DuplicateStream(id.to_string()));
        }
        if source.live {
            self.live.write().insert(id.clone());
        }
        let live = source.live;
        let handle = ingest::spawn(id.clone(), source, cfg, outputs.clone(), status.clone());
        streams.push(Stream {
            handle,
            uri: uri.to_string(),
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
    /// encoder queue (closed by the stream's end marker once its last frames are through), its tracker
    /// state (the matcher closes its episodes) and its dashboard view. Other streams are not touched.
    pub async fn remove_stream(&self, id: &str) -> Result<StatsSnapshot, ServiceError> {
        let stream = {
            let mut streams = self.streams.lock();
            let i = streams.iter().position(|s| &*s.handle.id == id);
            i.map(|i| streams.remove(i)).ok_or_else(|| ServiceError::UnknownStream(id.to_string()))?
        };
        stream.handle.stop();
        let stats = stream.handle.stats.clone();
        stream.handle.wait().await;
        // Unless the id was added again meanwhile.
        let streams = self.streams.lock();
        if !streams.iter().any(|s| &*s.handle.id == id) {
            self.live.write().remove(id);
            self.board.remove_stream(id);
            self.transcripts.remove(id);
        }
        Ok(stats.snapshot())
    }

    pub fn stream_ids(&self) -> Vec<StreamId> {
        self.streams.lock().iter().map(|s| s.handle.id.clone()).collect()
    }

    pub fn stream_info(&self, id: &str) -> Option<StreamInfo> {
        self.streams.lock().iter().find(|s| &*s.handle.id == id).map(info)
    }

    pub fn stream_infos(&self) -> Vec<StreamInfo> {
        self.streams.lock().iter().map(info).collect()
    }

    /// False once shutdown has begun.
    pub fn accepting(&self) -> bool {
        self.senders.lock().is_some()
    }

    /// True once every added stream has ended (files at their end, failed streams).
    pub fn all_streams_ended(&self) -> bool {
        self.streams.lock().iter().all(|s| s.handle.is_finished())
    }

    /// Stops every stream, lets the encoder and matcher drain (closing open episodes), and joins the
    /// stage threads. Returns each stream's final counters.
    pub async fn shutdown(&self) -> Vec<(String, StatsSnapshot)> {
        let senders = self.senders.lock().take();
        let mut stats = Vec::new();
        let streams = std::mem::take(&mut *self.streams.lock());
        for s in streams {
            let h = s.handle;
            h.stop();
            let (id, st) = (h.id.to_string(), h.stats.clone());
            h.wait().await;
            stats.push((id, st.snapshot()));
        }
        // With every sender gone the stages end in order: router, encoder, matcher.
        drop(senders);
        let threads = std::mem::take(&mut *self.threads.lock());
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                if t.join().is_err() {
                    tracing::error!("a service thread panicked");
                }
            }
        })
        .await;
        stats
    }
}

fn info(s: &Stream) -> StreamInfo {
    StreamInfo {
        id: s.handle.id.to_string(),
        uri: s.uri.clone(),
        live: s.live,
        added_unix_ms: s.added_unix_ms,
        stats: s.handle.stats.snapshot(),
    }
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name(name.into()).spawn(f)
}

/// Identifies the gallery's content: the model it was built with and its size.
fn gallery_version(g: &Gallery) -> String {
    let sha = g.meta.manifest_sha256.get(..12).unwrap_or(&g.meta.manifest_sha256);
    format!("{}-{sha}-{}", g.meta.model_version, g.meta.rows)
}
