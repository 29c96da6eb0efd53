//! Where the product is in a keyframe, from the tower's own patch tokens (no extra model, no extra pass).
//!
//! A DINOv2 patch token describes what its 14x14 patch shows. Backdrop patches look alike and like the
//! frame's border; a product's patches do not. The map is `1 - cos(patch, mean border patch)`, a cell
//! is salient at `threshold` x the map's peak, and each 8-connected group of salient cells is a region.
//! A region small in the frame is embedded again from a crop of the keyframe (at the keyframe's
//! resolution, fitted to the tower's input like a catalogue page), which is where a product held up in a wide shot becomes recognisable: measured on
//! Grocery showcase frames, top-1 0.43 with the whole frame, 0.76 with the crop (BENCHMARKS.md).
//!
//! The map is only trusted when its peak is high: an empty studio or a close-up that fills the frame has
//! no patch that stands out from the border (peaks 0.3-0.5 measured), a product on a backdrop does
//! (1.2-1.4), so empty frames cost no crop pass and give no region to confuse.

use serde::Deserialize;

use super::manifest::ResizePolicy;
use crate::blobs::blobs;
use crate::config::ConfigError;

/// A further region must weigh (sum of its cells' contrast) at least this share of the largest one.
const MIN_SHARE_OF_LARGEST: f32 = 0.3;

/// `[encoder.localise]`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocaliseConfig {
    /// Regions re-embedded from a crop per keyframe (0 turns localisation off: one pass per keyframe).
    pub max_regions: usize,
    /// The map's peak (1 - cosine to the border) below which a frame has no region.
    pub min_contrast: f32,
    /// A cell is salient at this share of the map's peak.
    pub threshold: f32,
    /// Regions covering more of the model's view than this are not cropped: the whole frame shows them.
    pub max_area: f32,
    /// Regions of fewer salient cells are noise.
    pub min_cells: usize,
    /// Context kept around a region: the crop grows by this share of the region's size on each axis.
    pub margin: f32,
}

impl Default for LocaliseConfig {
    fn default() -> Self {
        LocaliseConfig { max_regions: 2, min_contrast: 0.8, threshold: 0.5, max_area: 0.4, min_cells: 6, margin: 0.2 }
    }
}

impl LocaliseConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, problem: &str| {
            Err(ConfigError { key: format!("encoder.localise.{key}"), problem: problem.to_string() })
        };
        if self.max_regions > 8 {
            return bad("max_regions", "must be at most 8 (each region costs one more tower pass)");
        }
        if !(0.0..=2.0).contains(&self.min_contrast) {
            return bad("min_contrast", "must be between 0 and 2 (it is 1 - a cosine)");
        }
        if !(self.threshold > 0.0 && self.threshold < 1.0) {
            return bad("threshold", "must be between 0 and 1 (a share of the map's peak)");
        }
        if !(self.max_area > 0.0 && self.max_area <= 1.0) {
            return bad("max_area", "must be in (0, 1]");
        }
        if !(0.0..=3.0).contains(&self.margin) {
            return bad("margin", "must be between 0 and 3");
        }
        Ok(())
    }
}

/// A normalised box `[x0, y0, x1, y1]` in keyframe coordinates (0..1, origin top left).
pub type BBox = [f32; 4];

/// A salient region: its box in keyframe coordinates and the pixel square to crop for the second pass.
#[derive(Debug, Clone, PartialEq)]
pub struct Region {
    pub bbox: BBox,
    /// `(x, y, width, height)` in keyframe pixels, inside the image.
    pub crop: (u32, u32, u32, u32),
}

