//! The gallery directory: append-only vectors and product rows plus tombstones, so products can be added
//! and removed without rebuilding; vectors are memory-mapped so loading is fast.
//!
//! ```text
//! DIR/gallery.json     format, model name/version, manifest sha256, dim, rows
//! DIR/vectors.f32      rows x dim little-endian f32, row-major
//! DIR/products.jsonl   one line per row: {"row", "product_id", "title", "metadata"}
//! DIR/removed.txt      removed rows, one per line
//! DIR/thumbs/*.jpg     the products' thumbnails (src/gallery/build.rs), the only pictures the API serves
//! DIR/hnsw/            the persisted HNSW graph of large galleries (src/gallery/persist.rs)
//! ```

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use serde::{Deserialize, Serialize};

use crate::encode::Manifest;

pub const FORMAT: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum GalleryError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "gallery {path} was built with model version {found:?}, but the encoder is {expected:?}: rebuild it with \
         `livesku gallery build`"
    )]
    ModelMismatch { path: PathBuf, found: String, expected: String },
    #[error("{path} already holds a gallery (remove it first)")]
    Exists { path: PathBuf },
    #[error("vector has dimension {found}, gallery has {expected}")]
    Dim { found: usize, expected: usize },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> GalleryError + '_ {
    move |source| GalleryError::Io { path: path.to_path_buf(), source }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GalleryMeta {
    pub format: u32,
    pub model_name: String,
    pub model_version: String,
    pub manifest_sha256: String,
    pub dim: usize,
    pub rows: usize,
}

/// One product row.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Product {
    pub row: usize,
    pub product_id: String,
    #[serde(default)]
    pub title: String,
    /// Catalogue fields other than the ones livesku reads.
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// Rows written by [`Gallery::append`], not yet shown ([`Gallery::commit`]).
#[derive(Debug)]
pub struct Pending {
    first: usize,
    products: Vec<Product>,
    /// Rows the new products replace (tombstoned on disk already), sorted.
    replaced: Vec<usize>,
}

impl Pending {
    /// The rows the products get, in order.
    pub fn rows(&self) -> std::ops::Range<usize> {
        self.first..self.first + self.products.len()
    }
}

pub struct Gallery {
    dir: PathBuf,
    pub meta: GalleryMeta,
    map: Option<Mmap>,
    products: Vec<Product>,
    removed: HashSet<usize>,
    /// Live row of each product id.
    by_id: HashMap<String, usize>,
}

