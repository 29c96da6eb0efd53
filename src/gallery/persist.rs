//! The HNSW graph persisted next to the gallery, so a large gallery loads in seconds instead of rebuilding
//! its graph (about 10 min for 1M products on 2 cores):
//!
//! ```text
//! DIR/hnsw/hnsw.json          what the dump covers: gallery rows, graph parameters, distance offset, the
//!                             gallery's identity (model version, vectors.f32 length, sha256 of sampled
//!                             rows) and each graph file's length and sha256
//! DIR/hnsw/graph.hnsw.graph   hnsw_rs 0.3.5 dump: the links
//! DIR/hnsw/graph.hnsw.data    hnsw_rs 0.3.5 dump: the vectors the graph holds (a copy of vectors.f32's rows)
//! ```
//!
//! hnsw_rs's reload asserts, unwraps and even calls `process::exit` on malformed files, so a dump is handed
//! to it only after the sidecar, the gallery's identity, the files' lengths and sha256 all match, and then
//! inside `catch_unwind` as a second guard. Anything else is logged with the file's name and the graph is
//! rebuilt and written again. Rows appended after the dump are inserted at load; removed rows stay
//! filtered at query time. The graph is written again once the rows it lacks exceed 5 % of those it covers.

use std::fs::File;
use std::io::Read;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use hnsw_rs::hnswio::HnswIo;
use hnsw_rs::prelude::AnnT;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::ann::{AnnIndex, NegDot};
use super::config::HnswParams;
use super::store::Gallery;

/// The index directory inside the gallery.
pub const INDEX_DIR: &str = "hnsw";
pub const SIDECAR: &str = "hnsw.json";
const BASENAME: &str = "graph";
pub const GRAPH_FILE: &str = "graph.hnsw.graph";
pub const DATA_FILE: &str = "graph.hnsw.data";
const FORMAT: u32 = 1;
/// The dump format is hnsw_rs's own: a dump by another version is not trusted.
const HNSW_RS: &str = "0.3.5";
/// Rows whose vectors are hashed into the sidecar (the gallery's identity, cheap to check at load).
const SAMPLE_ROWS: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> IndexError + '_ {
    move |source| IndexError::Io { path: path.to_path_buf(), source }
}