/// Salient regions of one item, largest first. `patches` holds the tower's patch tokens (CLS removed),
/// `grid` x `grid` of `dim` floats, row-major; `(width, height)` is the keyframe's size and `resize` how
/// the model's view was cut from it.
pub fn regions(
    patches: &[f32],
    grid: usize,
    dim: usize,
    (width, height): (u32, u32),
    resize: ResizePolicy,
    cfg: &LocaliseConfig,
) -> Vec<Region> {
    if cfg.max_regions == 0 || grid < 3 || patches.len() != grid * grid * dim {
        return Vec::new();
    }
    let map = contrast_map(patches, grid, dim);
    let peak = map.iter().copied().fold(0.0f32, f32::max);
    if peak < cfg.min_contrast {
        return Vec::new();
    }
    let level = cfg.threshold * peak;
    let mut found: Vec<(f32, [usize; 4])> = blobs(&map, grid, grid, |v| v >= level)
        .into_iter()
        .filter(|c| c.cells >= cfg.min_cells)
        .filter(|c| {
            let [x0, y0, x1, y1] = c.bbox;
            ((x1 - x0) * (y1 - y0)) as f32 / (grid * grid) as f32 <= cfg.max_area
        })
        .map(|c| (c.sum as f32, c.bbox))
        .collect();
    found.sort_by(|a, b| b.0.total_cmp(&a.0));
    // Fragments of one large product (its bright details) come out as small side regions: only regions
    // of a weight comparable to the largest count as objects of their own.
    let largest = found.first().map_or(0.0, |f| f.0);
    found
        .into_iter()
        .take_while(|f| f.0 >= MIN_SHARE_OF_LARGEST * largest)
        .take(cfg.max_regions)
        .map(|(_, [x0, y0, x1, y1])| {
            let g = grid as f32;
            let view = [x0 as f32 / g, y0 as f32 / g, x1 as f32 / g, y1 as f32 / g];
            let bbox = view_to_frame(view, (width, height), resize);
            Region { bbox, crop: crop_rect(bbox, (width, height), cfg.margin) }
        })
        .collect()
}

/// `1 - cos(patch, mean of the border patches)` per cell.
fn contrast_map(patches: &[f32], grid: usize, dim: usize) -> Vec<f32> {
    let unit: Vec<Vec<f32>> = patches
        .chunks_exact(dim)
        .map(|p| {
            let n = p.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
            p.iter().map(|x| x / n).collect()
        })
        .collect();
    let mut border = vec![0f32; dim];
    for (i, u) in unit.iter().enumerate() {
        let (r, c) = (i / grid, i % grid);
        if r == 0 || c == 0 || r == grid - 1 || c == grid - 1 {
            border.iter_mut().zip(u).for_each(|(b, x)| *b += x);
        }
    }
    let n = border.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    unit.iter().map(|u| 1.0 - u.iter().zip(&border).map(|(a, b)| a * b).sum::<f32>() / n).collect()
}

/// A box in the model's view (0..1) to keyframe coordinates (0..1), given how the view was cut.
fn view_to_frame(view: BBox, (w, h): (u32, u32), resize: ResizePolicy) -> BBox {
    let (w, h) = (w as f32, h as f32);
    // The view's square side and its top-left corner, in keyframe pixels.
    let (sx, sy, ox, oy) = match resize {
        ResizePolicy::Stretch => (w, h, 0.0, 0.0),
        ResizePolicy::Crop => {
            let s = w.min(h);
            (s, s, (w - s) / 2.0, (h - s) / 2.0)
        }
        ResizePolicy::Letterbox => {
            let s = w.max(h);
            (s, s, (w - s) / 2.0, (h - s) / 2.0)
        }
    };
    let x = |v: f32| ((ox + v * sx) / w).clamp(0.0, 1.0);
    let y = |v: f32| ((oy + v * sy) / h).clamp(0.0, 1.0);
    [x(view[0]), y(view[1]), x(view[2]), y(view[3])]
}

