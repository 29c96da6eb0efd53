//! `gallery build`: catalogue -> encoded product pages -> gallery directory. Bad lines are reported with
//! their line number and skipped; the rest still builds.

use std::path::{Path, PathBuf};

use image::RgbImage;
use indicatif::{ProgressBar, ProgressStyle};

use super::catalog::{CatalogEntry, numbered_lines, parse_line};
use super::store::{Gallery, GalleryError, Product};
use crate::encode::{EncodeError, Encoder, Side};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot read catalogue {path}: {source}")]
    Catalog { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Gallery(#[from] GalleryError),
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// A skipped catalogue line.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    pub line: usize,
    pub reason: String,
}

#[derive(Debug, Default)]
pub struct BuildReport {
    pub added: usize,
    pub skipped: Vec<Skipped>,
}

/// Metadata key naming the product's thumbnail file in the gallery's `thumbs/` directory.
pub const THUMBNAIL_KEY: &str = "thumbnail";

/// Thumbnails' directory inside the gallery; the API serves pictures from there only.
pub const THUMBS_DIR: &str = "thumbs";

/// Longest side of a thumbnail (the dashboard shows them at 48-96 px).
const THUMB_SIDE: u32 = 256;

/// Products encoded per model call.
const BATCH: usize = 8;

/// Adds every valid catalogue line to `gallery`. `progress` shows a bar on stderr.
pub fn add_catalog(catalog: &Path, gallery: &mut Gallery, encoder: &mut Encoder, progress: bool) -> Result<BuildReport, BuildError> {
    let dir = gallery.dir().to_path_buf();
    embed_catalog(catalog, &dir, encoder, progress, &mut |items| gallery.add(items).map(drop).map_err(BuildError::from))
}

/// Embeds every valid catalogue line and hands the products to `sink` a batch at a time (thumbnails go
/// into `gallery_dir`'s `thumbs/`).
pub fn embed_catalog(
    catalog: &Path,
    gallery_dir: &Path,
    encoder: &mut Encoder,
    progress: bool,
    sink: &mut dyn FnMut(&[(Product, Vec<f32>)]) -> Result<(), BuildError>,
) -> Result<BuildReport, BuildError> {
    let cat_err = |source| BuildError::Catalog { path: catalog.to_path_buf(), source };
    let text = std::fs::read(catalog).map_err(cat_err)?;
    let base = catalog.parent().unwrap_or(Path::new("."));
    let lines = numbered_lines(&text);
    let bar = if progress { ProgressBar::new(lines.len() as u64) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{spinner} encoding products [{bar:30}] {pos}/{len} ({per_sec}, eta {eta}) {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let mut report = BuildReport::default();
    let skip = |report: &mut BuildReport, line: usize, reason: String| {
        bar.suspend(|| tracing::warn!(catalog = %catalog.display(), line, %reason, "catalogue line skipped"));
        report.skipped.push(Skipped { line, reason });
    };
    for chunk in lines.chunks(BATCH) {
        let mut ready: Vec<(CatalogEntry, Vec<RgbImage>)> = Vec::with_capacity(chunk.len());
        for (number, line) in chunk {
            match line.clone().and_then(|line| parse_line(line, *number, base)).and_then(|e| load_images(&e.images).map(|imgs| (e, imgs))) {
                Ok(item) => ready.push(item),
                Err(reason) => skip(&mut report, *number, reason),
            }
        }
        let mut batch = Vec::with_capacity(ready.len());
        for ((entry, images), vector) in encode_entries(encoder, &ready, &mut |line, reason| skip(&mut report, line, reason))? {
            let mut metadata = entry.metadata.clone();
            // The dashboard shows a copy of the first picture, served from the gallery (never the
            // catalogue's path or URL); a failed copy costs the picture, not the product.
            metadata.remove(THUMBNAIL_KEY);
            if let Some(first) = images.first() {
                match write_thumbnail(gallery_dir, &entry.product_id, first) {
                    Ok(name) => {
                        metadata.insert(THUMBNAIL_KEY.into(), name.into());
                    }
                    Err(e) => bar.suspend(|| tracing::warn!(product = %entry.product_id, error = %e, "no thumbnail")),
                }
            }
            let product = Product { row: 0, product_id: entry.product_id.clone(), title: entry.title.clone(), metadata };
            batch.push((product, vector));
        }
        sink(&batch)?;
        report.added += batch.len();
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    report.skipped.sort_by_key(|s| s.line);
    Ok(report)
}

/// Encodes a batch; when the batch fails, each entry alone, so a bad image costs only its line.
fn encode_entries<'a>(
    encoder: &mut Encoder,
    items: &'a [(CatalogEntry, Vec<RgbImage>)],
    skip: &mut dyn FnMut(usize, String),
) -> Result<Vec<(&'a (CatalogEntry, Vec<RgbImage>), Vec<f32>)>, BuildError> {
    let run = |encoder: &mut Encoder, items: &'a [(CatalogEntry, Vec<RgbImage>)]| {
        let clips: Vec<Vec<&RgbImage>> = items.iter().map(|(_, imgs)| imgs.iter().collect()).collect();
        let clip_refs: Vec<&[&RgbImage]> = clips.iter().map(Vec::as_slice).collect();
        let texts: Vec<String> = items.iter().map(|(e, _)| e.text()).collect();
        let text_refs: Vec<Option<&str>> = texts.iter().map(|t| Some(t.as_str())).collect();
        encoder.encode(&clip_refs, &text_refs, Side::Page)
    };
    if items.is_empty() {
        return Ok(Vec::new());
    }
    match run(encoder, items) {
        Ok(vectors) => Ok(items.iter().zip(vectors).collect()),
        Err(e @ EncodeError::Runtime(_)) if items.len() > 1 => Err(e.into()),
        Err(_) => {
            let mut out = Vec::new();
            for i in 0..items.len() {
                match run(encoder, &items[i..=i]) {
                    Ok(mut v) => out.push((&items[i], v.remove(0))),
                    Err(e) => skip(items[i].0.line, format!("cannot encode: {e}")),
                }
            }
            Ok(out)
        }
    }
}

/// The thumbnail's file name: a hash of the product id (ids are free text, names must be plain).
pub fn thumbnail_name(product_id: &str) -> String {
    use sha2::{Digest, Sha256};
    format!("{}.jpg", hex::encode(&Sha256::digest(product_id.as_bytes())[..8]))
}

/// Writes a JPEG of at most [`THUMB_SIDE`] px into `<gallery>/thumbs/`; returns its file name.
fn write_thumbnail(gallery: &Path, product_id: &str, image: &RgbImage) -> Result<String, String> {
    let dir = gallery.join(THUMBS_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let scale = (THUMB_SIDE as f32 / image.width().max(image.height()) as f32).min(1.0);
    let (w, h) = ((image.width() as f32 * scale).round().max(1.0) as u32, (image.height() as f32 * scale).round().max(1.0) as u32);
    let small = image::imageops::thumbnail(image, w, h);
    let name = thumbnail_name(product_id);
    let path = dir.join(&name);
    small.save_with_format(&path, image::ImageFormat::Jpeg).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(name)
}

fn load_images(paths: &[PathBuf]) -> Result<Vec<RgbImage>, String> {
    paths
        .iter()
        .map(|p| {
            if !p.is_file() {
                return Err(format!("image not found: {}", p.display()));
            }
            image::open(p).map(|i| i.to_rgb8()).map_err(|e| format!("unreadable image {}: {e}", p.display()))
        })
        .collect()
}
