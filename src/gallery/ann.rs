//! Approximate search for large galleries: an HNSW graph (`hnsw_rs`) over the gallery vectors, with
//! inner-product distance `offset - <a, b>`. Gallery vectors have (nearly) equal norms (unit parts), so
//! inner-product order is cosine order. `hnsw_rs` needs distances >= 0: `offset` is the largest squared row
//! norm and queries are scaled to that norm, which keeps their ranking. Removed rows are filtered at query
//! time; added rows are inserted into the live graph. The graph can be dumped next to the gallery and
//! reloaded (src/gallery/persist.rs).

use std::sync::atomic::{AtomicUsize, Ordering};

use anndists::dist::Distance;
use hnsw_rs::hnsw::Hnsw;
use hnsw_rs::prelude::FilterT;

use super::config::HnswParams;
use super::exact::Hit;

/// `offset - <a, b>`, clamped at 0.
#[derive(Debug, Clone, Copy)]
pub struct NegDot {
    offset: f32,
}

impl NegDot {
    pub(super) fn new(offset: f32) -> Self {
        NegDot { offset }
    }
}

impl Distance<f32> for NegDot {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        (self.offset - dot(a, b)).max(0.0)
    }
}

#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..16 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// Layers of every graph: `hnsw_rs` 0.3.5 dumps only graphs allocated with its maximum (16). Levels are
/// drawn with P(level >= l) = m^-l, so the cap never binds below billions of points.
const LAYERS: usize = 16;

pub struct AnnIndex {
    pub(super) hnsw: Hnsw<'static, f32, NegDot>,
    pub(super) params: HnswParams,
    pub(super) dim: usize,
    /// Largest squared row norm seen at build time (the distance offset).
    pub(super) offset: f32,
    /// Gallery rows covered: every row below is in the graph or was removed before it could be. Raised
    /// before rows are inserted, so a search can tell rows the gallery does not show yet.
    rows: AtomicUsize,
    /// Rows covered by the graph files on disk (0: none written).
    pub(super) persisted: AtomicUsize,
}

struct Skip<'a>(&'a (dyn Fn(usize) -> bool + Sync));

impl FilterT for Skip<'_> {
    fn hnsw_filter(&self, id: &usize) -> bool {
        !(self.0)(*id)
    }
}

impl AnnIndex {
    /// Builds the graph over rows `0..n` of `vectors` (n x dim), inserting in parallel.
    pub fn build(vectors: &[f32], dim: usize, params: HnswParams, skip: &(dyn Fn(usize) -> bool + Sync)) -> Self {
        let n = vectors.len() / dim;
        let rows: Vec<(&[f32], usize)> =
            (0..n).filter(|r| !skip(*r)).map(|r| (&vectors[r * dim..(r + 1) * dim], r)).collect();
        let offset = rows.iter().map(|(v, _)| dot(v, v)).fold(1.0f32, f32::max) * 1.0001;
        let hnsw = Hnsw::new(params.m, n.max(1), LAYERS, params.ef_construction, NegDot { offset });
        for chunk in rows.chunks(65_536) {
            hnsw.parallel_insert_slice(&chunk.to_vec());
        }
        let mut index = Self::from_parts(hnsw, params, dim, offset, n);
        index.hnsw.set_searching_mode(true);
        index
    }

    pub(super) fn from_parts(hnsw: Hnsw<'static, f32, NegDot>, params: HnswParams, dim: usize, offset: f32, rows: usize) -> Self {
        AnnIndex { hnsw, params, dim, offset, rows: AtomicUsize::new(rows), persisted: AtomicUsize::new(0) }
    }

    /// Adds one row (products added after the build).
    pub fn insert(&self, vector: &[f32], row: usize) {
        self.insert_rows(&[(vector, row)]);
    }

    /// Adds rows (products added after the build), in parallel for large batches. Takes `&self`: `hnsw_rs`
    /// locks per node, so searches run meanwhile (rows the gallery does not show yet are filtered, see
    /// [`Self::rows`]).
    pub fn insert_rows(&self, items: &[(&[f32], usize)]) {
        debug_assert!(items.iter().all(|(v, _)| v.len() == self.dim));
        let Some(end) = items.iter().map(|(_, r)| r + 1).max() else { return };
        self.rows.fetch_max(end, Ordering::SeqCst);
        if items.len() >= 64 {
            self.hnsw.parallel_insert_slice(&items.to_vec());
        } else {
            items.iter().for_each(|item| self.hnsw.insert_slice(*item));
        }
    }

    /// Gallery rows covered by the graph (inserted or skipped as removed).
    pub fn rows(&self) -> usize {
        self.rows.load(Ordering::SeqCst)
    }

    /// Marks rows up to `rows` covered (the last ones were removed before they could be inserted).
    pub fn set_rows(&self, rows: usize) {
        self.rows.fetch_max(rows, Ordering::SeqCst);
    }

    /// Rows covered by the persisted graph files (0: none).
    pub fn persisted_rows(&self) -> usize {
        self.persisted.load(Ordering::SeqCst)
    }

    /// Nodes in the graph.
    pub fn points(&self) -> usize {
        self.hnsw.get_nb_point()
    }

    pub fn params(&self) -> HnswParams {
        self.params
    }

    /// Search breadth (recall/speed trade-off).
    pub fn set_ef_search(&mut self, ef: usize) {
        self.params.ef_search = ef.max(1);
    }

    /// `skip` filters out removed rows; pass `None` when there are none (filtered search is slower).
    pub fn search(&self, query: &[f32], k: usize, skip: Option<&(dyn Fn(usize) -> bool + Sync)>) -> Vec<Hit> {
        let ef = self.params.ef_search.max(k);
        let norm = dot(query, query).sqrt();
        if norm == 0.0 {
            return Vec::new();
        }
        let scale = self.offset.sqrt() / norm;
        let scaled: Vec<f32> = query.iter().map(|x| x * scale).collect();
        self.hnsw
            .search_filter(&scaled, k, ef, skip.map(Skip).as_ref().map(|f| f as &dyn FilterT))
            .into_iter()
            .map(|n| Hit { row: n.d_id, score: (self.offset - n.distance) / scale })
            .collect()
    }
}
