//! Gallery store and search without a model: round-trip, versioning, add/remove, HNSW recall vs exact.

mod support;

use support::{Rng, clustered, manifest, unit};

use livesku::gallery::config::HnswParams;
use livesku::gallery::{Gallery, GalleryConfig, GalleryError, IndexKind, Product, Searcher};

fn product(id: &str, i: usize) -> Product {
    let mut metadata = serde_json::Map::new();
    metadata.insert("price".into(), serde_json::json!(i as f64 + 0.99));
    Product { row: 0, product_id: id.to_string(), title: format!("Product {i}"), metadata }
}

#[test]
fn round_trip_versioning_add_and_remove() {
    let tmp = tempfile::tempdir().unwrap();
    let m = manifest(&tmp.path().join("model"), None);
    let dim = m.embedding_dim();
    let mut rng = Rng::new(7);
    let vectors = clustered(&mut rng, 300, dim, 10);
    let dir = tmp.path().join("gallery");
    {
        let mut g = Gallery::create(&dir, &m).unwrap();
        let items: Vec<_> = vectors.iter().enumerate().map(|(i, v)| (product(&format!("p{i}"), i), v.clone())).collect();
        g.add(&items).unwrap();
        assert!(matches!(Gallery::create(&dir, &m), Err(GalleryError::Exists { .. })));
    }
    let g = Gallery::open(&dir, Some(&m)).unwrap();
    assert_eq!((g.len(), g.rows(), g.dim()), (300, 300, dim));
    assert_eq!(g.meta.model_version, m.version);
    assert_eq!(g.meta.manifest_sha256, m.sha256);
    for (i, v) in vectors.iter().enumerate() {
        assert_eq!(g.vector(i), v.as_slice());
        assert_eq!(g.product(i), &Product { row: i, ..product(&format!("p{i}"), i) });
    }
    let mut s = Searcher::new(g, &GalleryConfig { index: IndexKind::Exact, ..Default::default() });
    let hits = s.search(&vectors[..20].concat(), 3);
    for (i, h) in hits.iter().enumerate() {
        assert_eq!(h[0].row, i);
        assert!((h[0].score - 1.0).abs() < 1e-5);
        assert!(h[0].score >= h[1].score && h[1].score >= h[2].score);
    }

    // Remove one, replace one, add a new one: no rebuild, and it survives reopening.
    assert!(s.remove("p3").unwrap());
    assert!(!s.remove("p3").unwrap());
    let new_v = unit(vectors[5].iter().rev().copied().collect());
    s.add(&[(product("p5", 5), new_v.clone()), (product("new", 1000), vectors[3].clone())]).unwrap();
    drop(s);
    let g = Gallery::open(&dir, Some(&m)).unwrap();
    assert_eq!((g.len(), g.rows()), (300, 302));
    assert_eq!(g.row_of("p3"), None);
    assert_eq!(g.row_of("p5"), Some(300));
    assert_eq!(g.row_of("new"), Some(301));
    let s = Searcher::new(g, &GalleryConfig { index: IndexKind::Exact, ..Default::default() });
    let ids = |q: &[f32]| s.search(q, 1)[0].iter().map(|h| s.gallery.product(h.row).product_id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&vectors[3]), ["new"]);
    assert_eq!(ids(&new_v), ["p5"]);

    // Another model version is refused with a message saying what to do.
    let other = manifest(&tmp.path().join("other"), Some("something-else-v9"));
    let err = Gallery::open(&dir, Some(&other)).err().expect("must refuse");
    assert!(matches!(err, GalleryError::ModelMismatch { .. }));
    let msg = err.to_string();
    assert!(msg.contains("something-else-v9") && msg.contains(&m.version) && msg.contains("rebuild"), "{msg}");
}

