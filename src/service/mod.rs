//! The recognition service: ingest -> router -> shared encoder batcher -> matcher (gallery search +
//! tracker) -> events. Each stage runs on its own thread(s) and hands typed messages over bounded
//! channels; see `README.md` for the picture and `config/README.md` for the settings.

mod background;
pub mod config;
mod matcher;
mod router;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::thread::JoinHandle;

use crossbeam_channel::Sender;

pub use config::{ServiceConfig, StreamEntry};
use background::{Background, BackgroundError};
use matcher::Matcher;

use crate::config::{ConfigError, IngestConfig};
use crate::encode::{Batcher, BatcherConfig, EncodeError, Encoder};
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
    #[error("stream id '{0}' is already in use")]
    DuplicateStream(String),
    #[error("cannot start a worker thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// A running service. Streams can be added while it runs; [`Service::shutdown`] drains every stage.
pub struct Service {
    ingest_cfg: Arc<IngestConfig>,
    outputs: Option<Outputs>,
    status: Option<Sender<StatusChange>>,
    streams: Vec<StreamHandle>,
    threads: Vec<JoinHandle<()>>,
    /// Live stream ids (their frames are dropped when the encoder is saturated; files wait).
    live: LiveSet,
    /// Keyframes dropped between ingest and the encoder (encoder saturated).
    pub encoder_dropped: Arc<AtomicU64>,
    pub context: EventContext,
}

type LiveSet = Arc<parking_lot::RwLock<HashSet<StreamId>>>;

impl Service {
    /// Loads the model and the gallery (refusing a gallery built by another model) and starts the
    /// stage threads. Streams are added with [`Service::add_stream`], on a tokio runtime.
    pub fn start(cfg: &ServiceConfig, emit: impl FnMut(DetectionEvent) + Send + 'static) -> Result<Self, ServiceError> {
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
        let searcher = Searcher::new(gallery, &cfg.gallery.search);
        let (batcher, embedded) = Batcher::start(encoder, BatcherConfig::from(&cfg.encoder))?;

        let ingest_cfg = Arc::new(cfg.ingest.clone());
        let (kf_tx, kf_rx) = crossbeam_channel::bounded(ingest_cfg.channel_capacity);
        let (audio_tx, audio_rx) = crossbeam_channel::bounded::<crate::messages::AudioChunk>(ingest_cfg.channel_capacity);
        let (status_tx, status_rx) = crossbeam_channel::bounded(256);
        let encoder_dropped = Arc::new(AtomicU64::new(0));

        let live: LiveSet = Default::default();
        let mut threads = Vec::new();
        let (dropped, live_ids) = (encoder_dropped.clone(), live.clone());
        threads.push(spawn("livesku-router", move || {
            router::run(kf_rx, batcher, dropped, |id| live_ids.read().contains(id))
        })?);
        let matcher = Matcher {
            searcher,
            background,
            background_margin: cfg.gallery.background_margin,
            tracker: Tracker::new(cfg.track.clone()), top_k: cfg.gallery.top_k.unwrap_or(5), context: context.clone() };
        threads.push(spawn("livesku-matcher", move || matcher.run(embedded, status_rx, emit))?);
        // Speech is transcribed by the ASR stage (a later issue); until then audio is consumed and dropped.
        threads.push(spawn("livesku-audio", move || audio_rx.iter().for_each(drop))?);

        Ok(Service {
            ingest_cfg,
            outputs: Some(Outputs { keyframes: kf_tx, audio: audio_tx }),
            status: Some(status_tx),
            streams: Vec::new(),
            threads,
            encoder_dropped,
            context,
            live,
        })
    }

    /// Starts watching a stream; `id` defaults to the URI's last path segment.
    pub fn add_stream(&mut self, id: Option<&str>, uri: &str) -> Result<StreamId, ServiceError> {
        let source = Source::parse(uri)?;
        let id: StreamId = id.map(str::to_string).unwrap_or_else(|| source.default_id()).into();
        if self.streams.iter().any(|s| s.id == id && !s.is_finished()) {
            return Err(ServiceError::DuplicateStream(id.to_string()));
        }
        let (Some(outputs), Some(status)) = (&self.outputs, &self.status) else {
            return Err(ServiceError::Ingest(IngestError::BadSource("the service is shutting down".into())));
        };
        if source.live {
            self.live.write().insert(id.clone());
        }
        let handle = ingest::spawn(id.clone(), source, self.ingest_cfg.clone(), outputs.clone(), status.clone());
        self.streams.push(handle);
        Ok(id)
    }

    pub fn streams(&self) -> &[StreamHandle] {
        &self.streams
    }

    /// True once every added stream has ended (files at their end, failed streams).
    pub fn all_streams_ended(&self) -> bool {
        self.streams.iter().all(StreamHandle::is_finished)
    }

    /// Stops every stream, lets the encoder and matcher drain (closing open episodes), and joins the
    /// stage threads. Returns each stream's final counters.
    pub async fn shutdown(mut self) -> Vec<(String, StatsSnapshot)> {
        let mut stats = Vec::new();
        for h in std::mem::take(&mut self.streams) {
            h.stop();
            let (id, st) = (h.id.to_string(), h.stats.clone());
            h.wait().await;
            stats.push((id, st.snapshot()));
        }
        // With every sender gone the stages end in order: router, encoder, matcher.
        self.outputs = None;
        self.status = None;
        let threads = std::mem::take(&mut self.threads);
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

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name(name.into()).spawn(f)
}

/// Identifies the gallery's content: the model it was built with and its size.
fn gallery_version(g: &Gallery) -> String {
    let sha = g.meta.manifest_sha256.get(..12).unwrap_or(&g.meta.manifest_sha256);
    format!("{}-{sha}-{}", g.meta.model_version, g.meta.rows)
}
