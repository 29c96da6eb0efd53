//! Issue 15, gallery at scale: loading a large gallery with its persisted HNSW graph against rebuilding
//! the graph, 1,000 products added at run time through `GalleryControl::insert` (time until searchable),
//! and recall@10 on the isotropic worst case with the default and a denser graph.
//!
//!     cargo bench --bench persist                                  # 1M x 384: about 10 min on 2 cores
//!     LIVESKU_BENCH_PERSIST_N=200000 cargo bench --bench persist   # quicker
//!
//! Knobs: LIVESKU_BENCH_PERSIST_N (1000000), LIVESKU_BENCH_ADD (1000), LIVESKU_BENCH_ISO_N (100000; 0
//! skips the recall part), LIVESKU_BENCH_ISO_PER (100 products per centre), LIVESKU_BENCH_QUERIES (1000),
//! LIVESKU_BENCH_DIR (the temp directory).

use std::path::Path;
use std::time::Instant;

use livesku::encode::{EncoderConfig, Manifest};
use livesku::gallery::admin::GalleryControl;
use livesku::gallery::ann::AnnIndex;
use livesku::gallery::config::HnswParams;
use livesku::gallery::{Gallery, GalleryConfig, IndexKind, Product, Searcher, exact, persist};

mod common;
use common::*;

/// The default manifest without its text tower: 384-dimensional gallery vectors (only the TOML is read).
fn manifest(dir: &Path) -> Manifest {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/models/default/manifest.toml")).expect("manifest");
    let (head, rest) = text.split_once("[text]").expect("[text] table");
    let tail = rest.find("\n[").map_or("", |i| &rest[i..]);
    std::fs::create_dir_all(dir).expect("model dir");
    std::fs::write(dir.join("manifest.toml"), format!("{head}{tail}")).expect("write manifest");
    let m = Manifest::load(dir).expect("load manifest");
    assert_eq!(m.embedding_dim(), DIM);
    m
}

fn product(i: usize) -> Product {
    Product { row: 0, product_id: format!("p{i}"), title: format!("Product {i}"), metadata: serde_json::Map::new() }
}

