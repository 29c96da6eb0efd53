//! The control API, `/metrics` and the moderator dashboard (axum, one listener). Read-only endpoints are
//! open; mutating ones need the bearer token (src/api/auth.rs). Every error is JSON:
//! `{"error": {"status": 404, "message": "..."}}`.
//!
//! | route | what |
//! |---|---|
//! | `GET /healthz`, `GET /readyz` | liveness; readiness (503 once shutdown began) |
//! | `GET /metrics` | Prometheus/OpenMetrics text (docs/metrics.md) |
//! | `GET /streams`, `GET /streams/{id}` | stream state and counters |
//! | `POST /streams`, `DELETE /streams/{id}` | add (`{id, uri, options}`) / remove a stream (token) |
//! | `GET /gallery`, `POST /gallery/reload`, `POST /gallery/products`, `DELETE /gallery/products/{id}` | gallery (token for changes) |
//! | `GET /`, `GET /api/board`, `GET /api/events`, `GET /streams/{id}/frame.jpg` | dashboard, its snapshot, SSE updates, latest keyframe |

mod auth;
pub mod board;
mod dashboard;
mod error;
mod gallery;
mod health;
mod metrics;
mod sse;
mod streams;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;

pub use error::ApiError;

use crate::publish::PublishMetrics;
use crate::service::{ApiConfig, Service};

/// Shared by every handler.
pub struct ApiState {
    pub service: Arc<Service>,
    /// Bearer token for mutating endpoints; `None` disables them (403).
    pub token: Option<String>,
    /// The event sink's counters, when the caller runs one.
    pub publish: Option<Arc<PublishMetrics>>,
    pub max_streams: usize,
    pub dashboard: bool,
    /// Cancelled when the server stops: ends SSE streams so the graceful shutdown can finish.
    pub stopping: CancellationToken,
}

pub type State = Arc<ApiState>;

pub fn router(state: State) -> Router {
    Router::new()
        .route("/", get(dashboard::index))
        .route("/assets/dashboard.js", get(dashboard::script))
        .route("/assets/dashboard.css", get(dashboard::style))
        .route("/api/board", get(dashboard::board))
        .route("/api/events", get(sse::events))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::metrics))
        .route("/streams", get(streams::list).post(streams::add))
        .route("/streams/{id}", get(streams::get_one).delete(streams::remove))
        .route("/streams/{id}/frame.jpg", get(dashboard::frame))
        .route("/gallery", get(gallery::info))
        .route("/gallery/reload", post(gallery::reload))
        .route("/gallery/products", post(gallery::add))
        .route("/gallery/products/{id}", axum::routing::delete(gallery::remove))
        .route("/gallery/products/{id}/image", get(gallery::image))
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .with_state(state)
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
    ) -> std::io::Result<ApiServer> {
        let listener = tokio::net::TcpListener::bind(&cfg.listen).await?;
        let addr = listener.local_addr()?;
        let token = cfg.effective_token();
        if token.is_none() {
            tracing::warn!("no API token (api.token or LIVESKU_API_TOKEN): mutating endpoints are disabled");
        }
        let stopping = CancellationToken::new();
        let state = Arc::new(ApiState {
            service,
            token,
            publish,
            max_streams: cfg.max_streams,
            dashboard: cfg.dashboard,
            stopping: stopping.clone(),
        });
        let app = router(state);
        let stop = stopping.clone();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app).with_graceful_shutdown(stop.cancelled_owned()).await;
            if let Err(e) = served {
                tracing::error!(error = %e, "API server failed");
            }
        });
        tracing::info!(%addr, "control API listening");
        Ok(ApiServer { addr, stopping, task })
    }

    /// Stops accepting, ends SSE streams and waits for requests in flight.
    pub async fn stop(self) {
        self.stopping.cancel();
        let _ = self.task.await;
    }
}
