//! Searching a gallery: exact for small galleries, HNSW for large ones (see [`GalleryConfig`]).

use super::ann::AnnIndex;
use super::config::{GalleryConfig, HnswParams};
use super::exact::{self, Hit};
use super::persist::{self, IndexError};
use super::store::{Gallery, GalleryError, Product};

pub struct Searcher {
    pub gallery: Gallery,
    ann: Option<AnnIndex>,
    hnsw: HnswParams,
}

impl Searcher {
    /// Wraps a loaded gallery. When the config asks for HNSW at this size, the graph persisted in the
    /// gallery is reloaded (rows added since are inserted), or built and persisted (src/gallery/persist.rs).
    /// A gallery that grows past `auto_threshold` at run time stays exact until it is reloaded.
    pub fn new(gallery: Gallery, cfg: &GalleryConfig) -> Self {
        let ann = cfg.use_hnsw(gallery.len()).then(|| persist::open_or_build(&gallery, &cfg.hnsw)).flatten();
        Searcher { gallery, ann, hnsw: cfg.hnsw }
    }

    pub fn uses_ann(&self) -> bool {
        self.ann.is_some()
    }

    pub fn ann(&self) -> Option<&AnnIndex> {
        self.ann.as_ref()
    }

    /// Top-k hits for each query (m x dim, row-major), best first.
    pub fn search(&self, queries: &[f32], k: usize) -> Vec<Vec<Hit>> {
        let g = &self.gallery;
        let skip = |r: usize| g.is_removed(r);
        match &self.ann {
            Some(ann) => {
                let filter: Option<&(dyn Fn(usize) -> bool + Sync)> = if g.has_removed() { Some(&skip) } else { None };
                queries.chunks_exact(g.dim()).map(|q| ann.search(q, k, filter)).collect()
            }
            None => exact::search(g.vectors(), g.dim(), queries, k, &skip),
        }
    }

    /// Adds products without rebuilding (the graph, if any, gets the new rows).
    pub fn add(&mut self, items: &[(Product, Vec<f32>)]) -> Result<Vec<usize>, GalleryError> {
        let pending = self.gallery.append(items)?;
        let rows = pending.rows();
        self.gallery.commit(pending)?;
        self.index_rows(rows.clone());
        Ok(rows.collect())
    }

    /// Inserts gallery rows (committed by [`Gallery::commit`]) into the graph, if any. Takes `&self`, so
    /// it runs under a shared lock while searches go on; until it returns, searches miss these rows.
    pub fn index_rows(&self, rows: std::ops::Range<usize>) {
        let Some(ann) = self.ann.as_ref() else { return };
        let g = &self.gallery;
        let end = rows.end.min(g.rows());
        let items: Vec<(&[f32], usize)> = (rows.start..end).filter(|r| !g.is_removed(*r)).map(|r| (g.vector(r), r)).collect();
        match ann.insert_rows(&items) {
            Ok(()) => ann.set_rows(end),
            // Out of memory or the like: these rows stay out of the graph until the next load inserts them.
            Err(e) => tracing::error!(error = %e, rows = items.len(), "rows not inserted into the HNSW index"),
        }
    }

    /// Writes the graph into the gallery when the files lag it (see [`persist::is_stale`]); true when it
    /// wrote. Takes `&self`: searches go on meanwhile.
    pub fn save_index(&self) -> Result<bool, IndexError> {
        match &self.ann {
            Some(ann) if self.hnsw.persist && persist::is_stale(ann) => persist::dump(ann, &self.gallery).map(|_| true),
            _ => Ok(false),
        }
    }

    pub fn remove(&mut self, product_id: &str) -> Result<bool, GalleryError> {
        self.gallery.remove(product_id)
    }
}
