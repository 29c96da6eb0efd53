//! `/streams`: add, list, inspect and remove streams at run time.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State as S};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::auth::Authorized;
use super::{ApiError, State};
use super::board::{OnScreen, StreamBoard};
use crate::ingest::StatsSnapshot;
use super::sources::Refused;
use crate::service::{ServiceError, StreamInfo, StreamOptions};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddStream {
    /// Defaults to `Source::default_id`: a readable part of the URI that is not secret plus a short hash.
    pub id: Option<String>,
    pub uri: String,
    #[serde(default)]
    pub options: StreamOptions,
}

/// Ids end up in URLs, metric labels and Kafka keys: keep them plain.
fn check_id(id: &str) -> Result<(), ApiError> {
    let ok = (1..=64).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !id.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "invalid stream id {id:?}: 1 to 64 characters of A-Z a-z 0-9 - _ . (not starting with a dot)"
        )))
    }
}

/// How the API and the dashboard describe a stream (`GET /streams`, `GET /streams/{id}`, `/api/board`).
#[derive(Debug, Serialize)]
pub struct StreamStatus {
    #[serde(flatten)]
    pub info: StreamInfo,
    /// Keyframes out of the decoder per second, recently.
    pub keyframes_per_sec: f64,
    /// Last keyframe through the encoder and matcher (`keyframes` counts what ingest delivered).
    pub last_processed_seq: Option<u64>,
    pub on_screen: Vec<OnScreen>,
    /// The dashboard's live view (latest frame, speech heard, products on screen).
    pub board: Option<StreamBoard>,
}

impl StreamStatus {
    pub fn of(state: &State, info: StreamInfo) -> Self {
        let board = state.service.board.stream(&info.id);
        StreamStatus {
            keyframes_per_sec: board.as_ref().map_or(0.0, |b| (b.keyframes_per_sec * 100.0).round() / 100.0),
            last_processed_seq: board.as_ref().and_then(|b| b.processed_seq),
            on_screen: board.as_ref().map(|b| b.on_screen.clone()).unwrap_or_default(),
            board,
            info,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct StreamList {
    /// The worker answering: in a cluster each worker lists only the streams it runs.
    pub worker: String,
    pub streams: Vec<StreamStatus>,
}

/// `GET /cluster`: this worker's share of the group.
#[derive(Debug, Serialize)]
pub struct ClusterInfo {
    pub worker: String,
    /// `None` when this worker is not in a group (`[cluster] enabled = false`).
    pub group: Option<String>,
    pub partitions: Vec<i32>,
    pub streams: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Removed {
    pub id: String,
    pub removed: bool,
    #[serde(rename = "final")]
    pub stats: StatsSnapshot,
}

pub fn statuses(state: &State) -> Vec<StreamStatus> {
    state.service.stream_infos().into_iter().map(|i| StreamStatus::of(state, i)).collect()
}

pub async fn list(S(state): S<State>) -> Json<StreamList> {
    Json(StreamList { worker: state.service.context.worker.clone(), streams: statuses(&state) })
}

pub async fn cluster(S(state): S<State>) -> Json<ClusterInfo> {
    let worker = state.service.context.worker.clone();
    Json(match &state.cluster {
        Some(c) => {
            let (partitions, streams) = c.owned();
            ClusterInfo { worker, group: Some(c.group.clone()), partitions, streams }
        }
        None => ClusterInfo { worker, group: None, partitions: Vec::new(), streams: state.service.stream_ids().iter().map(|s| s.to_string()).collect() },
    })
}

fn registry_failed(e: crate::cluster::ClusterError) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("stream registry not written: {e}"))
}

pub async fn get_one(S(state): S<State>, Path(id): Path<String>) -> Result<Json<StreamStatus>, ApiError> {
    let info = state
        .service
        .stream_info(&id)
        .ok_or_else(|| ApiError::not_found(format!("no stream with id '{id}'")))?;
    Ok(Json(StreamStatus::of(&state, info)))
}

pub async fn add(
    _: Authorized,
    S(state): S<State>,
    body: Result<Json<AddStream>, JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let Json(req) = body?;
    let uri = req.uri.trim();
    if uri.is_empty() {
        return Err(ApiError::bad_request("\"uri\" must not be empty"));
    }
    // Before anything touches the file system or the network on the client's behalf.
    state.allowed_sources.check(uri).await.map_err(|e| match e {
        Refused::Forbidden(m) => ApiError::new(StatusCode::FORBIDDEN, m),
        Refused::Invalid(m) => ApiError::bad_request(m),
    })?;
    let source = crate::ingest::Source::parse(uri).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let id = req.id.clone().unwrap_or_else(|| source.default_id());
    check_id(&id)?;
    if let Some(cluster) = &state.cluster {
        // The group decides which worker runs it; a spec for an id that exists replaces it.
        let spec = crate::cluster::StreamSpec { uri: uri.to_string(), options: req.options.clone() };
        cluster.registry.put(&id, &spec).await.map_err(registry_failed)?;
        tracing::info!(stream = %id, uri = %source.redacted(), "stream registered through the API");
        return Ok((StatusCode::ACCEPTED, Json(serde_json::json!({"id": id, "registered": true, "uri": source.redacted()}))));
    }
    let svc = &state.service;
    if svc.stream_ids().len() >= state.max_streams {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("{} streams already (api.max_streams): remove one first", state.max_streams),
        ));
    }
    let id = svc.add_stream_with(Some(&id), uri, &req.options).map_err(|e| match e {
        ServiceError::DuplicateStream(id) if req.id.is_none() => ApiError::new(
            StatusCode::CONFLICT,
            format!("a stream '{id}' exists already; streams that differ only in their stream key need an \"id\""),
        ),
        e => e.into(),
    })?;
    let info =
        svc.stream_info(&id).ok_or_else(|| ApiError::internal("stream vanished right after adding"))?;
    tracing::info!(stream = %id, uri = %source.redacted(), "stream added through the API");
    let status = serde_json::to_value(StreamStatus::of(&state, info)).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok((StatusCode::CREATED, Json(status)))
}

pub async fn remove(
    _: Authorized,
    S(state): S<State>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    if let Some(cluster) = &state.cluster {
        check_id(&id)?;
        cluster.registry.remove(&id).await.map_err(registry_failed)?;
        tracing::info!(stream = %id, "stream unregistered through the API");
        return Ok((StatusCode::ACCEPTED, Json(serde_json::json!({"id": id, "unregistered": true}))));
    }
    let stats = state.service.remove_stream(&id).await?;
    tracing::info!(stream = %id, "stream removed through the API");
    let removed = serde_json::to_value(Removed { id, removed: true, stats }).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok((StatusCode::OK, Json(removed)))
}
