//! Approximate search for large galleries: an HNSW graph ([USearch](https://github.com/unum-cloud/usearch))
//! over the gallery vectors, inner-product metric (USearch's `IP` distance is `1 - <a, b>`, so a hit's
//! score is the same dot product exact search gives). Keys are gallery rows. Removed rows are filtered at
//! query time; added rows are inserted into the live graph. The graph can be saved next to the gallery and
//! loaded back in one read (src/gallery/persist.rs).

use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::{Mutex, RwLock};
use rayon::prelude::*;
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use super::config::HnswParams;
use super::exact::Hit;

#[derive(Debug, thiserror::Error)]
#[error("HNSW index: {0}")]
pub struct AnnError(pub String);

fn ann_err(e: impl std::fmt::Display) -> AnnError {
    AnnError(e.to_string())
}

pub struct AnnIndex {
    /// Searches share it; inserts take it alone, a slice of rows at a time (see [`AnnIndex::insert_rows`]),
    /// as does growing the capacity (USearch's `reserve` must not race its adds or searches).
    pub(super) index: RwLock<Index>,
    pub(super) params: HnswParams,
    pub(super) dim: usize,
    /// Gallery rows covered: every row below is in the graph or was removed before it could be. Raised
    /// before rows are inserted, so a search can tell rows the gallery does not show yet.
    rows: AtomicUsize,
    /// Rows covered by the index file on disk (0: none written).
    pub(super) persisted: AtomicUsize,
    /// Held by inserts and by a save: a file is never written while rows go in (searches go on).
    pub(super) mutate: Mutex<()>,
}

pub(super) fn options(dim: usize, params: &HnswParams) -> IndexOptions {
    IndexOptions {
        dimensions: dim,
        metric: MetricKind::IP,
        quantization: ScalarKind::F32,
        connectivity: params.m,
        expansion_add: params.ef_construction,
        expansion_search: params.ef_search,
        multi: false,
    }
}

/// Rows inserted per exclusive hold of the graph: about 0.1 s on 2 cores, the longest a search waits.
const INSERT_SLICE: usize = 256;

/// Run-time inserts of up to this many rows go in one after another. Rows inserted at the same time cannot
/// link to each other, and after the build no later rows come to repair that. Measured (BENCHMARKS.md,
/// issue 15 third session): 100 rows of 10 new clusters into 3,000 (tests/ann_persist.rs) all found as
/// their own top-1 in 12 of 12 runs one by one, 97-100 in parallel; 1,000 rows near existing ones into
/// 200k: 1000/1000 one by one (3 runs) against 996-998 in parallel, in 0.11-0.14 s against 0.06-0.08 s.
/// The build and larger batches (a reload's catch-up) stay parallel.
const SEQUENTIAL_INSERTS: usize = 4096;

/// Threads an insert uses: rayon's pool.
fn insert_threads() -> usize {
    rayon::current_num_threads()
}

/// Concurrent calls USearch can serve: it keeps one search context per caller and fails a search or an add
/// when all are taken, so there are enough for an insert's threads and every searching thread (the
/// matcher, API handlers, benches) at once.
pub(super) fn contexts() -> usize {
    2 * insert_threads() + 16
}

impl AnnIndex {
    /// An empty graph for `dim`-dimensional rows.
    pub(super) fn empty(dim: usize, params: HnswParams) -> Result<Self, AnnError> {
        let index = Index::new(&options(dim, &params)).map_err(ann_err)?;
        Ok(Self::from_parts(index, params, dim, 0))
    }

    /// Builds the graph over rows `0..n` of `vectors` (n x dim), inserting in parallel.
    pub fn build(vectors: &[f32], dim: usize, params: HnswParams, skip: &(dyn Fn(usize) -> bool + Sync)) -> Result<Self, AnnError> {
        let n = vectors.len() / dim;
        let index = Self::empty(dim, params)?;
        let rows: Vec<(&[f32], usize)> =
            (0..n).filter(|r| !skip(*r)).map(|r| (&vectors[r * dim..(r + 1) * dim], r)).collect();
        index.insert_with(&rows, true)?;
        index.set_rows(n);
        Ok(index)
    }