fn secs(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

fn main() {
    let n = env("LIVESKU_BENCH_PERSIST_N", 1_000_000);
    let add = env("LIVESKU_BENCH_ADD", 1000);
    let m = env("LIVESKU_BENCH_QUERIES", 1000);
    let base = std::env::var("LIVESKU_BENCH_DIR").map(std::path::PathBuf::from).unwrap_or_else(|_| std::env::temp_dir());
    let tmp = tempfile::tempdir_in(base).expect("temp dir");
    let manifest = manifest(&tmp.path().join("model"));
    let dir = tmp.path().join("gallery");
    let cfg = GalleryConfig { index: IndexKind::Hnsw, ..GalleryConfig::default() };
    println!("persisted index: {n} x {DIM} (latent data), m {}, ef_construction {}", cfg.hnsw.m, cfg.hnsw.ef_construction);

    let t = Instant::now();
    {
        let data = gallery(n, 3);
        let mut g = Gallery::create(&dir, &manifest).expect("create gallery");
        for (c, chunk) in data.chunks(10_000 * DIM).enumerate() {
            let items: Vec<_> = chunk.chunks(DIM).enumerate().map(|(i, v)| (product(c * 10_000 + i), v.to_vec())).collect();
            g.add(&items).expect("add");
        }
    }
    println!("gallery written: {:.1} s", secs(t));

    // Load with a rebuild (what every load did before), then write the graph.
    let t = Instant::now();
    let g = Gallery::open(&dir, Some(&manifest)).expect("open");
    let open_s = secs(t);
    let t = Instant::now();
    let built = AnnIndex::build(g.vectors(), DIM, cfg.hnsw, &|r| g.is_removed(r)).expect("build the graph");
    let build_s = secs(t);
    println!("load with rebuild: {:.1} s (open {open_s:.2} s + HNSW build {build_s:.1} s)", open_s + build_s);
    let t = Instant::now();
    persist::dump(&built, &g).expect("dump");
    let files: u64 = std::fs::metadata(dir.join(persist::INDEX_DIR).join(persist::INDEX_FILE)).map_or(0, |m| m.len());
    println!("index written: {:.1} s, {:.2} GB", secs(t), files as f64 / 1e9);
    let q = queries(g.vectors(), m, 4);
    let before: Vec<Vec<usize>> = q.chunks(DIM).map(|one| built.search(one, 10, None).into_iter().map(|h| h.row).collect()).collect();
    drop((built, g));

    // Load with the persisted graph: open + verify (sidecar, lengths, sha256) + reload.
    let t = Instant::now();
    let s = Searcher::new(Gallery::open(&dir, Some(&manifest)).expect("open"), &cfg);
    let load_s = secs(t);
    let ann = s.ann().expect("hnsw");
    assert_eq!(ann.persisted_rows(), n, "the persisted graph was not used");
    let after: Vec<Vec<usize>> = q.chunks(DIM).map(|one| ann.search(one, 10, None).into_iter().map(|h| h.row).collect()).collect();
    let same = before.iter().zip(&after).filter(|(a, b)| a == b).count();
    println!("load with persisted index: {load_s:.2} s ({:.1}x faster); same top-10 as before the dump for {same}/{m} queries", (open_s + build_s) / load_s);

    // Run-time add of already embedded products, as another worker's products arrive: first products like
    // the catalogue's (same latent space and clusters), then a new category (another space, far from all).
    let control = GalleryControl::new(&dir, manifest.clone(), EncoderConfig::default(), cfg, s);
    for (what, data, first) in [("near existing products", gallery(add, 3), n), ("a new category", gallery(add, 77), n + add)] {
        let items: Vec<_> = data.chunks(DIM).enumerate().map(|(i, v)| (product(first + i), v.to_vec())).collect();
        let t = Instant::now();
        control.insert(&items).expect("insert");
        let insert_s = secs(t);
        let s = control.searcher.read();
        let found = items.iter().filter(|(p, v)| s.search(v, 1)[0].first().is_some_and(|h| s.gallery.product(h.row).product_id == p.product_id)).count();
        println!("{add} products ({what}) added through GalleryControl::insert: {insert_s:.2} s until searchable; {found}/{add} found as their own top-1 right after");
    }
    drop(control);

    // The next load reuses the graph and inserts the rows it lacks.
    let t = Instant::now();
    let s = Searcher::new(Gallery::open(&dir, Some(&manifest)).expect("open"), &cfg);
    println!("load after the add: {:.2} s ({} rows inserted at load)", secs(t), s.ann().map_or(0, |a| a.rows() - a.persisted_rows()));
    drop(s);
    drop(tmp);

    iso_recall(m);
}

/// recall@10 against exact on isotropic data, default graph vs a denser one.
fn iso_recall(m: usize) {
    let n = env("LIVESKU_BENCH_ISO_N", 100_000);
    if n == 0 {
        return;
    }
    let no_skip = |_: usize| false;
    let g = gallery_iso(n, 5);
    let q = queries(&g, m, 6);
    let t = Instant::now();
    let mut truth: Vec<Vec<usize>> = Vec::with_capacity(m);
    for batch in q.chunks(64 * DIM) {
        truth.extend(exact::search(&g, DIM, batch, 10, &no_skip).into_iter().map(|h| h.into_iter().map(|h| h.row).collect::<Vec<_>>()));
    }
    let exact_qps = m as f64 / secs(t);
    println!("isotropic worst case: {n} x {DIM} ({} centres), exact top-10 {exact_qps:.0} queries/s", n / env("LIVESKU_BENCH_ISO_PER", 100).max(1));
    let threads = std::thread::available_parallelism().map_or(1, |t| t.get());
    for (m_, efc, efss) in [(12, 64, [64, 128]), (24, 200, [128, 256])] {
        let params = HnswParams { m: m_, ef_construction: efc, ef_search: efss[0], persist: false };
        let t = Instant::now();
        let mut index = AnnIndex::build(&g, DIM, params, &no_skip).expect("build the graph");
        let build_s = secs(t);
        for efs in efss {
            index.set_ef_search(efs);
            let t = Instant::now();
            let found: Vec<Vec<usize>> = std::thread::scope(|s| {
                let per = m.div_ceil(threads);
                let idx = &index;
                let hs: Vec<_> = q
                    .chunks(per * DIM)
                    .map(|chunk| s.spawn(move || chunk.chunks(DIM).map(|one| idx.search(one, 10, None).into_iter().map(|h| h.row).collect::<Vec<_>>()).collect::<Vec<_>>()))
                    .collect();
                hs.into_iter().flat_map(|h| h.join().expect("search thread")).collect()
            });
            let qps = m as f64 / secs(t);
            let hit: usize = truth.iter().zip(&found).map(|(t, f)| t.iter().filter(|r| f.contains(r)).count()).sum();
            let recall = hit as f64 / (10 * m) as f64;
            println!("  m {m_:>2}, ef_construction {efc:>3}, ef_search {efs:>3}: build {build_s:.1} s, recall@10 {recall:.3}, {qps:.0} queries/s ({:.1}x exact)", qps / exact_qps);
        }
    }
}
