//! The moderator dashboard: one static page (HTML, CSS and vanilla JS embedded in the binary), a JSON
//! snapshot to start from, SSE updates after that, and each stream's latest keyframe as JPEG from memory.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State as S};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::board::RecentEvent;
use super::streams::{StreamStatus, statuses};
use super::{ApiError, State};

const INDEX: &str = include_str!("static/index.html");
const SCRIPT: &str = include_str!("static/dashboard.js");
const STYLE: &str = include_str!("static/dashboard.css");

fn enabled(state: &State) -> Result<(), ApiError> {
    if state.dashboard {
        Ok(())
    } else {
        Err(ApiError::not_found("the dashboard is disabled (api.dashboard)"))
    }
}

pub async fn index(S(state): S<State>) -> Result<impl IntoResponse, ApiError> {
    enabled(&state)?;
    Ok(([(CONTENT_TYPE, "text/html; charset=utf-8")], INDEX))
}

pub async fn script() -> impl IntoResponse {
    ([(CONTENT_TYPE, "text/javascript; charset=utf-8")], SCRIPT)
}

pub async fn style() -> impl IntoResponse {
    ([(CONTENT_TYPE, "text/css; charset=utf-8")], STYLE)
}

/// Everything the page needs to draw itself; SSE updates follow.
#[derive(Serialize)]
pub struct BoardSnapshot {
    pub streams: Vec<StreamStatus>,
    pub events: Vec<RecentEvent>,
    /// The worker whose streams these are; with `group`, the page says it shows one worker of a group.
    pub worker: String,
    pub group: Option<String>,
}

pub async fn board(S(state): S<State>) -> Json<BoardSnapshot> {
    Json(BoardSnapshot {
        streams: statuses(&state),
        events: state.service.board.recent_events(),
        worker: state.service.context.worker.clone(),
        group: state.cluster.as_ref().map(|c| c.group.clone()),
    })
}

/// The stream's latest keyframe; encoded once per keyframe, on the blocking pool.
pub async fn frame(S(state): S<State>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let frame = state
        .service
        .board
        .latest_frame(&id)
        .ok_or_else(|| ApiError::not_found(format!("no keyframe for '{id}'")))?;
    let jpeg = tokio::task::spawn_blocking(move || frame.jpeg().map(<[u8]>::to_vec))
        .await?
        .map_err(|e| ApiError::internal(format!("JPEG encoding: {e}")))?;
    Response::builder()
        .header(CONTENT_TYPE, "image/jpeg")
        .header(CACHE_CONTROL, "no-store")
        .body(Body::from(jpeg))
        .map_err(|e| ApiError::internal(e.to_string()))
}
