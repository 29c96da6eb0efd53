//! livesku: watches live-commerce streams and reports which catalogue products are on screen.
//!
//! Data flows one way through bounded channels:
//! `ingest` (GStreamer, one pipeline per stream) -> `sample` (keyframe rate limit, near-duplicate filter)
//! -> encoder -> gallery search -> tracking -> publishing.

pub mod api;
pub mod asr;
pub mod blobs;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod encode;
pub mod event;
pub mod gallery;
pub mod ingest;
pub mod matcher;
pub mod messages;
pub mod ocr;
pub mod paths;
pub mod publish;
pub mod sample;
pub mod service;
pub mod stage;
pub mod track;
pub mod train;
pub mod vector_b64;
