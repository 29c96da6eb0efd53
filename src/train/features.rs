//! The frozen tower's outputs, computed once per distinct picture and cached on disk, so a second run (other
//! hyper-parameters, more epochs, a few new examples) costs only the head's training.
//!
//! Cache entry: `DIR/<key[..2]>/<key>.tok`, key = sha256(tower identity, picture size and pixels); content a
//! 16-byte header (`LSKT`, version, tokens, dim as u32 LE) and `tokens * dim` float16 LE values.

use std::io::Write;
use std::path::{Path, PathBuf};

use half::f16;
use image::RgbImage;
use sha2::{Digest, Sha256};

use crate::encode::EncodeError;
use crate::encode::visual::VisualEncoder;

const MAGIC: &[u8; 4] = b"LSKT";
const VERSION: u32 = 1;
/// Pictures per tower call.
const BATCH: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum FeatureError {
    #[error("feature cache {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error("the tower's output changed shape: {got:?}, earlier rows {want:?}")]
    Shape { got: (usize, usize), want: (usize, usize) },
}

pub struct FeatureCache {
    dir: PathBuf,
    /// Identifies the tower and its preprocessing: any change gives new keys.
    tower: String,
    pub hits: usize,
    pub misses: usize,
}

impl FeatureCache {
    pub fn new(dir: PathBuf, tower_identity: String) -> Self {
        FeatureCache { dir, tower: tower_identity, hits: 0, misses: 0 }
    }

    fn key(&self, img: &RgbImage) -> String {
        let mut h = Sha256::new();
        h.update(self.tower.as_bytes());
        h.update(img.width().to_le_bytes());
        h.update(img.height().to_le_bytes());
        h.update(img.as_raw());
        hex::encode(h.finalize())
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(&key[..2]).join(format!("{key}.tok"))
    }

    fn load(&self, key: &str) -> Option<(usize, usize, Vec<u8>)> {
        let mut bytes = std::fs::read(self.path(key)).ok()?;
        let word = |b: &[u8], i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap_or_default()) as usize;
        if bytes.len() < 16 || &bytes[..4] != MAGIC || word(&bytes, 4) != VERSION as usize {
            return None;
        }
        let (tokens, dim) = (word(&bytes, 8), word(&bytes, 12));
        (bytes.len() == 16 + tokens * dim * 2).then(|| (tokens, dim, bytes.split_off(16)))
    }

    fn store(&self, key: &str, tokens: usize, dim: usize, data: &[u8]) -> Result<(), FeatureError> {
        let path = self.path(key);
        let io = |source| FeatureError::Io { path: path.clone(), source };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        // Written under a temporary name and renamed: an interrupted run never leaves a torn entry.
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(MAGIC).map_err(io)?;
        for v in [VERSION, tokens as u32, dim as u32] {
            f.write_all(&v.to_le_bytes()).map_err(io)?;
        }
        f.write_all(data).map_err(io)?;
        drop(f);
        std::fs::rename(&tmp, &path).map_err(io)
    }
}

/// Writes the tower tokens of `pictures` (in order) as rows of a float16 NPY array `[N, tokens, dim]` at
/// `out`, taking cached rows from `cache` and computing the others. `picture(i)` loads picture `i`;
/// `progress(done)` is called as rows are written. Returns (tokens, dim).
pub fn write_features(
    out: &Path,
    count: usize,
    picture: &mut dyn FnMut(usize) -> RgbImage,
    encoder: &mut VisualEncoder,
    cache: &mut FeatureCache,
    progress: &mut dyn FnMut(usize),
) -> Result<(usize, usize), FeatureError> {
    let io = |source| FeatureError::Io { path: out.to_path_buf(), source };
    // Rows stream to the file as they come; the header (fixed size) is written again once the shape is known.
    let mut f = std::io::BufWriter::new(std::fs::File::create(out).map_err(io)?);
    f.write_all(&npy_header(&[0, 0, 0], "<f2")).map_err(io)?;
    let mut shape: Option<(usize, usize)> = None;
    let mut check = |got: (usize, usize)| match shape {
        Some(want) if want != got => Err(FeatureError::Shape { got, want }),
        _ => {
            shape = Some(got);
            Ok(())
        }
    };
    let mut start = 0;
    while start < count {
        let end = (start + BATCH).min(count);
        let pics: Vec<RgbImage> = (start..end).map(&mut *picture).collect();
        let keys: Vec<String> = pics.iter().map(|p| cache.key(p)).collect();
        let mut batch_rows: Vec<Option<Vec<u8>>> = Vec::with_capacity(pics.len());
        for key in &keys {
            match cache.load(key) {
                Some((t, d, data)) => {
                    check((t, d))?;
                    cache.hits += 1;
                    batch_rows.push(Some(data));
                }
                None => batch_rows.push(None),
            }
        }
        let todo: Vec<usize> = (0..pics.len()).filter(|i| batch_rows[*i].is_none()).collect();
        if !todo.is_empty() {
            let refs: Vec<&RgbImage> = todo.iter().map(|i| &pics[*i]).collect();
            let (tokens, dim, data) = encoder.tower_tokens(&refs)?;
            check((tokens, dim))?;
            for (j, i) in todo.iter().enumerate() {
                let bytes: Vec<u8> = data[j * tokens * dim..(j + 1) * tokens * dim]
                    .iter()
                    .flat_map(|v| f16::from_f32(*v).to_le_bytes())
                    .collect();
                cache.store(&keys[*i], tokens, dim, &bytes)?;
                cache.misses += 1;
                batch_rows[*i] = Some(bytes);
            }
        }
        for row in batch_rows.into_iter().flatten() {
            f.write_all(&row).map_err(io)?;
        }
        start = end;
        progress(start);
    }
    let (tokens, dim) = shape.unwrap_or((0, 0));
    let mut file = f.into_inner().map_err(|e| io(e.into_error()))?;
    std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(0)).map_err(io)?;
    file.write_all(&npy_header(&[count, tokens, dim], "<f2")).map_err(io)?;
    Ok((tokens, dim))
}

/// NPY format 1.0 header for a C-order array (numpy.lib.format): magic, version, u16 length, a Python dict
/// literal padded with spaces, ending in a newline; always `NPY_HEADER` bytes, so it can be rewritten in place.
const NPY_HEADER: usize = 128;

fn npy_header(shape: &[usize], descr: &str) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let mut dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({},), }}", dims.join(", "));
    dict.push_str(&" ".repeat(NPY_HEADER.saturating_sub(10 + dict.len() + 1)));
    dict.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend((dict.len() as u16).to_le_bytes());
    out.extend(dict.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_header_is_aligned_and_names_the_shape() {
        let h = npy_header(&[3, 257, 384], "<f2");
        assert_eq!(h.len(), NPY_HEADER);
        assert_eq!(npy_header(&[0, 0, 0], "<f2").len(), NPY_HEADER);
        let text = String::from_utf8_lossy(&h[10..]);
        assert!(text.contains("'shape': (3, 257, 384,)"), "{text}");
        assert!(text.ends_with('\n'));
    }
}
