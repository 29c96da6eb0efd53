//! DCT perceptual hash (pHash): 32x32 luma, 2-D DCT, the 8x8 lowest frequencies against their median.
//! Robust to scaling, compression noise and small brightness changes; moves when the scene changes.

use std::sync::OnceLock;

use fast_image_resize::images::Image;
use fast_image_resize::{PixelType, ResizeAlg, ResizeOptions, Resizer};

const N: usize = 32;
const K: usize = 8;

/// 64-bit perceptual hash of an RGB image.
pub fn phash(img: &image::RgbImage) -> u64 {
    let (w, h) = img.dimensions();
    if w == 0 || h == 0 {
        return 0;
    }
    // Luma first (one pass over the small sampled frame), then an area-averaging downscale to 32x32.
    let luma: Vec<u8> = img
        .pixels()
        .map(|p| ((77 * p[0] as u32 + 150 * p[1] as u32 + 29 * p[2] as u32) >> 8) as u8)
        .collect();
    let small = match downscale(luma, w, h) {
        Some(s) => s,
        None => return 0,
    };
    let dct = dct2_low(&small);
    // Skip the DC term: it only carries overall brightness.
    let mut sorted: Vec<f32> = dct[1..].to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let median = sorted[sorted.len() / 2];
    dct.iter().enumerate().fold(
        0u64,
        |acc, (i, &v)| if v > median { acc | (1 << i) } else { acc },
    )
}

/// Number of differing bits between two hashes (0 = identical, 64 = opposite).
pub fn hamming(a: u64, b: u64) -> u32 {
    (a ^ b).count_ones()
}

fn downscale(luma: Vec<u8>, w: u32, h: u32) -> Option<Vec<f32>> {
    let src = Image::from_vec_u8(w, h, luma, PixelType::U8).ok()?;
    let mut dst = Image::new(N as u32, N as u32, PixelType::U8);
    let opts =
        ResizeOptions::new().resize_alg(ResizeAlg::Convolution(fast_image_resize::FilterType::Box));
    Resizer::new().resize(&src, &mut dst, &opts).ok()?;
    Some(dst.buffer().iter().map(|&v| v as f32).collect())
}

/// The K x K lowest-frequency coefficients of the 2-D DCT-II of an N x N block.
fn dct2_low(block: &[f32]) -> [f32; K * K] {
    let cos = cos_table();
    // Rows first: tmp[y][u] = sum_x block[y][x] * cos[u][x]
    let mut tmp = [0f32; N * K];
    for y in 0..N {
        for u in 0..K {
            tmp[y * K + u] = (0..N).map(|x| block[y * N + x] * cos[u * N + x]).sum();
        }
    }
    let mut out = [0f32; K * K];
    for v in 0..K {
        for u in 0..K {
            out[v * K + u] = (0..N).map(|y| tmp[y * K + u] * cos[v * N + y]).sum();
        }
    }
    out
}

fn cos_table() -> &'static [f32; K * N] {
    static TABLE: OnceLock<[f32; K * N]> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = [0f32; K * N];
        for u in 0..K {
            for x in 0..N {
                t[u * N + x] =
                    (std::f32::consts::PI * (2 * x + 1) as f32 * u as f32 / (2 * N) as f32).cos();
            }
        }
        t
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gradient(w: u32, h: u32, shift: u32) -> image::RgbImage {
        image::RgbImage::from_fn(w, h, |x, y| {
            let v = (((x + shift) * 7 + y * 3) % 256) as u8;
            image::Rgb([v, v / 2, 255 - v])
        })
    }

    fn checker(w: u32, h: u32, cell: u32) -> image::RgbImage {
        image::RgbImage::from_fn(w, h, |x, y| {
            if (x / cell + y / cell).is_multiple_of(2) {
                image::Rgb([240, 240, 240])
            } else {
                image::Rgb([10, 10, 10])
            }
        })
    }

    #[test]
    fn identical_images_hash_identically() {
        let a = gradient(224, 224, 0);
        assert_eq!(phash(&a), phash(&a.clone()));
    }

    /// Scene-like: smooth shading with a bright object (a checkerboard is pathological for pHash: its low
    /// frequencies are all near zero, so their signs against the median are noise).
    fn scene(w: u32, h: u32) -> image::RgbImage {
        image::RgbImage::from_fn(w, h, |x, y| {
            let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
            let disc = ((fx - 0.6).powi(2) + (fy - 0.4).powi(2)) < 0.04;
            let v = if disc { 230.0 } else { 60.0 + 90.0 * fy + 40.0 * (fx * 6.0).sin() };
            image::Rgb([v as u8, (v * 0.8) as u8, (v * 0.6) as u8])
        })
    }

    #[test]
    fn small_brightness_change_is_a_near_duplicate() {
        let a = scene(224, 224);
        let mut b = a.clone();
        b.pixels_mut()
            .for_each(|p| p.0.iter_mut().for_each(|c| *c = c.saturating_add(6)));
        assert!(hamming(phash(&a), phash(&b)) <= 4);
    }

    #[test]
    fn different_scenes_are_far_apart() {
        let a = checker(224, 224, 28);
        let b = gradient(224, 224, 0);
        assert!(
            hamming(phash(&a), phash(&b)) > 16,
            "{}",
            hamming(phash(&a), phash(&b))
        );
    }

    #[test]
    fn empty_image_does_not_panic() {
        assert_eq!(phash(&image::RgbImage::new(0, 0)), 0);
    }
}