impl Gallery {
    /// Creates an empty gallery for `manifest` in `dir` (created if missing; must not hold a gallery).
    pub fn create(dir: &Path, manifest: &Manifest) -> Result<Self, GalleryError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        if dir.join("gallery.json").exists() {
            return Err(GalleryError::Exists { path: dir.to_path_buf() });
        }
        let meta = GalleryMeta {
            format: FORMAT,
            model_name: manifest.name.clone(),
            model_version: manifest.version.clone(),
            manifest_sha256: manifest.sha256.clone(),
            dim: manifest.embedding_dim(),
            rows: 0,
        };
        for f in ["vectors.f32", "products.jsonl", "removed.txt"] {
            let p = dir.join(f);
            File::create(&p).map_err(io(&p))?;
        }
        let g = Gallery { dir: dir.to_path_buf(), meta, map: None, products: Vec::new(), removed: HashSet::new(), by_id: HashMap::new() };
        g.write_meta()?;
        Ok(g)
    }

    /// Opens a gallery; with `manifest`, refuses one built by another model version.
    pub fn open(dir: &Path, manifest: Option<&Manifest>) -> Result<Self, GalleryError> {
        let meta_path = dir.join("gallery.json");
        let text = std::fs::read_to_string(&meta_path).map_err(io(&meta_path))?;
        let mut meta: GalleryMeta = serde_json::from_str(&text)
            .map_err(|e| GalleryError::Corrupt { path: meta_path.clone(), reason: e.to_string() })?;
        if meta.format != FORMAT {
            return Err(GalleryError::Corrupt { path: meta_path, reason: format!("unknown format {}", meta.format) });
        }
        if let Some(m) = manifest {
            if m.version != meta.model_version {
                return Err(GalleryError::ModelMismatch { path: dir.to_path_buf(), found: meta.model_version, expected: m.version.clone() });
            }
            if m.sha256 != meta.manifest_sha256 {
                tracing::warn!(gallery = %dir.display(), "model manifest changed since the gallery was built (same version)");
            }
        }
        let products_path = dir.join("products.jsonl");
        let reader = BufReader::new(File::open(&products_path).map_err(io(&products_path))?);
        let mut products = Vec::with_capacity(meta.rows);
        for (i, line) in reader.lines().enumerate() {
            let line = line.map_err(io(&products_path))?;
            if line.trim().is_empty() {
                continue;
            }
            let p: Product = serde_json::from_str(&line)
                .map_err(|e| GalleryError::Corrupt { path: products_path.clone(), reason: format!("line {}: {e}", i + 1) })?;
            if p.row != products.len() {
                return Err(GalleryError::Corrupt { path: products_path.clone(), reason: format!("line {}: row {} out of order", i + 1, p.row) });
            }
            products.push(p);
        }
        let removed_path = dir.join("removed.txt");
        let removed: HashSet<usize> = std::fs::read_to_string(&removed_path)
            .map_err(io(&removed_path))?
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
        let mut g = Gallery { dir: dir.to_path_buf(), meta: meta.clone(), map: None, products, removed, by_id: HashMap::new() };
        g.remap()?;
        // A crash between appends leaves one file longer: trust the shorter.
        let rows = g.vector_rows().min(g.products.len());
        g.products.truncate(rows);
        meta.rows = rows;
        g.meta = meta;
        for p in &g.products {
            if !g.removed.contains(&p.row) {
                g.by_id.insert(p.product_id.clone(), p.row);
            }
        }
        Ok(g)
    }

    fn remap(&mut self) -> Result<(), GalleryError> {
        let path = self.dir.join("vectors.f32");
        let file = File::open(&path).map_err(io(&path))?;
        let len = file.metadata().map_err(io(&path))?.len();
        // Safety: the file is only ever appended to, by this process or a builder that finished; we never
        // read past the length seen here.
        self.map = if len == 0 { None } else { Some(unsafe { Mmap::map(&file) }.map_err(io(&path))?) };
        Ok(())
    }

    fn vector_rows(&self) -> usize {
        self.map.as_ref().map_or(0, |m| m.len() / (4 * self.meta.dim))
    }

    /// All vectors, removed rows included (rows x dim).
    pub fn vectors(&self) -> &[f32] {
        let Some(map) = self.map.as_ref() else { return &[] };
        let rows = self.meta.rows;
        // Safety: mmaps are page-aligned, f32 has no invalid bit patterns; files are little-endian like
        // every target livesku runs on.
        let (pre, floats, _) = unsafe { map[..rows * self.meta.dim * 4].align_to::<f32>() };
        debug_assert!(pre.is_empty());
        floats
    }

    pub fn vector(&self, row: usize) -> &[f32] {
        &self.vectors()[row * self.meta.dim..(row + 1) * self.meta.dim]
    }

    pub fn dim(&self) -> usize {
        self.meta.dim
    }

    /// Rows ever written (live and removed).
    pub fn rows(&self) -> usize {
        self.meta.rows
    }

    /// Live products.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn product(&self, row: usize) -> &Product {
        &self.products[row]
    }

    pub fn row_of(&self, product_id: &str) -> Option<usize> {
        self.by_id.get(product_id).copied()
    }

    pub fn has_removed(&self) -> bool {
        !self.removed.is_empty()
    }

    pub fn is_removed(&self, row: usize) -> bool {
        self.removed.contains(&row)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends products (replacing live ones with the same id). Returns their rows.
    pub fn add(&mut self, items: &[(Product, Vec<f32>)]) -> Result<Vec<usize>, GalleryError> {
        let pending = self.append(items)?;
        let rows = pending.rows().collect();
        self.commit(pending)?;
        Ok(rows)
    }

    /// Writes products to the files without showing them yet: readers of this `Gallery` keep seeing the
    /// rows they saw (the files are append-only and the map is not touched), so this runs under a shared
    /// lock. The products they replace (same id, live or earlier in `items`) are tombstoned on disk now,
    /// in memory at [`Self::commit`]. One pending append at a time: commit it before the next.
    pub fn append(&self, items: &[(Product, Vec<f32>)]) -> Result<Pending, GalleryError> {
        for (_, v) in items {
            if v.len() != self.meta.dim {
                return Err(GalleryError::Dim { found: v.len(), expected: self.meta.dim });
            }
        }
        let first = self.meta.rows;
        let mut last_of: HashMap<&str, usize> = HashMap::new();
        for (i, (p, _)) in items.iter().enumerate() {
            last_of.insert(&p.product_id, first + i);
        }
        let mut replaced: Vec<usize> = last_of.keys().filter_map(|id| self.by_id.get(*id).copied()).collect();
        replaced.extend((first..first + items.len()).filter(|r| last_of[items[r - first].0.product_id.as_str()] != *r));
        replaced.sort_unstable();
        let vpath = self.dir.join("vectors.f32");
        let ppath = self.dir.join("products.jsonl");
        let mut vbuf = Vec::with_capacity(items.len() * self.meta.dim * 4);
        let mut pbuf = Vec::new();
        let mut products = Vec::with_capacity(items.len());
        for (i, (p, v)) in items.iter().enumerate() {
            vbuf.extend(v.iter().flat_map(|x| x.to_le_bytes()));
            let p = Product { row: first + i, ..p.clone() };
            serde_json::to_writer(&mut pbuf, &p).map_err(|e| GalleryError::Corrupt { path: ppath.clone(), reason: e.to_string() })?;
            pbuf.push(b'\n');
            products.push(p);
        }
        let mut vf = OpenOptions::new().append(true).open(&vpath).map_err(io(&vpath))?;
        let mut pf = OpenOptions::new().append(true).open(&ppath).map_err(io(&ppath))?;
        vf.write_all(&vbuf).and_then(|_| vf.flush()).map_err(io(&vpath))?;
        pf.write_all(&pbuf).and_then(|_| pf.flush()).map_err(io(&ppath))?;
        // Tombstones after the new rows: a crash in between leaves an old copy live, never a product lost.
        if !replaced.is_empty() {
            let path = self.dir.join("removed.txt");
            let text: String = replaced.iter().map(|r| format!("{r}\n")).collect();
            let mut f = OpenOptions::new().append(true).open(&path).map_err(io(&path))?;
            f.write_all(text.as_bytes()).map_err(io(&path))?;
        }
        Ok(Pending { first, products, replaced })
    }

    /// Shows the rows of an [`Self::append`]: products, tombstones, the longer map.
    pub fn commit(&mut self, pending: Pending) -> Result<(), GalleryError> {
        if pending.first != self.meta.rows {
            let reason = format!("append at row {} committed at row {}", pending.first, self.meta.rows);
            return Err(GalleryError::Corrupt { path: self.dir.clone(), reason });
        }
        for &r in &pending.replaced {
            self.removed.insert(r);
            if let Some(p) = self.products.get(r) {
                if self.by_id.get(&p.product_id) == Some(&r) {
                    self.by_id.remove(&p.product_id);
                }
            }
        }
        for p in pending.products {
            if !self.removed.contains(&p.row) {
                self.by_id.insert(p.product_id.clone(), p.row);
            }
            self.products.push(p);
        }
        self.meta.rows = self.products.len();
        self.write_meta()?;
        self.remap()
    }

    /// Marks a product removed; false when it was not live.
    pub fn remove(&mut self, product_id: &str) -> Result<bool, GalleryError> {
        let Some(row) = self.by_id.remove(product_id) else { return Ok(false) };
        let path = self.dir.join("removed.txt");
        let mut f = OpenOptions::new().append(true).open(&path).map_err(io(&path))?;
        writeln!(f, "{row}").map_err(io(&path))?;
        self.removed.insert(row);
        Ok(true)
    }

    fn write_meta(&self) -> Result<(), GalleryError> {
        let path = self.dir.join("gallery.json");
        let tmp = self.dir.join("gallery.json.tmp");
        let text = serde_json::to_string_pretty(&self.meta).map_err(|e| GalleryError::Corrupt { path: path.clone(), reason: e.to_string() })?;
        std::fs::write(&tmp, text).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))
    }
}
