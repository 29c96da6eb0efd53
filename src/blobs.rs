//! Connected groups of marked cells in a grid (8-connected), labelled by imageproc, with what both users
//! need of each group: its bounding box, its cell count and the sum of the cells' values. Used for the
//! salient regions of a keyframe (`encode::localise`, a 16x16 patch grid) and the text boxes of OCR
//! detection (`ocr::detect`, a probability map).

use image::{GrayImage, Luma};
use imageproc::region_labelling::{Connectivity, connected_components};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Blob {
    /// Cells in the group.
    pub cells: usize,
    /// Sum of their values.
    pub sum: f64,
    /// `[x0, y0, x1, y1]` in cells, end exclusive.
    pub bbox: [usize; 4],
}

/// The groups of cells of `values` (`width` x `height`, row-major) for which `marked` holds, in the order
/// of their first cell in raster order.
pub fn blobs(values: &[f32], width: usize, height: usize, marked: impl Fn(f32) -> bool) -> Vec<Blob> {
    if values.len() != width * height || values.is_empty() {
        return Vec::new();
    }
    let mask = GrayImage::from_fn(width as u32, height as u32, |x, y| {
        Luma([if marked(values[y as usize * width + x as usize]) { 255 } else { 0 }])
    });
    let labels = connected_components(&mask, Connectivity::Eight, Luma([0u8]));
    // Label -> index into `out`, assigned when the label is first met.
    let mut index: Vec<Option<usize>> = Vec::new();
    let mut out: Vec<Blob> = Vec::new();
    for (x, y, label) in labels.enumerate_pixels() {
        let label = label.0[0] as usize;
        if label == 0 {
            continue;
        }
        if index.len() <= label {
            index.resize(label + 1, None);
        }
        let i = *index[label].get_or_insert_with(|| {
            out.push(Blob { cells: 0, sum: 0.0, bbox: [usize::MAX, usize::MAX, 0, 0] });
            out.len() - 1
        });
        let (x, y) = (x as usize, y as usize);
        let b = &mut out[i];
        b.cells += 1;
        b.sum += values[y * width + x] as f64;
        b.bbox = [b.bbox[0].min(x), b.bbox[1].min(y), b.bbox[2].max(x + 1), b.bbox[3].max(y + 1)];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diagonal_cells_join_and_separate_groups_stay_apart() {
        #[rustfmt::skip]
        let v = [
            1.0, 0.0, 0.0, 0.0, 2.0,
            0.0, 1.0, 0.0, 0.0, 2.0,
            0.0, 0.0, 0.0, 0.0, 0.0,
        ];
        let got = blobs(&v, 5, 3, |x| x > 0.5);
        assert_eq!(
            got,
            vec![
                Blob { cells: 2, sum: 2.0, bbox: [0, 0, 2, 2] },
                Blob { cells: 2, sum: 4.0, bbox: [4, 0, 5, 2] },
            ]
        );
        assert!(blobs(&v, 4, 3, |x| x > 0.5).is_empty(), "wrong size");
        assert!(blobs(&v, 5, 3, |x| x > 5.0).is_empty());
    }
}
