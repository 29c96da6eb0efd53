//! Text detection with a DB (differentiable binarisation) network: the image goes in at most
//! `det_max_side` on its longer side, a per-pixel text probability map comes out at the same size. Text
//! regions are the connected components of the thresholded map; each is scored, grown back to the glyph
//! extent (the network marks a shrunk kernel) and returned as an axis-aligned box.
//!
//! Boxes are axis-aligned: packaging text in a live frame is mostly horizontal, and a rectangle crop keeps
//! recognition simple. Strongly rotated text is read poorly (no rotated-rectangle fitting).

use image::RgbImage;
use image::imageops::{FilterType, resize};

use super::config::OcrConfig;
use crate::blobs::blobs;

/// A text region in probability-map pixels (inclusive-exclusive: `x0 <= x < x1`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MapBox {
    pub x0: f32,
    pub y0: f32,
    pub x1: f32,
    pub y1: f32,
    /// Mean text probability over the region's pixels.
    pub score: f32,
}

/// The detector input: `[1, 3, h, w]` data, channels B, G, R (see `OcrConfig::det_mean`).
pub struct DetInput {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f32>,
}

/// Input size for an image of `w` x `h`: scaled so the longer side is at most `max_side` and at least
/// `min_side`, each side then rounded to a multiple of 32 (at least 32).
pub fn input_size(w: u32, h: u32, min_side: u32, max_side: u32) -> (u32, u32) {
    let long = w.max(h).max(1) as f32;
    let scale =
        if long < min_side as f32 { min_side as f32 / long } else { (max_side as f32 / long).min(1.0) };
    let round = |v: u32| (((v as f32 * scale) / 32.0).round() as u32).max(1) * 32;
    (round(w), round(h))
}

pub fn preprocess(img: &RgbImage, cfg: &OcrConfig) -> DetInput {
    let (w, h) = input_size(img.width(), img.height(), cfg.det_min_side, cfg.det_max_side);
    let resized = resize(img, w, h, FilterType::Triangle);
    let (w, h) = (w as usize, h as usize);
    let mut data = vec![0f32; 3 * w * h];
    for (i, px) in resized.pixels().enumerate() {
        // Tensor channel c holds image channel 2 - c (RGB -> BGR).
        for c in 0..3 {
            let v = px.0[2 - c] as f32 / 255.0;
            data[c * w * h + i] = (v - cfg.det_mean[c]) / cfg.det_std[c];
        }
    }
    DetInput { width: w, height: h, data }
}

/// Text regions of a `width` x `height` probability map, largest first (at most `cfg.max_boxes`).
pub fn boxes_from_map(prob: &[f32], width: usize, height: usize, cfg: &OcrConfig) -> Vec<MapBox> {
    let mut out = Vec::new();
    for blob in blobs(prob, width, height, |p| p > cfg.det_threshold) {
        let [x0, y0, x1, y1] = blob.bbox;
        let (w, h) = ((x1 - x0) as f32, (y1 - y0) as f32);
        let score = (blob.sum / blob.cells as f64) as f32;
        if w.min(h) < cfg.min_box_side as f32 || score < cfg.box_threshold {
            continue;
        }
        // DB unclip: the kernel was shrunk by D = A (1 - r^2) / L; growing by A * ratio / L restores it.
        let d = w * h * cfg.unclip_ratio / (2.0 * (w + h));
        out.push(MapBox {
            x0: (x0 as f32 - d).max(0.0),
            y0: (y0 as f32 - d).max(0.0),
            x1: (x1 as f32 + d).min(width as f32),
            y1: (y1 as f32 + d).min(height as f32),
            score,
        });
    }
    let area = |b: &MapBox| (b.x1 - b.x0) * (b.y1 - b.y0);
    out.sort_by(|a, b| area(b).total_cmp(&area(a)));
    out.truncate(cfg.max_boxes);
    out
}

/// Reading order: top to bottom by centre line, boxes on the same line (centres within half the smaller
/// height) left to right.
pub fn reading_order(boxes: &mut [[f32; 4]]) {
    boxes.sort_by(|a, b| (a[1] + a[3]).total_cmp(&(b[1] + b[3])));
    let mut i = 0;
    while i < boxes.len() {
        let mut j = i + 1;
        while j < boxes.len() {
            let (a, b) = (boxes[i], boxes[j]);
            let tol = 0.5 * (a[3] - a[1]).min(b[3] - b[1]);
            if ((a[1] + a[3]) - (b[1] + b[3])).abs() / 2.0 > tol {
                break;
            }
            j += 1;
        }
        boxes[i..j].sort_by(|a, b| a[0].total_cmp(&b[0]));
        i = j;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map_with(rects: &[(usize, usize, usize, usize, f32)], w: usize, h: usize) -> Vec<f32> {
        let mut m = vec![0.02f32; w * h];
        for &(x0, y0, x1, y1, p) in rects {
            for y in y0..y1 {
                for x in x0..x1 {
                    m[y * w + x] = p;
                }
            }
        }
        m
    }

    #[test]
    fn input_size_limits_the_longer_side_and_rounds_to_32() {
        assert_eq!(input_size(1920, 1080, 0, 960), (960, 544));
        assert_eq!(input_size(100, 50, 0, 960), (96, 64));
        assert_eq!(input_size(10, 10, 0, 960), (32, 32));
        // Small pictures are scaled up to the lower limit.
        assert_eq!(input_size(198, 198, 640, 960), (640, 640));
        assert_eq!(input_size(800, 400, 640, 960), (800, 416));
    }

    #[test]
    fn components_become_unclipped_boxes_and_noise_is_dropped() {
        let cfg = OcrConfig::default();
        // A 40x10 line, a second line, a 2x2 speck and a faint (low-probability) region.
        let m = map_with(
            &[(10, 10, 50, 20, 0.9), (10, 40, 30, 48, 0.8), (70, 70, 72, 72, 0.9), (60, 10, 90, 20, 0.4)],
            100,
            80,
        );
        let boxes = boxes_from_map(&m, 100, 80, &cfg);
        assert_eq!(boxes.len(), 2, "{boxes:?}");
        let b = boxes[0];
        // 40x10: d = 400 * 1.5 / 100 = 6.
        assert!((b.x0 - 4.0).abs() < 1e-4 && (b.x1 - 56.0).abs() < 1e-4, "{b:?}");
        assert!((b.y0 - 4.0).abs() < 1e-4 && (b.y1 - 26.0).abs() < 1e-4, "{b:?}");
        assert!((b.score - 0.9).abs() < 1e-6);
        assert!(boxes[1].y0 > 30.0);
    }

    #[test]
    fn boxes_are_clamped_to_the_map() {
        let cfg = OcrConfig::default();
        let m = map_with(&[(0, 0, 20, 6, 0.9)], 32, 32);
        let b = boxes_from_map(&m, 32, 32, &cfg)[0];
        assert_eq!((b.x0, b.y0), (0.0, 0.0));
        assert!(b.x1 <= 32.0 && b.y1 <= 32.0);
    }

    #[test]
    fn a_map_of_the_wrong_size_gives_no_boxes() {
        assert!(boxes_from_map(&[0.9; 10], 4, 4, &OcrConfig::default()).is_empty());
    }

    #[test]
    fn reading_order_is_rows_then_columns() {
        let mut b = vec![[50.0, 12.0, 90.0, 30.0], [0.0, 50.0, 40.0, 70.0], [0.0, 10.0, 40.0, 30.0]];
        reading_order(&mut b);
        assert_eq!(b[0][0], 0.0);
        assert_eq!(b[1][0], 50.0);
        assert_eq!(b[2][1], 50.0);
    }
}
