//! The HNSW graph persisted next to the gallery, so a large gallery loads in seconds instead of rebuilding
//! its graph (minutes for 1M products on 2 cores):
//!
//! ```text
//! DIR/hnsw/hnsw.json       what the file covers: gallery rows, graph parameters, the gallery's identity
//!                          (model version, vectors.f32 length, sha256 of sampled rows) and the index
//!                          file's length and sha256
//! DIR/hnsw/graph.usearch   USearch's own file: the links and a copy of the vectors the graph holds
//! ```
//!
//! USearch is C++: a malformed file it does not reject could crash the process rather than panic, so the
//! file is handed to it only after the sidecar, the gallery's identity, the file's length and sha256 all
//! match; what USearch then reports (a bad header, a short file) is an error, never trusted. Anything else
//! is logged with the file's name and the graph is rebuilt and written again. Rows appended after the
//! dump are inserted at load; removed rows stay filtered at query time. The graph is written again once
//! the rows it lacks exceed 5 % of those it covers.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use usearch::Index;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::ann::{AnnIndex, options};
use super::config::HnswParams;
use super::store::Gallery;

/// The index directory inside the gallery.
pub const INDEX_DIR: &str = "hnsw";
pub const SIDECAR: &str = "hnsw.json";
pub const INDEX_FILE: &str = "graph.usearch";
const FORMAT: u32 = 2;
/// The file format is USearch's own: a file written by another version is not trusted.
const ENGINE: &str = "usearch 2.26.6";
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
    engine: String,
    model_version: String,
    dim: usize,
    /// Gallery rows covered (inserted, or removed before they could be).
    rows: usize,
    /// Nodes in the graph.
    points: usize,
    m: usize,
    ef_construction: usize,
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
    if sc.format != FORMAT || sc.engine != ENGINE {
        return mismatch("format", format!("{}/{}", sc.format, sc.engine), format!("{FORMAT}/{ENGINE}"));
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
    let names: Vec<&str> = sc.files.iter().map(|f| f.name.as_str()).collect();
    if names != [INDEX_FILE] {
        return Err(invalid(&sidecar_path, format!("lists files {names:?}")));
    }
    let (file, path) = (&sc.files[0], dir.join(INDEX_FILE));
    // Cheap before dear: the length, then the hash.
    let len = std::fs::metadata(&path).map_err(io(&path))?.len();
    if len != file.len {
        return Err(invalid(&path, format!("{len} bytes, the sidecar says {}", file.len)));
    }
    if file_sum(&path)?.1 != file.sha256 {
        return Err(invalid(&path, "sha256 differs from the sidecar's (changed or damaged)"));
    }
    let index = Index::new(&options(sc.dim, params)).map_err(|e| invalid(&path, format!("USearch: {e}")))?;
    let utf8 = path.to_str().ok_or_else(|| invalid(&path, "not a UTF-8 path"))?;
    index.load(utf8).map_err(|e| invalid(&path, format!("USearch cannot load it: {e}")))?;
    if index.size() != sc.points || index.dimensions() != sc.dim || index.connectivity() != sc.m {
        return Err(invalid(&path, format!(
            "holds {} points of {} dimensions and degree {}, the sidecar says {} of {} and {}",
            index.size(), index.dimensions(), index.connectivity(), sc.points, sc.dim, sc.m
        )));
    }
    // Search breadth and search contexts are not part of the file: the config's and ours apply.
    index.change_expansion_search(params.ef_search);
    index.reserve_capacity_and_threads(index.size(), super::ann::contexts()).map_err(|e| invalid(&path, format!("USearch: {e}")))?;
    let index = AnnIndex::from_parts(index, *params, sc.dim, sc.rows);
    index.persisted.store(sc.rows, Ordering::SeqCst);
    Ok(Some(index))
}

/// Writes the graph into `g`'s `hnsw/` (a fresh directory renamed over the old one, so a crash leaves
/// the old dump or none, never a mix). The index must not cover rows `g` does not show.
pub fn dump(index: &AnnIndex, g: &Gallery) -> Result<(), IndexError> {
    let started = Instant::now();
    // No rows go in while the file is written (searches go on).
    let _mutating = index.mutate.lock();
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
    let file = tmp.join(INDEX_FILE);
    let utf8 = file.to_str().ok_or_else(|| invalid(&file, "not a UTF-8 path"))?;
    let points = index.points();
    index.index.read().save(utf8).map_err(|e| invalid(&file, format!("USearch cannot write it: {e}")))?;
    let (len, sha256) = file_sum(&file)?;
    let sc = Sidecar {
        format: FORMAT,
        engine: ENGINE.into(),
        model_version: g.meta.model_version.clone(),
        dim: index.dim,
        rows,
        points,
        m: index.params.m,
        ef_construction: index.params.ef_construction,
        vectors_len: vectors_len(g)?,
        sample_sha256: sample_sha256(g, rows),
        files: vec![FileSum { name: INDEX_FILE.into(), len, sha256 }],
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
/// build; written back when `params.persist` and the file lags (see [`is_stale`]). A bad or unwritable
/// index costs a rebuild and a warning; `None` (exact search) only when no graph can be built at all.
pub fn open_or_build(g: &Gallery, params: &HnswParams) -> Option<AnnIndex> {
    let started = Instant::now();
    let mut loaded = None;
    if params.persist {
        match load(g, params) {
            Ok(Some(index)) => loaded = Some(index),
            Ok(None) => tracing::info!(gallery = %g.dir().display(), "no persisted HNSW index: building one"),
            Err(e) => tracing::warn!(error = %e, "persisted HNSW index not used (rebuilding it)"),
        }
    }
    let built = match loaded {
        Some(index) => {
            let from = index.rows();
            let new: Vec<(&[f32], usize)> = (from..g.rows()).filter(|r| !g.is_removed(*r)).map(|r| (g.vector(r), r)).collect();
            index.insert_rows(&new).map(|()| {
                index.set_rows(g.rows());
                tracing::info!(rows = g.rows(), inserted = new.len(), secs = started.elapsed().as_secs_f32(), "HNSW index loaded");
                index
            })
        }
        None => AnnIndex::build(g.vectors(), g.dim(), *params, &|r| g.is_removed(r)).inspect(|_| {
            tracing::info!(products = g.len(), secs = started.elapsed().as_secs_f32(), "HNSW index built");
        }),
    };
    let index = match built {
        Ok(index) => index,
        Err(e) => {
            tracing::error!(error = %e, gallery = %g.dir().display(), "no HNSW index: searching exactly");
            return None;
        }
    };
    if params.persist && is_stale(&index) {
        if let Err(e) = dump(&index, g) {
            tracing::warn!(error = %e, "cannot persist the HNSW index (the next load rebuilds it)");
        }
    }
    Some(index)
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
            engine: ENGINE.into(),
            model_version: "v".into(),
            dim: 4,
            rows: 10,
            points: 9,
            m: 12,
            ef_construction: 64,
            vectors_len: 160,
            sample_sha256: "00".into(),
            files: vec![FileSum { name: INDEX_FILE.into(), len: 1, sha256: "ab".into() }],
        };
        let text = serde_json::to_string(&sc).unwrap();
        assert_eq!(serde_json::from_str::<Sidecar>(&text).unwrap(), sc);
        let extra = text.replacen('{', "{\"surprise\":1,", 1);
        assert!(serde_json::from_str::<Sidecar>(&extra).is_err());
    }
}
