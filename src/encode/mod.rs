//! Encoder stage: keyframes (and text) become embeddings in the space of the catalogue's product pages.
//!
//! - [`manifest`]: what a model is (towers, preprocessing, pooling, fusion), read from `manifest.toml`;
//! - [`runtime`]: ONNX Runtime loading and execution providers;
//! - [`visual`], [`text`], [`fusion`], [`model`]: the towers and how their outputs combine;
//! - [`batcher`]: one dynamic batcher shared by all streams.

pub mod batcher;
pub mod config;
pub mod error;
pub mod fusion;
pub mod localise;
pub mod manifest;
pub mod metrics;
pub mod model;
pub mod pooling;
pub mod preprocess;
pub mod runtime;
pub mod text;
pub mod visual;

pub use batcher::{BatchEncode, Batcher, BatcherConfig, Embedded, EncodedMsg, StreamSender, Tagger};
pub use config::{EncoderConfig, Provider};
pub use error::EncodeError;
pub use manifest::Manifest;
pub use model::{Encoder, FrameVectors, RegionVector, Side};