/// The box grown by `margin` of its size on each axis, in keyframe pixels and inside the image. Not
/// squared: the tower's preprocessing fits the crop exactly as it fits a catalogue page, so a product
/// cut tightly out of the frame is seen the way its page image is.
fn crop_rect(bbox: BBox, (w, h): (u32, u32), margin: f32) -> (u32, u32, u32, u32) {
    let (wf, hf) = (w as f32, h as f32);
    let grow = |lo: f32, hi: f32, size: f32| {
        let pad = (hi - lo) * margin / 2.0;
        let (a, b) = (((lo - pad) * size).max(0.0), ((hi + pad) * size).min(size));
        (a.round() as u32, ((b - a).round() as u32).max(1))
    };
    let (x, cw) = grow(bbox[0], bbox[2], wf);
    let (y, ch) = grow(bbox[1], bbox[3], hf);
    (x, y, cw.min(w - x), ch.min(h - y))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Patch tokens of a `grid`² frame: backdrop cells one direction, the cells in `objects` another each.
    fn tokens(grid: usize, objects: &[([usize; 4], usize)]) -> Vec<f32> {
        let dim = 8;
        let mut out = Vec::new();
        for r in 0..grid {
            for c in 0..grid {
                let mut t = vec![0f32; dim];
                t[0] = 1.0;
                for &([x0, y0, x1, y1], axis) in objects {
                    if (x0..x1).contains(&c) && (y0..y1).contains(&r) {
                        t = vec![0.0; dim];
                        t[axis] = 1.0;
                    }
                }
                out.extend(t);
            }
        }
        out
    }

    #[test]
    fn two_objects_give_two_boxes_in_frame_coordinates() {
        let cfg = LocaliseConfig::default();
        let t = tokens(16, &[([1, 4, 5, 9], 1), ([10, 6, 15, 12], 2)]);
        let got = regions(&t, 16, 8, (224, 224), ResizePolicy::Crop, &cfg);
        assert_eq!(got.len(), 2, "{got:?}");
        let mut boxes: Vec<BBox> = got.iter().map(|r| r.bbox).collect();
        boxes.sort_by(|a, b| a[0].total_cmp(&b[0]));
        assert_eq!(boxes[0], [1.0 / 16.0, 4.0 / 16.0, 5.0 / 16.0, 9.0 / 16.0]);
        assert_eq!(boxes[1], [10.0 / 16.0, 6.0 / 16.0, 15.0 / 16.0, 12.0 / 16.0]);
        for r in &got {
            let (x, y, w, h) = r.crop;
            assert!(x + w <= 224 && y + h <= 224 && w >= 50 && h >= 60, "{r:?}");
        }
    }

    #[test]
    fn a_flat_frame_or_a_close_up_has_no_region() {
        let cfg = LocaliseConfig::default();
        assert!(regions(&tokens(16, &[]), 16, 8, (224, 224), ResizePolicy::Crop, &cfg).is_empty());
        // Fills most of the view: the whole frame already shows it.
        let big = tokens(16, &[([1, 1, 15, 15], 1)]);
        assert!(regions(&big, 16, 8, (224, 224), ResizePolicy::Crop, &cfg).is_empty());
        // Off when asked, and on malformed input.
        let small = tokens(16, &[([2, 2, 6, 6], 1)]);
        assert_eq!(regions(&small, 16, 8, (224, 224), ResizePolicy::Crop, &cfg).len(), 1);
        let off = LocaliseConfig { max_regions: 0, ..cfg };
        assert!(regions(&small, 16, 8, (224, 224), ResizePolicy::Crop, &off).is_empty());
        assert!(regions(&small[..100], 16, 8, (224, 224), ResizePolicy::Crop, &cfg).is_empty());
    }

    #[test]
    fn view_boxes_map_back_through_the_centre_crop() {
        // A 16:9 keyframe seen through a centre square: the view's left edge is 1/8 + 1/32 in.
        let b = view_to_frame([0.0, 0.0, 1.0, 1.0], (640, 360), ResizePolicy::Crop);
        assert!((b[0] - 140.0 / 640.0).abs() < 1e-6 && (b[2] - 500.0 / 640.0).abs() < 1e-6 && b[1] == 0.0 && b[3] == 1.0);
        let s = view_to_frame([0.25, 0.25, 0.5, 0.5], (640, 360), ResizePolicy::Stretch);
        assert_eq!(s, [0.25, 0.25, 0.5, 0.5]);
        // The crop grows by the margin and stays inside the image at its edges.
        assert_eq!(crop_rect([0.25, 0.25, 0.5, 0.5], (400, 400), 0.2), (90, 90, 120, 120));
        let (x, y, w, h) = crop_rect([0.9, 0.8, 1.0, 1.0], (640, 360), 0.3);
        assert!(x + w <= 640 && y + h <= 360 && w > 0 && h > 0, "{x} {y} {w} {h}");
    }

    #[test]
    fn bad_settings_name_their_key() {
        let err = LocaliseConfig { threshold: 1.5, ..Default::default() }.validate().unwrap_err();
        assert!(err.to_string().contains("encoder.localise.threshold"), "{err}");
        assert!(LocaliseConfig::default().validate().is_ok());
    }
}
