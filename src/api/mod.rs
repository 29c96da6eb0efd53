//! The control API, `/metrics` and the moderator dashboard (axum, one listener). Mutating endpoints
//! need the bearer token (src/api/auth.rs); reads need it too (or the read token) when the listener is
//! not loopback. Every error of a handler is JSON: `{"error": {"status": 404, "message": "..."}}`.
//! src/api/guard.rs holds what wraps every request: `Host` check, limits, timeouts, security headers.
//!
//! | route | what |
//! |---|---|
//! | `GET /healthz`, `GET /readyz` | liveness; readiness (503 once shutdown began); never need a token |
//! | `GET /metrics` | Prometheus/OpenMetrics text (docs/metrics.md) |
//! | `GET /streams`, `GET /streams/{id}` | stream state and counters (URIs redacted) |
//! | `POST /streams`, `DELETE /streams/{id}` | add (`{id, uri, options}`, `[api.allowed_sources]`) / remove a stream (token); in a cluster, written to the registry |
//! | `GET /cluster` | this worker, its group, the registry partitions and streams it owns |
//! | `GET /gallery`, `POST /gallery/reload`, `POST /gallery/products`, `DELETE /gallery/products/{id}` | gallery (token for changes) |
//! | `GET /gallery/products/{id}/image` | the product's thumbnail, copied into the gallery at build time |
//! | `GET /`, `GET /api/board`, `GET /api/events`, `GET /streams/{id}/frame.jpg` | dashboard, its snapshot, SSE updates (bounded), latest keyframe |

mod auth;
pub mod board;
mod dashboard;
mod error;
mod gallery;
mod health;
mod guard;
mod metrics;
pub mod sources;
mod sse;
mod streams;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;

pub use error::ApiError;
pub use sources::AllowedSources;

use crate::cluster::Cluster;
use crate::publish::PublishMetrics;
use crate::service::{ApiConfig, Service};

/// Shared by every handler.
pub struct ApiState {
    pub service: Arc<Service>,
    /// Bearer token for mutating endpoints; `None` disables them (403).
    pub token: Option<String>,
    /// Token that only reads.
    pub read_token: Option<String>,
    /// Reads need `token` or `read_token` (the listener is not loopback).
    pub reads_need_token: bool,
    /// The event sink's counters, when the caller runs one.
    pub publish: Option<Arc<PublishMetrics>>,
    /// The worker group, when `[cluster]` is enabled: stream and catalogue changes go through its topics.
    pub cluster: Option<Arc<Cluster>>,
    pub max_streams: usize,
    pub dashboard: bool,
    pub allowed_sources: AllowedSources,
    pub guard: guard::Settings,
    /// Live-update subscribers now (bounded by `api.max_sse_clients`).
    pub sse: sse::Slots,
    /// Cancelled when the server stops: ends SSE streams so the graceful shutdown can finish.
    pub stopping: CancellationToken,
}

impl ApiState {
    /// State for `cfg` (tokens from the environment or the file, see [`ApiConfig::effective_token`]).
    pub fn new(
        service: Arc<Service>,
        cfg: &ApiConfig,
        publish: Option<Arc<PublishMetrics>>,
        cluster: Option<Arc<Cluster>>,
    ) -> Self {
        let listen = cfg.listen_addr().unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        ApiState {
            service,
            token: cfg.effective_token(),
            read_token: cfg.effective_read_token(),
            reads_need_token: !listen.ip().is_loopback(),
            publish,
            cluster,
            max_streams: cfg.max_streams,
            dashboard: cfg.dashboard,
            allowed_sources: cfg.allowed_sources.clone(),
            guard: guard::Settings::new(cfg, listen),
            sse: sse::Slots::new(cfg.max_sse_clients),
            stopping: CancellationToken::new(),
        }
    }
}

pub type State = Arc<ApiState>;

pub fn router(state: State) -> Router {
    let routes = Router::new()
        .route("/", get(dashboard::index))
        .route("/assets/dashboard.js", get(dashboard::script))
        .route("/assets/dashboard.css", get(dashboard::style))
        .route("/api/board", get(dashboard::board))
        .route("/api/events", get(sse::events))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::metrics))
        .route("/cluster", get(streams::cluster))
        .route("/streams", get(streams::list).post(streams::add))
        .route("/streams/{id}", get(streams::get_one).delete(streams::remove))
        .route("/streams/{id}/frame.jpg", get(dashboard::frame))
        .route("/gallery", get(gallery::info))
        .route("/gallery/reload", post(gallery::reload))
        .route("/gallery/products", post(gallery::add))
        .route("/gallery/products/{id}", axum::routing::delete(gallery::remove))
        .route("/gallery/products/{id}/image", get(gallery::image))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::reads))
        .with_state(state.clone());
    guard::wrap(routes, &state.guard)
}

/// A running API server.
pub struct ApiServer {
    pub addr: SocketAddr,
    stopping: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl ApiServer {
    /// Binds `cfg.listen` and serves on the current tokio runtime.
    pub async fn start(
        cfg: &ApiConfig,
        service: Arc<Service>,
        publish: Option<Arc<PublishMetrics>>,
        cluster: Option<Arc<Cluster>>,
    ) -> std::io::Result<ApiServer> {
        let listener = tokio::net::TcpListener::bind(&cfg.listen).await?;
        let addr = listener.local_addr()?;
        let mut state = ApiState::new(service, cfg, publish, cluster);
        if state.token.is_none() {
            tracing::warn!("no API token (api.token or LIVESKU_API_TOKEN): mutating endpoints are disabled");
        }
        // The bound port, for the `Host` check when `listen` asked for port 0.
        state.guard.listen = addr;
        let stopping = state.stopping.clone();
        let app = router(Arc::new(state));
        let task = tokio::spawn(guard::serve(listener, app, cfg.header_read_timeout, stopping.clone()));
        tracing::info!(%addr, "control API listening");
        Ok(ApiServer { addr, stopping, task })
    }

    /// Stops accepting, ends SSE streams and waits for requests in flight.
    pub async fn stop(self) {
        self.stopping.cancel();
        let _ = self.task.await;
    }
}
