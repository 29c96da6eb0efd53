//! The product gallery: catalogue pages embedded once, stored versioned on disk, searched exactly or with
//! HNSW, updated in place.

pub mod admin;
pub mod ann;
pub mod build;
pub mod catalog;
pub mod config;
pub mod exact;
pub mod persist;
pub mod search;
pub mod store;

pub use build::{BuildReport, Skipped, add_catalog};
pub use config::{GalleryConfig, IndexKind};
pub use exact::Hit;
pub use search::Searcher;
pub use store::{Gallery, GalleryError, Product};
