//! The OCR engine: detector and recogniser sessions opened once, `read` runs one image through both.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use image::RgbImage;
use image::imageops::rotate270;
use ort::session::Session;
use ort::value::TensorRef;
use parking_lot::Mutex;

use super::config::OcrConfig;
use super::detect::{self, MapBox};
use super::recognize::{self, Dictionary};
use super::{OcrError, TextLine};
use crate::encode::config::Provider;
use crate::encode::runtime::{SessionOptions, open_session};

/// PP-OCR (v3 and later) recognisers take lines 48 pixels high.
const REC_HEIGHT: u32 = 48;
/// A crop this much taller than wide is vertical text: turned a quarter counter-clockwise before reading.
const VERTICAL_RATIO: f32 = 1.5;

pub const DET_FILE: &str = "det.onnx";
pub const REC_FILE: &str = "rec.onnx";

/// Where the time of one `read` went.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    pub detect: Duration,
    pub recognize: Duration,
    pub boxes: usize,
}

pub struct OcrEngine {
    cfg: OcrConfig,
    // ort sessions run through `&mut`; the locks let one engine be shared by reference.
    det: Mutex<Session>,
    rec: Mutex<Session>,
    dict: Dictionary,
}

impl OcrEngine {
    /// Opens `det.onnx` and `rec.onnx` in `cfg.model_dir()`; the character list is read from the
    /// recogniser's `character` metadata.
    pub fn open(cfg: &OcrConfig) -> Result<Self, OcrError> {
        cfg.validate().map_err(OcrError::Config)?;
        let dir = cfg.model_dir();
        let opts = SessionOptions { provider: Provider::Cpu, intra_threads: cfg.intra_threads };
        let det = open_session(&existing(&dir, DET_FILE)?, opts)?;
        let rec = open_session(&existing(&dir, REC_FILE)?, opts)?;
        for (session, file) in [(&det, DET_FILE), (&rec, REC_FILE)] {
            if session.inputs().len() != 1 || session.outputs().is_empty() {
                return Err(OcrError::Model(format!(
                    "{}: want one input and an output",
                    dir.join(file).display()
                )));
            }
        }
        let list = rec.metadata()?.custom("character").ok_or_else(|| {
            OcrError::Model(format!(
                "{}: no `character` metadata (the character list)",
                dir.join(REC_FILE).display()
            ))
        })?;
        let dict = Dictionary::from_list(&list);
        tracing::info!(model_dir = %dir.display(), classes = dict.classes(), "OCR models loaded");
        Ok(OcrEngine { cfg: cfg.clone(), det: Mutex::new(det), rec: Mutex::new(rec), dict })
    }

    pub fn config(&self) -> &OcrConfig {
        &self.cfg
    }

    /// Text lines in reading order, each at least `min_confidence`.
    pub fn read(&self, img: &RgbImage) -> Result<Vec<TextLine>, OcrError> {
        self.read_timed(img).map(|(lines, _)| lines)
    }

    /// `read`, with the time spent in detection and recognition.
    pub fn read_timed(&self, img: &RgbImage) -> Result<(Vec<TextLine>, Timings), OcrError> {
        let mut t = Timings::default();
        if img.width() < 8 || img.height() < 8 {
            return Ok((Vec::new(), t));
        }
        let start = Instant::now();
        let boxes = self.detect(img)?;
        t.detect = start.elapsed();
        t.boxes = boxes.len();
        let start = Instant::now();
        let lines = self.recognize(img, &boxes)?;
        t.recognize = start.elapsed();
        tracing::debug!(
            boxes = t.boxes,
            lines = lines.len(),
            det_ms = t.detect.as_millis() as u64,
            rec_ms = t.recognize.as_millis() as u64,
            "OCR read"
        );
        Ok((lines, t))
    }

    /// Pixel boxes (x0, y0, x1, y1) in reading order.
    fn detect(&self, img: &RgbImage) -> Result<Vec<[u32; 4]>, OcrError> {
        let input = detect::preprocess(img, &self.cfg);
        let (w, h) = (input.width, input.height);
        let mut session = self.det.lock();
        let out = session
            .run(ort::inputs![TensorRef::from_array_view(([1usize, 3, h, w], input.data.as_slice()))?])?;
        let (shape, prob) = out[0].try_extract_tensor::<f32>()?;
        let (mh, mw) = match **shape {
            [1, 1, mh, mw] => (mh as usize, mw as usize),
            ref other => {
                return Err(OcrError::Model(format!("detector output shape {other:?}, want [1,1,H,W]")));
            }
        };
        let map_boxes = detect::boxes_from_map(prob, mw, mh, &self.cfg);
        let (sx, sy) = (img.width() as f32 / mw as f32, img.height() as f32 / mh as f32);
        let mut boxes: Vec<[f32; 4]> =
            map_boxes.iter().map(|b: &MapBox| [b.x0 * sx, b.y0 * sy, b.x1 * sx, b.y1 * sy]).collect();
        detect::reading_order(&mut boxes);
        let (iw, ih) = (img.width(), img.height());
        Ok(boxes
            .iter()
            .map(|b| {
                let x0 = (b[0].floor() as u32).min(iw - 1);
                let y0 = (b[1].floor() as u32).min(ih - 1);
                [x0, y0, (b[2].ceil() as u32).clamp(x0 + 1, iw), (b[3].ceil() as u32).clamp(y0 + 1, ih)]
            })
            .collect())
    }

