//! Exact top-k by inner product: queries x gallery block matrix products (ndarray/matrixmultiply),
//! gallery rows split across rayon's pool when there are many, a small sorted top-k per query.

use ndarray::{Array2, ArrayView2, linalg::general_mat_mul};
use rayon::prelude::*;

/// One search hit: gallery row and score (inner product).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    pub row: usize,
    pub score: f32,
}

/// Keeps the `k` best hits, best first.
#[derive(Debug, Clone)]
pub struct TopK {
    k: usize,
    hits: Vec<Hit>,
}

impl TopK {
    pub fn new(k: usize) -> Self {
        TopK { k, hits: Vec::with_capacity(k + 1) }
    }

    #[inline]
    pub fn push(&mut self, row: usize, score: f32) {
        if self.k == 0 || (self.hits.len() == self.k && score <= self.hits[self.k - 1].score) {
            return;
        }
        let at = self.hits.partition_point(|h| h.score >= score);
        self.hits.insert(at, Hit { row, score });
        self.hits.truncate(self.k);
    }

    pub fn merge(&mut self, other: TopK) {
        for h in other.hits {
            self.push(h.row, h.score);
        }
    }

    pub fn into_hits(self) -> Vec<Hit> {
        self.hits
    }
}

/// Gallery rows per block: scores of a block stay in cache while top-k reads them.
const BLOCK: usize = 4096;

/// Top-k rows of `gallery` (n x dim, row-major) for each query (m x dim), skipping rows for which
/// `skip(row)` is true (removed products).
pub fn search(gallery: &[f32], dim: usize, queries: &[f32], k: usize, skip: &(dyn Fn(usize) -> bool + Sync)) -> Vec<Vec<Hit>> {
    let n = gallery.len() / dim;
    let m = queries.len() / dim;
    if m == 0 || k == 0 {
        return vec![Vec::new(); m];
    }
    // Galleries of up to one block (the usual catalogue) are searched on the caller's thread; larger ones
    // are split over rayon's pool (its threads live as long as the process: no spawn per query).
    let threads = rayon::current_num_threads().min(n.div_ceil(BLOCK)).max(1);
    let per = n.div_ceil(threads).div_ceil(BLOCK) * BLOCK;
    let Ok(q) = ArrayView2::from_shape((m, dim), &queries[..m * dim]) else { return Vec::new() };
    let range = |t: usize| search_range(gallery, dim, q.view(), (t * per).min(n), ((t + 1) * per).min(n), k, skip);
    let partial: Vec<Vec<TopK>> = match threads {
        1 => vec![range(0)],
        _ => (0..threads).into_par_iter().map(range).collect(),
    };
    let mut merged: Vec<TopK> = (0..m).map(|_| TopK::new(k)).collect();
    for part in partial {
        for (acc, p) in merged.iter_mut().zip(part) {
            acc.merge(p);
        }
    }
    merged.into_iter().map(TopK::into_hits).collect()
}

fn search_range(gallery: &[f32], dim: usize, q: ArrayView2<f32>, start: usize, end: usize, k: usize, skip: &(dyn Fn(usize) -> bool + Sync)) -> Vec<TopK> {
    let m = q.nrows();
    let mut tops: Vec<TopK> = (0..m).map(|_| TopK::new(k)).collect();
    let mut scores = Array2::<f32>::zeros((m, BLOCK));
    let mut b0 = start;
    while b0 < end {
        let b1 = (b0 + BLOCK).min(end);
        let rows = b1 - b0;
        let Ok(g) = ArrayView2::from_shape((rows, dim), &gallery[b0 * dim..b1 * dim]) else { break };
        let mut s = scores.slice_mut(ndarray::s![.., ..rows]);
        general_mat_mul(1.0, &q, &g.t(), 0.0, &mut s);
        for (qi, top) in tops.iter_mut().enumerate() {
            let row = s.row(qi);
            for (j, &score) in row.iter().enumerate() {
                // Cheap threshold test first: most rows are worse than the current k-th hit.
                if (top.hits.len() < top.k || score > top.hits[top.k - 1].score) && !skip(b0 + j) {
                    top.push(b0 + j, score);
                }
            }
        }
        b0 = b1;
    }
    tops
}
