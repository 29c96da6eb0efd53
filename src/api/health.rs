//! `/healthz`: the process answers. `/readyz`: the models are loaded, every pipeline stage is alive and
//! streams can be added; 503 once shutdown has begun or a stage has died (naming it), so a load balancer
//! or orchestrator stops sending work.

use axum::Json;
use axum::extract::State as S;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::State;

pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

pub async fn readyz(S(state): S<State>) -> (StatusCode, Json<Value>) {
    let svc = &state.service;
    if let Some(failure) = svc.health.failure() {
        let body = json!({"status": "failed", "stage": failure.stage, "reason": failure.reason});
        return (StatusCode::SERVICE_UNAVAILABLE, Json(body));
    }
    if svc.accepting() && !state.stopping.is_cancelled() {
        let streams = svc.stream_ids().len();
        (
            StatusCode::OK,
            Json(json!({"status": "ready", "streams": streams, "products": svc.gallery.products()})),
        )
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "shutting down"})))
    }
}
