//! Searching a gallery: exact for small galleries, HNSW for large ones (see [`GalleryConfig`]).

use super::ann::AnnIndex;
use super::config::GalleryConfig;
use super::exact::{self, Hit};
use super::store::{Gallery, GalleryError, Product};

pub struct Searcher {
    pub gallery: Gallery,
    ann: Option<AnnIndex>,
}

impl Searcher {
    /// Wraps a loaded gallery, building the HNSW graph when the config asks for one at this size.
    pub fn new(gallery: Gallery, cfg: &GalleryConfig) -> Self {
        let ann = cfg.use_hnsw(gallery.len()).then(|| {
            let started = std::time::Instant::now();
            let g = &gallery;
            let index = AnnIndex::build(g.vectors(), g.dim(), cfg.hnsw, &|r| g.is_removed(r));
            tracing::info!(products = g.len(), secs = started.elapsed().as_secs_f32(), "HNSW index built");
            index
        });
        Searcher { gallery, ann }
    }

    pub fn uses_ann(&self) -> bool {
        self.ann.is_some()
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
        let rows = self.gallery.add(items)?;
        if let Some(ann) = self.ann.as_mut() {
            for (row, (_, v)) in rows.iter().zip(items) {
                ann.insert(v, *row);
            }
        }
        Ok(rows)
    }

    pub fn remove(&mut self, product_id: &str) -> Result<bool, GalleryError> {
        self.gallery.remove(product_id)
    }
}