#[test]
fn hnsw_recall_against_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let m = manifest(&tmp.path().join("model"), None);
    let dim = m.embedding_dim();
    let mut rng = Rng::new(11);
    let n = 20_000;
    let vectors = clustered(&mut rng, n, dim, 200);
    let dir = tmp.path().join("g");
    let mut g = Gallery::create(&dir, &m).unwrap();
    let items: Vec<_> = vectors.iter().enumerate().map(|(i, v)| (product(&format!("p{i}"), i), v.clone())).collect();
    g.add(&items).unwrap();
    // Queries: noisy views of gallery products.
    let queries: Vec<f32> = (0..300)
        .flat_map(|i| unit(vectors[(i * 61) % n].iter().map(|x| x + 0.05 * (rng.next_f32() - 0.5)).collect()))
        .collect();
    let exact = Searcher::new(Gallery::open(&dir, Some(&m)).unwrap(), &GalleryConfig { index: IndexKind::Exact, ..Default::default() });
    let mut ann = Searcher::new(g, &GalleryConfig { index: IndexKind::Hnsw, hnsw: HnswParams::default(), ..Default::default() });
    assert!(ann.uses_ann() && !exact.uses_ann());
    let truth = exact.search(&queries, 1);
    let approx = ann.search(&queries, 1);
    let agree = truth.iter().zip(&approx).filter(|(t, a)| !a.is_empty() && t[0].row == a[0].row).count();
    let recall = agree as f64 / truth.len() as f64;
    assert!(recall >= 0.95, "HNSW recall@1 {recall}");

    // Removed rows never come back; added rows are found without a rebuild.
    let top = approx[0][0].row;
    let id = ann.gallery.product(top).product_id.clone();
    ann.remove(&id).unwrap();
    assert!(ann.search(&queries[..dim], 5)[0].iter().all(|h| h.row != top));
    let fresh = unit((0..dim).map(|i| if i % 7 == 0 { 1.0 } else { 0.0 }).collect());
    let rows = ann.add(&[(product("fresh", 0), fresh.clone())]).unwrap();
    assert_eq!(ann.search(&fresh, 1)[0][0].row, rows[0]);
}

/// Fused page vectors have norm sqrt(2) and weighted queries any norm: HNSW must still rank like exact.
#[test]
fn hnsw_handles_fused_vector_norms() {
    let tmp = tempfile::tempdir().unwrap();
    let m = manifest(&tmp.path().join("model"), None);
    let (dim, half) = (m.embedding_dim(), m.embedding_dim() / 2);
    let mut rng = Rng::new(5);
    let parts = clustered(&mut rng, 4000, half, 40);
    let dir = tmp.path().join("g");
    let mut g = Gallery::create(&dir, &m).unwrap();
    let items: Vec<_> = (0..2000)
        .map(|i| {
            let mut v = parts[i].clone();
            // Some products without text: text part zero, norm 1.
            v.extend(if i % 10 == 0 { vec![0.0; half] } else { parts[2000 + i].clone() });
            (product(&format!("p{i}"), i), v)
        })
        .collect();
    g.add(&items).unwrap();
    let queries: Vec<f32> = (0..100).flat_map(|i| items[i * 17].1.iter().enumerate().map(|(j, x)| if j < half { x * 1.0 } else { x * 0.4 }).collect::<Vec<_>>()).collect();
    assert_eq!(queries.len(), 100 * dim);
    let exact = Searcher::new(Gallery::open(&dir, Some(&m)).unwrap(), &GalleryConfig { index: IndexKind::Exact, ..Default::default() });
    let ann = Searcher::new(g, &GalleryConfig { index: IndexKind::Hnsw, ..Default::default() });
    let (t, a) = (exact.search(&queries, 1), ann.search(&queries, 1));
    let agree = t.iter().zip(&a).filter(|(t, a)| t[0].row == a[0].row && (t[0].score - a[0].score).abs() < 1e-3).count();
    assert!(agree >= 95, "HNSW agrees with exact on {agree}/100 (rows and scores)");
}
