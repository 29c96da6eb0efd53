//! Gallery search speed: exact top-k on 100k products, and HNSW recall@1 and queries/s against exact on
//! 1M x 384 (clustered unit vectors standing in for product embeddings).
//!
//!     cargo bench --bench search                              # about 12 min on 2 cores (1M build)
//!     LIVESKU_BENCH_ANN_N=200000 cargo bench --bench search   # smaller ANN gallery for a quick run
//!
//! Knobs: LIVESKU_BENCH_EXACT_N (100000), LIVESKU_BENCH_QUERIES (1000), LIVESKU_BENCH_M (12),
//! LIVESKU_BENCH_EFC (64), LIVESKU_BENCH_EF ("16,32,64,128"), LIVESKU_BENCH_DATA (latent | iso).

use std::time::Instant;

use livesku::gallery::ann::AnnIndex;
use livesku::gallery::config::HnswParams;
use livesku::gallery::exact;

mod common;
use common::*;

fn main() {
    let m = env("LIVESKU_BENCH_QUERIES", 1000);
    let no_skip = |_: usize| false;

    let n = env("LIVESKU_BENCH_EXACT_N", 100_000);
    let g = gallery(n, 1);
    let q = queries(&g, m, 2);
    let t = Instant::now();
    let mut hits = 0;
    for batch in q.chunks(64 * DIM) {
        hits += exact::search(&g, DIM, batch, 10, &no_skip).len();
    }
    let s = t.elapsed().as_secs_f64();
    println!("exact top-10, {n} x {DIM}, {hits} queries in batches of 64: {:.0} queries/s ({:.2} ms/query)", m as f64 / s, s * 1000.0 / m as f64);
    let t = Instant::now();
    for one in q.chunks(DIM).take(200) {
        std::hint::black_box(exact::search(&g, DIM, one, 10, &no_skip));
    }
    println!("exact top-10, {n} x {DIM}, one query at a time: {:.0} queries/s", 200.0 / t.elapsed().as_secs_f64());
    drop(g);

    let n = env("LIVESKU_BENCH_ANN_N", 1_000_000);
    println!("ANN data: {}", std::env::var("LIVESKU_BENCH_DATA").unwrap_or_else(|_| "latent".into()));
    let params = HnswParams { m: env("LIVESKU_BENCH_M", 12), ef_construction: env("LIVESKU_BENCH_EFC", 64), ef_search: 64, persist: false };
    let g = gallery(n, 3);
    let q = queries(&g, m, 4);
    let t = Instant::now();
    let mut truth = Vec::with_capacity(m);
    for batch in q.chunks(64 * DIM) {
        truth.extend(exact::search(&g, DIM, batch, 1, &no_skip).into_iter().map(|h| h[0].row));
    }
    let exact_qps = m as f64 / t.elapsed().as_secs_f64();
    println!("exact top-1, {n} x {DIM}, batches of 64: {exact_qps:.1} queries/s");
    let t = Instant::now();
    let mut index = AnnIndex::build(&g, DIM, params, &no_skip).expect("build the graph");
    println!("HNSW build {n} x {DIM} (m {}, ef_construction {}): {:.1} s", params.m, params.ef_construction, t.elapsed().as_secs_f64());
    let efs: Vec<usize> = std::env::var("LIVESKU_BENCH_EF").unwrap_or_else(|_| "16,32,64,128".into()).split(',').filter_map(|s| s.trim().parse().ok()).collect();
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    for ef in efs {
        index.set_ef_search(ef);
        let t = Instant::now();
        // Queries spread over the cores, like the batched exact search.
        let found: Vec<usize> = std::thread::scope(|s| {
            let per = m.div_ceil(threads);
            let idx = &index;
            let hs: Vec<_> = q
                .chunks(per * DIM)
                .map(|chunk| s.spawn(move || chunk.chunks(DIM).map(|one| idx.search(one, 1, None).first().map_or(usize::MAX, |h| h.row)).collect::<Vec<_>>()))
                .collect();
            hs.into_iter().flat_map(|h| h.join().expect("search thread")).collect()
        });
        let qps = m as f64 / t.elapsed().as_secs_f64();
        let recall = found.iter().zip(&truth).filter(|(a, b)| a == b).count() as f64 / m as f64;
        println!("HNSW ef_search {ef:>4}: recall@1 {recall:.4}, {qps:.0} queries/s, {:.1}x exact", qps / exact_qps);
    }
}
