//! `[gallery]` configuration section: which search index to use.

use serde::Deserialize;
use crate::config::ConfigError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum IndexKind {
    /// Exact below `auto_threshold` products, HNSW above.
    #[default]
    Auto,
    Exact,
    Hnsw,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GalleryConfig {
    pub index: IndexKind,
    pub auto_threshold: usize,
    pub hnsw: HnswParams,
}

/// HNSW graph parameters (defaults measured on 1M x 384, see BENCHMARKS.md); USearch calls them
/// connectivity, expansion_add and expansion_search.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HnswParams {
    /// Links per node.
    pub m: usize,
    pub ef_construction: usize,
    pub ef_search: usize,
    /// Keep the graph in the gallery's `hnsw/` directory and reload it instead of rebuilding
    /// (src/gallery/persist.rs).
    pub persist: bool,
}

impl Default for HnswParams {
    fn default() -> Self {
        HnswParams { m: 12, ef_construction: 64, ef_search: 64, persist: true }
    }
}

impl Default for GalleryConfig {
    fn default() -> Self {
        GalleryConfig { index: IndexKind::Auto, auto_threshold: 50_000, hnsw: HnswParams::default() }
    }
}

impl GalleryConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, reason: &str| Err(ConfigError { key: String::from(key), problem: reason.to_string() });
        if !(2..=256).contains(&self.hnsw.m) {
            return bad("gallery.hnsw.m", "must be between 2 and 256");
        }
        if self.hnsw.ef_construction < self.hnsw.m {
            return bad("gallery.hnsw.ef_construction", "must be at least gallery.hnsw.m");
        }
        if self.hnsw.ef_search == 0 {
            return bad("gallery.hnsw.ef_search", "must be positive");
        }
        Ok(())
    }

    /// Whether a gallery of `n` products should be searched with HNSW.
    pub fn use_hnsw(&self, n: usize) -> bool {
        match self.index {
            IndexKind::Auto => n >= self.auto_threshold,
            IndexKind::Exact => false,
            IndexKind::Hnsw => true,
        }
    }
}
