//! `/gallery`: reload from disk, add a catalogue, remove products, while streams keep running. The
//! work (file I/O, embedding) runs on the blocking pool.

use std::path::PathBuf;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State as S};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Authorized;
use super::{ApiError, State};
use crate::gallery::build::{THUMBNAIL_KEY, THUMBS_DIR, thumbnail_name};
use crate::gallery::admin::CatalogError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddProducts {
    /// A catalogue file on the server (JSON lines as for `livesku gallery add`; relative image paths
    /// are resolved against its directory).
    pub catalog: PathBuf,
}

fn failed(e: CatalogError) -> ApiError {
    match e {
        CatalogError::Build(crate::gallery::build::BuildError::Catalog { .. }) => {
            ApiError::bad_request(e.to_string())
        }
        other => ApiError::internal(other.to_string()),
    }
}

pub async fn info(S(state): S<State>) -> Json<Value> {
    let svc = &state.service;
    Json(json!({"products": svc.gallery.products(), "gallery_version": svc.context.gallery_version}))
}

pub async fn reload(_: Authorized, S(state): S<State>) -> Result<Json<Value>, ApiError> {
    let g = state.service.gallery.clone();
    let products = tokio::task::spawn_blocking(move || g.reload()).await?.map_err(failed)?;
    Ok(Json(json!({"reloaded": true, "products": products})))
}

pub async fn add(
    _: Authorized,
    S(state): S<State>,
    body: Result<Json<AddProducts>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let Json(req) = body?;
    if !req.catalog.is_absolute() {
        return Err(ApiError::bad_request("\"catalog\" must be an absolute path on the server"));
    }
    if !req.catalog.is_file() {
        return Err(ApiError::bad_request(format!("catalogue not found: {}", req.catalog.display())));
    }
    let g = state.service.gallery.clone();
    let report = tokio::task::spawn_blocking(move || g.add_catalog(&req.catalog)).await?.map_err(failed)?;
    if let Some(cluster) = &state.cluster {
        // Embedded once, here; the other workers take the vectors from the catalogue topic.
        cluster.catalog.put(&state.service.gallery, &report.items).await.map_err(|e| {
            ApiError::new(axum::http::StatusCode::SERVICE_UNAVAILABLE, format!("added here, but not shared with the group: {e}"))
        })?;
    }
    Ok(Json(json!(report)))
}

/// The product's thumbnail, copied into the gallery by `gallery build`/`add`: only a file of the gallery's
/// `thumbs/` directory named as `build::thumbnail_name` names them, never a catalogue path. Answers never
/// show server paths.
pub async fn image(S(state): S<State>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let path = {
        let searcher = state.service.gallery.searcher.read();
        let g = &searcher.gallery;
        let row = g.row_of(&id).ok_or_else(|| ApiError::not_found("no such product"))?;
        let name = g.product(row).metadata.get(THUMBNAIL_KEY).and_then(|v| v.as_str());
        name.filter(|n| *n == thumbnail_name(&id)).map(|n| g.dir().join(THUMBS_DIR).join(n))
    };
    let path = path.ok_or_else(|| ApiError::not_found("the product has no thumbnail (rebuild the gallery to make one)"))?;
    let bytes = tokio::task::spawn_blocking(move || std::fs::read(&path))
        .await?
        .map_err(|_| ApiError::not_found("the product's thumbnail is missing from the gallery"))?;
    Ok(([(CONTENT_TYPE, "image/jpeg"), (CACHE_CONTROL, "max-age=3600")], bytes).into_response())
}

pub async fn remove(
    _: Authorized,
    S(state): S<State>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let g = state.service.gallery.clone();
    let ids = vec![id.clone()];
    let missing = tokio::task::spawn_blocking(move || g.remove(&ids)).await?.map_err(failed)?;
    if let Some(cluster) = &state.cluster {
        // Shared even when this worker did not have it: another one may.
        cluster.catalog.remove(&id).await.map_err(|e| {
            ApiError::new(axum::http::StatusCode::SERVICE_UNAVAILABLE, format!("not removed from the group's catalogue: {e}"))
        })?;
    } else if !missing.is_empty() {
        return Err(ApiError::not_found(format!("no product with id '{id}'")));
    }
    Ok(Json(json!({"removed": id, "products": state.service.gallery.products()})))
}