    fn recognize(&self, img: &RgbImage, boxes: &[[u32; 4]]) -> Result<Vec<TextLine>, OcrError> {
        // Vertical crops are rotated first; each crop's (image, box in that image, original box).
        let crops: Vec<(Option<RgbImage>, [u32; 4], [u32; 4])> = boxes
            .iter()
            .map(|&b| {
                let (w, h) = (b[2] - b[0], b[3] - b[1]);
                if h as f32 >= VERTICAL_RATIO * w as f32 {
                    let turned = rotate270(&image::imageops::crop_imm(img, b[0], b[1], w, h).to_image());
                    (Some(turned), [0, 0, h, w], b)
                } else {
                    (None, b, b)
                }
            })
            .collect();
        let width_of = |c: &(Option<RgbImage>, [u32; 4], [u32; 4])| {
            recognize::crop_width(c.1[2] - c.1[0], c.1[3] - c.1[1], REC_HEIGHT, self.cfg.rec_max_width)
        };
        // Similar widths batch together, so that little of a batch is padding.
        let mut order: Vec<usize> = (0..crops.len()).collect();
        order.sort_by_key(|&i| width_of(&crops[i]));
        let widths: Vec<u32> = order.iter().map(|&i| width_of(&crops[i])).collect();
        let mut lines: Vec<(usize, TextLine)> = Vec::new();
        let mut session = self.rec.lock();
        for range in batches(&widths, self.cfg.rec_batch) {
            let chunk = &order[range];
            let stride =
                chunk.iter().map(|&i| width_of(&crops[i])).max().unwrap_or(1).max(self.cfg.rec_min_width)
                    as usize;
            let item = 3 * REC_HEIGHT as usize * stride;
            let mut data = vec![0f32; chunk.len() * item];
            for (k, &i) in chunk.iter().enumerate() {
                let (turned, b, _) = &crops[i];
                let src = turned.as_ref().unwrap_or(img);
                let out = &mut data[k * item..(k + 1) * item];
                recognize::write_crop(src, *b, REC_HEIGHT, width_of(&crops[i]), stride, out);
            }
            let input =
                TensorRef::from_array_view(([chunk.len(), 3, REC_HEIGHT as usize, stride], data.as_slice()))?;
            let out = session.run(ort::inputs![input])?;
            let (shape, probs) = out[0].try_extract_tensor::<f32>()?;
            let (steps, classes) = match **shape {
                [n, t, c] if n as usize == chunk.len() => (t as usize, c as usize),
                ref other => return Err(OcrError::Model(format!("recogniser output shape {other:?}"))),
            };
            if classes != self.dict.classes() {
                return Err(OcrError::Model(format!(
                    "recogniser has {classes} classes, its character list {}",
                    self.dict.classes()
                )));
            }
            for (k, &i) in chunk.iter().enumerate() {
                let (text, confidence) = recognize::ctc_greedy(
                    &probs[k * steps * classes..(k + 1) * steps * classes],
                    classes,
                    &self.dict,
                );
                if text.is_empty() || confidence < self.cfg.min_confidence {
                    continue;
                }
                let b = crops[i].2;
                let (iw, ih) = (img.width() as f32, img.height() as f32);
                let bbox = [b[0] as f32 / iw, b[1] as f32 / ih, b[2] as f32 / iw, b[3] as f32 / ih];
                lines.push((i, TextLine { text, confidence, bbox }));
            }
        }
        lines.sort_by_key(|(i, _)| *i);
        Ok(lines.into_iter().map(|(_, l)| l).collect())
    }
}

/// Consecutive runs of the sorted `widths`: at most `max` crops, the widest at most twice the narrowest
/// (the rest of a batch is padded to its widest crop: wasted compute).
fn batches(widths: &[u32], max: usize) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=widths.len() {
        if i == widths.len() || i - start >= max || widths[i] > 2 * widths[start] {
            out.push(start..i);
            start = i;
        }
    }
    out
}

fn existing(dir: &Path, file: &str) -> Result<PathBuf, OcrError> {
    let path = dir.join(file);
    if path.is_file() { Ok(path) } else { Err(OcrError::Missing { path }) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn batches_group_similar_widths() {
        assert_eq!(super::batches(&[10, 12, 19, 40, 50, 300], 8), vec![0..3, 3..5, 5..6]);
        assert_eq!(super::batches(&[10, 10, 10], 2), vec![0..2, 2..3]);
        assert!(super::batches(&[], 8).is_empty());
    }
}
