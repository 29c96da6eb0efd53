//! Approximate search for large galleries: an HNSW graph (`hnsw_rs`) over the gallery vectors, with
//! inner-product distance `offset - <a, b>`. Gallery vectors have (nearly) equal norms (unit parts), so
//! inner-product order is cosine order. `hnsw_rs` needs distances >= 0: `offset` is the largest squared row
//! norm and queries are scaled to that norm, which keeps their ranking. Removed rows are filtered at query
//! time; added rows are inserted into the live graph.

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

pub struct AnnIndex {
    hnsw: Hnsw<'static, f32, NegDot>,
    params: HnswParams,
    dim: usize,
    /// Largest squared row norm seen at build time (the distance offset).
    offset: f32,
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
        let layers = 16.min((n.max(2) as f64).ln().ceil() as usize).max(1);
        let rows: Vec<(&[f32], usize)> =
            (0..n).filter(|r| !skip(*r)).map(|r| (&vectors[r * dim..(r + 1) * dim], r)).collect();
        let offset = rows.iter().map(|(v, _)| dot(v, v)).fold(1.0f32, f32::max) * 1.0001;
        let hnsw = Hnsw::new(params.m, n.max(1), layers, params.ef_construction, NegDot { offset });
        for chunk in rows.chunks(65_536) {
            hnsw.parallel_insert_slice(&chunk.to_vec());
        }
        let mut index = AnnIndex { hnsw, params, dim, offset };
        index.hnsw.set_searching_mode(true);
        index
    }

    /// Adds one row (products added after the build).
    pub fn insert(&mut self, vector: &[f32], row: usize) {
        debug_assert_eq!(vector.len(), self.dim);
        self.hnsw.set_searching_mode(false);
        self.hnsw.insert_slice((vector, row));
        self.hnsw.set_searching_mode(true);
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
