//! `/gallery`: reload from disk, add a catalogue, remove products, while streams keep running. The
//! work (file I/O, embedding) runs on the blocking pool.

use std::path::PathBuf;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State as S};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Authorized;
use super::{ApiError, State};
use crate::service::catalog::CatalogError;

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
    Ok(Json(json!(report)))
}

pub async fn remove(
    _: Authorized,
    S(state): S<State>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let g = state.service.gallery.clone();
    let ids = vec![id.clone()];
    let missing = tokio::task::spawn_blocking(move || g.remove(&ids)).await?.map_err(failed)?;
    if !missing.is_empty() {
        return Err(ApiError::not_found(format!("no product with id '{id}'")));
    }
    Ok(Json(json!({"removed": id, "products": state.service.gallery.products()})))
}