fn invalid(path: &Path, reason: impl Into<String>) -> IndexError {
    IndexError::Invalid { path: path.to_path_buf(), reason: reason.into() }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sidecar {
    format: u32,
    hnsw_rs: String,
    model_version: String,
    dim: usize,
    /// Gallery rows covered (inserted, or removed before they could be).
    rows: usize,
    /// Nodes in the graph.
    points: usize,
    m: usize,
    ef_construction: usize,
    /// The distance offset (f32 bits: exact through JSON).
    offset_bits: u32,
    /// vectors.f32's length at the dump (append-only: never shorter later).
    vectors_len: u64,
    /// sha256 of [`SAMPLE_ROWS`] evenly spaced covered rows of vectors.f32.
    sample_sha256: String,
    files: Vec<FileSum>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSum {
    name: String,
    len: u64,
    sha256: String,
}

/// Length and hex sha256 of a file, read in 1 MiB pieces (graph files reach gigabytes).
fn file_sum(path: &Path) -> Result<(u64, String), IndexError> {
    let mut f = File::open(path).map_err(io(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        len += n as u64;
    }
    Ok((len, hex::encode(h.finalize())))
}

/// Both graph files' sums, one thread each.
fn file_sums(dir: &Path) -> Result<Vec<FileSum>, IndexError> {
    std::thread::scope(|s| {
        let jobs: Vec<_> = [GRAPH_FILE, DATA_FILE]
            .into_iter()
            .map(|name| s.spawn(move || file_sum(&dir.join(name)).map(|(len, sha256)| FileSum { name: name.into(), len, sha256 })))
            .collect();
        jobs.into_iter()
            .map(|j| j.join().unwrap_or_else(|_| Err(invalid(dir, "checksum thread panicked"))))
            .collect()
    })
}

fn sample_sha256(g: &Gallery, rows: usize) -> String {
    let mut h = Sha256::new();
    h.update((rows as u64).to_le_bytes());
    if rows > 0 {
        let step = (rows / SAMPLE_ROWS).max(1);
        for r in (0..rows).step_by(step).chain([rows - 1]) {
            h.update(g.vector(r).iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>());
        }
    }
    hex::encode(h.finalize())
}

fn vectors_len(g: &Gallery) -> Result<u64, IndexError> {
    let path = g.dir().join("vectors.f32");
    std::fs::metadata(&path).map(|m| m.len()).map_err(io(&path))
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_else(|| "panic".into())
}

/// Whether the graph files lag the graph enough to be written again: never written, or missing more than
/// 5 % of the rows they cover (a later load inserts the rest, at about 1-2 ms per row).
pub fn is_stale(index: &AnnIndex) -> bool {
    let done = index.persisted_rows();
    index.points() > 0 && (done == 0 || index.rows().saturating_sub(done) > done / 20)
}

/// Loads the persisted graph of `g` when it matches the gallery and `params`; `Ok(None)` when there is
/// none. Rows of `g` past the dump are not inserted here (see [`open_or_build`]).
pub fn load(g: &Gallery, params: &HnswParams) -> Result<Option<AnnIndex>, IndexError> {
    let dir = g.dir().join(INDEX_DIR);
    let sidecar_path = dir.join(SIDECAR);
    if !sidecar_path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&sidecar_path).map_err(io(&sidecar_path))?;
    let sc: Sidecar = serde_json::from_str(&text).map_err(|e| invalid(&sidecar_path, e.to_string()))?;
    let mismatch = |what: &str, found: String, expected: String| {
        Err(invalid(&sidecar_path, format!("{what} is {found}, the gallery/config has {expected}")))
    };
    if sc.format != FORMAT || sc.hnsw_rs != HNSW_RS {
        return mismatch("format", format!("{}/hnsw_rs {}", sc.format, sc.hnsw_rs), format!("{FORMAT}/hnsw_rs {HNSW_RS}"));
    }
    if sc.model_version != g.meta.model_version {
        return mismatch("model version", sc.model_version, g.meta.model_version.clone());
    }
    if sc.dim != g.dim() {
        return mismatch("dimension", sc.dim.to_string(), g.dim().to_string());
    }
    if (sc.m, sc.ef_construction) != (params.m, params.ef_construction) {
        return mismatch("(m, ef_construction)", format!("{:?}", (sc.m, sc.ef_construction)), format!("{:?}", (params.m, params.ef_construction)));
    }
    if sc.rows > g.rows() || sc.points > sc.rows {
        return mismatch("rows covered", sc.rows.to_string(), g.rows().to_string());
    }
    let vlen = vectors_len(g)?;
    if vlen < sc.vectors_len {
        return mismatch("vectors.f32 length", sc.vectors_len.to_string(), vlen.to_string());
    }
    if sc.sample_sha256 != sample_sha256(g, sc.rows) {
        return Err(invalid(&sidecar_path, "the gallery's vectors are not those the graph was built from"));
    }
    let mut names: Vec<&str> = sc.files.iter().map(|f| f.name.as_str()).collect();
    names.sort_unstable();
    if names != [DATA_FILE, GRAPH_FILE] {
        return Err(invalid(&sidecar_path, format!("lists files {names:?}")));
    }
    // Cheap before dear: lengths, then the hashes.
    for f in &sc.files {
        let path = dir.join(&f.name);
        let len = std::fs::metadata(&path).map_err(io(&path))?.len();
        if len != f.len {
            return Err(invalid(&path, format!("{len} bytes, the sidecar says {}", f.len)));
        }
    }
    for found in file_sums(&dir)? {
        if sc.files.iter().find(|f| f.name == found.name).map(|f| &f.sha256) != Some(&found.sha256) {
            return Err(invalid(&dir.join(&found.name), "sha256 differs from the sidecar's (changed or damaged)"));
        }
    }
    let offset = f32::from_bits(sc.offset_bits);
    // `load_hnsw_with_dist` returns a graph borrowing its loader (for memory-mapped data, not used here:
    // without `ReloadOptions::datamap` every vector is read into memory). Leaking the small loader (a path
    // and a basename, no mapping) gives the `'static` graph soundly, once per load.
    let loader: &'static HnswIo = Box::leak(Box::new(HnswIo::new(&dir, BASENAME)));
    let graph_path = dir.join(GRAPH_FILE);
    let mut hnsw = match catch_unwind(AssertUnwindSafe(|| loader.load_hnsw_with_dist::<f32, NegDot>(NegDot::new(offset)))) {
        Ok(Ok(h)) => h,
        Ok(Err(e)) => return Err(invalid(&graph_path, format!("hnsw_rs reload failed: {e}"))),
        Err(p) => return Err(invalid(&graph_path, format!("hnsw_rs reload panicked: {}", panic_message(p.as_ref())))),
    };
    if hnsw.get_nb_point() != sc.points || hnsw.get_max_nb_connection() as usize != sc.m {
        return Err(invalid(&graph_path, format!("holds {} points of degree {}, the sidecar says {} of {}", hnsw.get_nb_point(), hnsw.get_max_nb_connection(), sc.points, sc.m)));
    }
    // As a fresh `Hnsw::new` (the reload turns candidate extension on).
    hnsw.set_extend_candidates(false);
    hnsw.set_searching_mode(true);
    let index = AnnIndex::from_parts(hnsw, *params, sc.dim, offset, sc.rows);
    index.persisted.store(sc.rows, Ordering::SeqCst);
    Ok(Some(index))
}

/// Writes the graph into `g`'s `hnsw/` (a fresh directory renamed over the old one, so a crash leaves
/// the old dump or none, never a mix). The index must not cover rows `g` does not show.
pub fn dump(index: &AnnIndex, g: &Gallery) -> Result<(), IndexError> {
    let started = Instant::now();
    let rows = index.rows();
    let dir = g.dir().join(INDEX_DIR);
    if rows > g.rows() {
        return Err(invalid(&dir, format!("the graph covers {rows} rows, the gallery shows {}", g.rows())));
    }
    let tmp = g.dir().join(format!("{INDEX_DIR}.tmp"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    // hnsw_rs panics when it cannot create its files.
    let name = match catch_unwind(AssertUnwindSafe(|| index.hnsw.file_dump(&tmp, BASENAME))) {
        Ok(Ok(name)) => name,
        Ok(Err(e)) => return Err(invalid(&tmp, format!("hnsw_rs dump failed: {e}"))),
        Err(p) => return Err(invalid(&tmp, format!("hnsw_rs dump panicked: {}", panic_message(p.as_ref())))),
    };
    if name != BASENAME {
        return Err(invalid(&tmp, format!("hnsw_rs dumped as {name:?}, not {BASENAME:?}")));
    }
    let sc = Sidecar {
        format: FORMAT,
        hnsw_rs: HNSW_RS.into(),
        model_version: g.meta.model_version.clone(),
        dim: index.dim,
        rows,
        points: index.points(),
        m: index.params.m,
        ef_construction: index.params.ef_construction,
        offset_bits: index.offset.to_bits(),
        vectors_len: vectors_len(g)?,
        sample_sha256: sample_sha256(g, rows),
        files: file_sums(&tmp)?,
    };
    let path = tmp.join(SIDECAR);
    let text = serde_json::to_string_pretty(&sc).map_err(|e| invalid(&path, e.to_string()))?;
    std::fs::write(&path, text).map_err(io(&path))?;
    let old = g.dir().join(format!("{INDEX_DIR}.old"));
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(io(&old))?;
    }
    if dir.exists() {
        std::fs::rename(&dir, &old).map_err(io(&dir))?;
    }
    std::fs::rename(&tmp, &dir).map_err(io(&dir))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(io(&old))?;
    }
    index.persisted.store(rows, Ordering::SeqCst);
    tracing::info!(dir = %dir.display(), rows, points = sc.points, secs = started.elapsed().as_secs_f32(), "HNSW index written");
    Ok(())
}

/// The graph for `g`: the persisted one when it checks out (plus the rows added since), else a fresh
/// build; written back when `params.persist` and the files lag (see [`is_stale`]). Never fails: a bad or
/// unwritable index costs a rebuild and a warning.
pub fn open_or_build(g: &Gallery, params: &HnswParams) -> AnnIndex {
    let started = Instant::now();
    let mut loaded = None;
    if params.persist {
        match load(g, params) {
            Ok(Some(index)) => loaded = Some(index),
            Ok(None) => tracing::info!(gallery = %g.dir().display(), "no persisted HNSW index: building one"),
            Err(e) => tracing::warn!(error = %e, "persisted HNSW index not used (rebuilding it)"),
        }
    }
    let index = match loaded {
        Some(index) => {
            let from = index.rows();
            let new: Vec<(&[f32], usize)> = (from..g.rows()).filter(|r| !g.is_removed(*r)).map(|r| (g.vector(r), r)).collect();
            index.insert_rows(&new);
            index.set_rows(g.rows());
            tracing::info!(rows = g.rows(), inserted = new.len(), secs = started.elapsed().as_secs_f32(), "HNSW index loaded");
            index
        }
        None => {
            let index = AnnIndex::build(g.vectors(), g.dim(), *params, &|r| g.is_removed(r));
            tracing::info!(products = g.len(), secs = started.elapsed().as_secs_f32(), "HNSW index built");
            index
        }
    };
    if params.persist && is_stale(&index) {
        if let Err(e) = dump(&index, g) {
            tracing::warn!(error = %e, "cannot persist the HNSW index (the next load rebuilds it)");
        }
    }
    index
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_sum_streams_and_matches_one_shot() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("f");
        let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&p, &bytes).unwrap();
        let (len, sha) = file_sum(&p).unwrap();
        assert_eq!(len, bytes.len() as u64);
        assert_eq!(sha, hex::encode(Sha256::digest(&bytes)));
    }

    #[test]
    fn sidecar_round_trips_and_refuses_unknown_fields() {
        let sc = Sidecar {
            format: FORMAT,
            hnsw_rs: HNSW_RS.into(),
            model_version: "v".into(),
            dim: 4,
            rows: 10,
            points: 9,
            m: 12,
            ef_construction: 64,
            offset_bits: 1.0001f32.to_bits(),
            vectors_len: 160,
            sample_sha256: "00".into(),
            files: vec![FileSum { name: GRAPH_FILE.into(), len: 1, sha256: "ab".into() }],
        };
        let text = serde_json::to_string(&sc).unwrap();
        assert_eq!(serde_json::from_str::<Sidecar>(&text).unwrap(), sc);
        let extra = text.replacen('{', "{\"surprise\":1,", 1);
        assert!(serde_json::from_str::<Sidecar>(&extra).is_err());
    }
}