    pub(super) fn from_parts(index: Index, params: HnswParams, dim: usize, rows: usize) -> Self {
        AnnIndex { index: RwLock::new(index), params, dim, rows: AtomicUsize::new(rows), persisted: AtomicUsize::new(0), mutate: Mutex::new(()) }
    }

    /// Adds one row (products added after the build).
    pub fn insert(&self, vector: &[f32], row: usize) -> Result<(), AnnError> {
        self.insert_rows(&[(vector, row)])
    }

    /// Adds rows (products added after the build), one by one up to [`SEQUENTIAL_INSERTS`] rows and on
    /// rayon's pool beyond. Takes `&self`: searches
    /// run between slices of [`INSERT_SLICE`] rows (rows the gallery does not show yet are filtered, see
    /// [`Self::rows`]).
    pub fn insert_rows(&self, items: &[(&[f32], usize)]) -> Result<(), AnnError> {
        self.insert_with(items, items.len() > SEQUENTIAL_INSERTS)
    }

    fn insert_with(&self, items: &[(&[f32], usize)], parallel: bool) -> Result<(), AnnError> {
        debug_assert!(items.iter().all(|(v, _)| v.len() == self.dim));
        let Some(end) = items.iter().map(|(_, r)| r + 1).max() else { return Ok(()) };
        let _mutating = self.mutate.lock();
        self.rows.fetch_max(end, Ordering::SeqCst);
        for slice in items.chunks(INSERT_SLICE) {
            // Alone with the graph: a USearch search that runs while nodes go in can come back with fewer
            // than k hits (measured: 1-2 of 5 on a 2,000-row graph), which the matcher would read as a
            // clear winner.
            let index = self.index.write();
            let needed = index.size() + slice.len();
            if needed > index.capacity() {
                // Grow by half again at least, so one-by-one adds do not reserve each time.
                let target = needed.max(index.capacity() + index.capacity() / 2).max(1024);
                index.reserve_capacity_and_threads(target, contexts()).map_err(ann_err)?;
            }
            let index = &*index;
            if !parallel || slice.len() < 64 {
                slice.iter().try_for_each(|(v, r)| index.add(*r as u64, v).map_err(ann_err))?;
            } else {
                slice.par_iter().try_for_each(|(v, r)| index.add(*r as u64, v).map_err(ann_err))?;
            }
        }
        Ok(())
    }

    /// Gallery rows covered by the graph (inserted or skipped as removed).
    pub fn rows(&self) -> usize {
        self.rows.load(Ordering::SeqCst)
    }

    /// Marks rows up to `rows` covered (the last ones were removed before they could be inserted).
    pub fn set_rows(&self, rows: usize) {
        self.rows.fetch_max(rows, Ordering::SeqCst);
    }

    /// Rows covered by the persisted index file (0: none).
    pub fn persisted_rows(&self) -> usize {
        self.persisted.load(Ordering::SeqCst)
    }

    /// Nodes in the graph.
    pub fn points(&self) -> usize {
        self.index.read().size()
    }

    pub fn params(&self) -> HnswParams {
        self.params
    }

    /// Search breadth (recall/speed trade-off).
    pub fn set_ef_search(&mut self, ef: usize) {
        self.params.ef_search = ef.max(1);
        self.index.get_mut().change_expansion_search(self.params.ef_search);
    }

    /// `skip` filters out removed rows; pass `None` when there are none (filtered search is slower).
    /// A failed search (it cannot, short of memory) logs and returns no hits.
    pub fn search(&self, query: &[f32], k: usize, skip: Option<&(dyn Fn(usize) -> bool + Sync)>) -> Vec<Hit> {
        let index = self.index.read();
        let found = match skip {
            None => index.search(query, k),
            Some(skip) => index.filtered_search(query, k, |key| !skip(key as usize)),
        };
        match found {
            Ok(m) => m.keys.iter().zip(&m.distances).map(|(&key, &d)| Hit { row: key as usize, score: 1.0 - d }).collect(),
            Err(e) => {
                tracing::error!(error = %e, "HNSW search failed");
                Vec::new()
            }
        }
    }
}
