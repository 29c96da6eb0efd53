//! Run-time gallery changes: the matcher searches a shared [`Searcher`]; reloading swaps in a fresh one
//! built from disk; adding embeds a catalogue with a second encoder (opened per request, so the
//! streaming encoder is never paused) and inserts the products in place, as [`GalleryControl::insert`]
//! does for products embedded elsewhere; removing tombstones rows in place.
//!
//! Adding never reloads: the rows are appended to the gallery files under the shared lock (readers only
//! see rows the in-memory gallery knows), shown under the exclusive lock (bookkeeping only), then inserted
//! into the HNSW graph under the shared lock again (searches go on; they miss the new rows until it
//! returns). The graph is written back to the gallery when its files lag by more than 5 %.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::encode::{EncoderConfig, Manifest};
use crate::gallery::{self, Gallery, GalleryConfig, GalleryError, Product, Searcher};

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("gallery {path}: {source}")]
    Gallery { path: String, source: GalleryError },
    #[error("encoder: {0}")]
    Encode(#[from] crate::encode::EncodeError),
    #[error("{0}")]
    Build(#[from] gallery::build::BuildError),
}

/// Result of adding a catalogue.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AddReport {
    pub added: usize,
    /// (line, reason) of each skipped catalogue line.
    pub skipped: Vec<(usize, String)>,
    pub products: usize,
    /// The products added, as embedded (for forwarding to other workers' [`GalleryControl::insert`]).
    #[serde(skip)]
    pub items: Vec<(Product, Vec<f32>)>,
}

pub struct GalleryControl {
    dir: PathBuf,
    manifest: Manifest,
    encoder: EncoderConfig,
    search: GalleryConfig,
    pub searcher: Arc<RwLock<Searcher>>,
    /// One change at a time (two writers of the same directory would interleave rows).
    ops: Mutex<()>,
}

impl GalleryControl {
    pub fn new(
        dir: &Path,
        manifest: Manifest,
        encoder: EncoderConfig,
        search: GalleryConfig,
        s: Searcher,
    ) -> Self {
        GalleryControl {
            dir: dir.to_path_buf(),
            manifest,
            encoder,
            search,
            searcher: Arc::new(RwLock::new(s)),
            ops: Mutex::new(()),
        }
    }

    fn err(&self) -> impl FnOnce(GalleryError) -> CatalogError + '_ {
        |source| CatalogError::Gallery { path: self.dir.display().to_string(), source }
    }

    pub fn products(&self) -> usize {
        self.searcher.read().gallery.len()
    }

    /// Re-reads the gallery directory (e.g. after `livesku gallery add` by hand). Blocking.
    pub fn reload(&self) -> Result<usize, CatalogError> {
        let _op = self.ops.lock();
        self.reload_locked()
    }

    fn reload_locked(&self) -> Result<usize, CatalogError> {
        let g = Gallery::open(&self.dir, Some(&self.manifest)).map_err(self.err())?;
        // The HNSW graph (large galleries) is built before taking the lock: search never waits on it.
        let fresh = Searcher::new(g, &self.search);
        let n = fresh.gallery.len();
        *self.searcher.write() = fresh;
        tracing::info!(products = n, "gallery reloaded");
        Ok(n)
    }

    /// Embeds a catalogue file (as `livesku gallery add`) and inserts its products, a batch at a time, into
    /// the live gallery (searchable as soon as each batch is in). Blocking.
    pub fn add_catalog(&self, catalog: &Path) -> Result<AddReport, CatalogError> {
        let _op = self.ops.lock();
        let mut encoder = crate::encode::Encoder::open(&self.encoder)?;
        let mut items = Vec::new();
        let result = gallery::build::embed_catalog(catalog, &self.dir, &mut encoder, false, &mut |batch| {
            self.insert_locked(batch)?;
            items.extend_from_slice(batch);
            Ok(())
        });
        self.save_index();
        let report = result?;
        Ok(AddReport {
            added: report.added,
            skipped: report.skipped.into_iter().map(|s| (s.line, s.reason)).collect(),
            products: self.products(),
            items,
        })
    }

    /// Appends products embedded elsewhere (e.g. received from other workers) to the gallery files and the
    /// live searcher, replacing live products with the same id; searchable when it returns. Returns the
    /// number of live products afterwards. Blocking.
    pub fn insert(&self, items: &[(Product, Vec<f32>)]) -> Result<usize, CatalogError> {
        let _op = self.ops.lock();
        let result = self.insert_locked(items).map_err(self.err());
        self.save_index();
        result.map(|_| self.products())
    }

    /// Whether the gallery has `product_id` live with exactly this embedding.
    pub fn has(&self, product_id: &str, vector: &[f32]) -> bool {
        let s = self.searcher.read();
        s.gallery.row_of(product_id).is_some_and(|r| s.gallery.vector(r) == vector)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The version of the model whose embeddings this gallery holds.
    pub fn model_version(&self) -> &str {
        &self.manifest.version
    }

    /// Under `ops`: files under the shared lock, bookkeeping under the exclusive one, graph under the shared.
    fn insert_locked(&self, items: &[(Product, Vec<f32>)]) -> Result<(), GalleryError> {
        if items.is_empty() {
            return Ok(());
        }
        let pending = self.searcher.read().gallery.append(items)?;
        let rows = pending.rows();
        self.searcher.write().gallery.commit(pending)?;
        self.searcher.read().index_rows(rows);
        Ok(())
    }

    /// Writes the graph back when it lags its files (a failure costs the next load some inserts or a
    /// rebuild, never the add).
    fn save_index(&self) {
        let started = std::time::Instant::now();
        match self.searcher.read().save_index() {
            Ok(true) => tracing::info!(secs = started.elapsed().as_secs_f32(), "HNSW index persisted after adding products"),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "cannot persist the HNSW index (the next load inserts the new rows or rebuilds)"),
        }
    }

    /// Removes products; returns the ids that were not in the gallery. Blocking (writes a tombstone).
    pub fn remove(&self, ids: &[String]) -> Result<Vec<String>, CatalogError> {
        let _op = self.ops.lock();
        let mut missing = Vec::new();
        let mut s = self.searcher.write();
        for id in ids {
            if !s.remove(id).map_err(self.err())? {
                missing.push(id.clone());
            }
        }
        Ok(missing)
    }
}

/// Where the dashboard loads a product's picture: its thumbnail in the gallery, served by
/// `GET /gallery/products/{id}/image`. Catalogue `image_url`s are never handed to moderators' browsers
/// (they could point anywhere; the page's CSP allows its own origin only).
pub fn product_image_url(p: &crate::gallery::Product) -> Option<String> {
    p.metadata
        .get(crate::gallery::build::THUMBNAIL_KEY)
        .map(|_| format!("/gallery/products/{}/image", encode_path_segment(&p.product_id)))
}

/// Percent-encodes everything but unreserved characters (product ids are free text).
fn encode_path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
