//! Synthetic live views of a product page image (domain randomisation): the page picture, its plain
//! backdrop keyed out, placed on a varied background (a crop of a live example frame when there are any,
//! else a generated studio-like backdrop), scaled, rotated and perspective-warped, re-lit, blurred, noised
//! and partly covered by a hand-like occluder. Deterministic for a seed.

use image::{Rgb, RgbImage, Rgba, RgbaImage, imageops};
use imageproc::geometric_transformations::{Border, Interpolation, Projection, warp_into};

/// Side of a synthetic view (the encoder resizes it like any frame).
pub const VIEW_SIDE: u32 = 320;
/// Pages are shrunk to at most this side before warping (speed; the view is smaller anyway).
const PAGE_SIDE: u32 = 384;

/// Makes one synthetic view of `page`. `backgrounds` are live frames to crop backdrops from (may be empty).
pub fn live_view(page: &RgbImage, backgrounds: &[&RgbImage], rng: &mut fastrand::Rng) -> RgbImage {
    let side = VIEW_SIDE;
    let mut canvas = match backgrounds.len() {
        0 => studio_backdrop(side, rng),
        n => crop_backdrop(backgrounds[rng.usize(..n)], side, rng),
    };
    let object = cut_out(&shrink(page, PAGE_SIDE));
    let placed = place(&object, side, rng);
    canvas = composite(&placed, &canvas);
    relight(&mut canvas, rng);
    if rng.f32() < 0.5 {
        hand(&mut canvas, rng);
    }
    let sigma = rng.f32() * 1.6;
    let mut out = if sigma > 0.3 { imageproc::filter::gaussian_blur_f32(&canvas, sigma) } else { canvas };
    noise(&mut out, rng);
    out
}

fn shrink(img: &RgbImage, max_side: u32) -> RgbImage {
    let (w, h) = img.dimensions();
    let s = max_side as f32 / w.max(h) as f32;
    if s >= 1.0 {
        return img.clone();
    }
    imageops::resize(img, ((w as f32 * s) as u32).max(1), ((h as f32 * s) as u32).max(1), imageops::FilterType::Triangle)
}

/// The page picture with its plain backdrop made transparent: a flood fill from the border over pixels
/// close to the border's own colour (product pages are shot on white or a flat colour).
fn cut_out(page: &RgbImage) -> RgbaImage {
    let (w, h) = page.dimensions();
    let corners = [page.get_pixel(0, 0), page.get_pixel(w - 1, 0), page.get_pixel(0, h - 1), page.get_pixel(w - 1, h - 1)];
    let key: [f32; 3] = std::array::from_fn(|c| corners.iter().map(|p| p[c] as f32).sum::<f32>() / 4.0);
    let near = |p: &Rgb<u8>| (0..3).map(|c| (p[c] as f32 - key[c]).abs()).fold(0.0, f32::max) < 28.0;
    let mut out = RgbaImage::from_fn(w, h, |x, y| {
        let p = page.get_pixel(x, y);
        Rgba([p[0], p[1], p[2], 255])
    });
    let mut seen = vec![false; (w * h) as usize];
    let mut stack: Vec<(u32, u32)> = Vec::new();
    for x in 0..w {
        stack.push((x, 0));
        stack.push((x, h - 1));
    }
    for y in 0..h {
        stack.push((0, y));
        stack.push((w - 1, y));
    }
    while let Some((x, y)) = stack.pop() {
        let i = (y * w + x) as usize;
        if seen[i] || !near(page.get_pixel(x, y)) {
            continue;
        }
        seen[i] = true;
        out.get_pixel_mut(x, y)[3] = 0;
        if x > 0 {
            stack.push((x - 1, y));
        }
        if x + 1 < w {
            stack.push((x + 1, y));
        }
        if y > 0 {
            stack.push((x, y - 1));
        }
        if y + 1 < h {
            stack.push((x, y + 1));
        }
    }
    // A page that is all backdrop (or nothing was keyed) keeps the whole picture.
    if seen.iter().all(|s| *s) {
        out.pixels_mut().for_each(|p| p[3] = 255);
    }
    out
}

/// Warps the object onto a transparent `side` x `side` layer: scaled to 35-90 % of the frame, rotated by
/// up to 25 degrees, each corner jittered (perspective), placed anywhere it fits.
fn place(object: &RgbaImage, side: u32, rng: &mut fastrand::Rng) -> RgbaImage {
    let (w, h) = (object.width() as f32, object.height() as f32);
    let s = side as f32;
    let target = s * (0.35 + 0.55 * rng.f32());
    let scale = target / w.max(h);
    let (tw, th) = (w * scale, h * scale);
    let angle = (rng.f32() - 0.5) * 50f32.to_radians();
    let cx = tw / 2.0 + rng.f32() * (s - tw).max(0.0);
    let cy = th / 2.0 + rng.f32() * (s - th).max(0.0);
    let jitter = 0.12 * target;
    let (sin, cos) = angle.sin_cos();
    let corner = |dx: f32, dy: f32, rng: &mut fastrand::Rng| {
        let (jx, jy) = ((rng.f32() - 0.5) * jitter, (rng.f32() - 0.5) * jitter);
        (cx + dx * cos - dy * sin + jx, cy + dx * sin + dy * cos + jy)
    };
    let to = [
        corner(-tw / 2.0, -th / 2.0, rng),
        corner(tw / 2.0, -th / 2.0, rng),
        corner(tw / 2.0, th / 2.0, rng),
        corner(-tw / 2.0, th / 2.0, rng),
    ];
    let from = [(0.0, 0.0), (w, 0.0), (w, h), (0.0, h)];
    let mut layer = RgbaImage::new(side, side);
    match Projection::from_control_points(from, to) {
        Some(p) => warp_into(object, p, Interpolation::Bilinear, Border::Constant(Rgba([0, 0, 0, 0])), &mut layer),
        None => {
            let small = imageops::resize(object, tw.max(1.0) as u32, th.max(1.0) as u32, imageops::FilterType::Triangle);
            imageops::overlay(&mut layer, &small, ((s - tw) / 2.0) as i64, ((s - th) / 2.0) as i64);
        }
    }
    layer
}

/// The warped layer composited over the canvas (alpha blend), as an opaque image.
fn composite(layer: &RgbaImage, canvas: &RgbImage) -> RgbImage {
    RgbImage::from_fn(canvas.width(), canvas.height(), |x, y| {
        let (f, b) = (layer.get_pixel(x, y), canvas.get_pixel(x, y));
        let a = f[3] as f32 / 255.0;
        Rgb(std::array::from_fn(|c| (f[c] as f32 * a + b[c] as f32 * (1.0 - a)).round() as u8))
    })
}

fn crop_backdrop(frame: &RgbImage, side: u32, rng: &mut fastrand::Rng) -> RgbImage {
    let (w, h) = frame.dimensions();
    let crop = (w.min(h) as f32 * (0.5 + 0.5 * rng.f32())) as u32;
    let crop = crop.max(1);
    let (x, y) = (rng.u32(0..=w - crop), rng.u32(0..=h - crop));
    let sub = imageops::crop_imm(frame, x, y, crop, crop).to_image();
    let mut out = imageops::resize(&sub, side, side, imageops::FilterType::Triangle);
    if rng.bool() {
        imageops::flip_horizontal_in_place(&mut out);
    }
    out
}

/// A table-and-wall backdrop: two colour gradients split at a random height, with soft blobs.
fn studio_backdrop(side: u32, rng: &mut fastrand::Rng) -> RgbImage {
    let colour = |rng: &mut fastrand::Rng| -> [f32; 3] { std::array::from_fn(|_| 40.0 + rng.f32() * 200.0) };
    let (wall, table, light) = (colour(rng), colour(rng), colour(rng));
    let split = side as f32 * (0.4 + 0.4 * rng.f32());
    let (lx, ly, lr) = (rng.f32() * side as f32, rng.f32() * split, side as f32 * (0.2 + 0.4 * rng.f32()));
    RgbImage::from_fn(side, side, |x, y| {
        let (xf, yf) = (x as f32, y as f32);
        let base = if yf < split { wall } else { table };
        let shade = 0.75 + 0.25 * (yf / side as f32);
        let d = ((xf - lx).powi(2) + (yf - ly).powi(2)).sqrt() / lr;
        let glow = (1.0 - d).max(0.0) * 0.5;
        Rgb(std::array::from_fn(|c| (base[c] * shade * (1.0 - glow) + light[c] * glow).clamp(0.0, 255.0) as u8))
    })
}

/// Brightness, contrast and colour temperature drift, and a soft directional light falloff.
fn relight(img: &mut RgbImage, rng: &mut fastrand::Rng) {
    let gain = 0.65 + 0.6 * rng.f32();
    let contrast = 0.75 + 0.5 * rng.f32();
    let warm = (rng.f32() - 0.5) * 0.25;
    let tint = [1.0 + warm, 1.0, 1.0 - warm];
    let (gx, gy) = ((rng.f32() - 0.5) * 0.5, (rng.f32() - 0.5) * 0.5);
    let (w, h) = (img.width() as f32, img.height() as f32);
    for (x, y, p) in img.enumerate_pixels_mut() {
        let fall = 1.0 + gx * (x as f32 / w - 0.5) + gy * (y as f32 / h - 0.5);
        for c in 0..3 {
            let v = ((p[c] as f32 - 128.0) * contrast + 128.0) * gain * tint[c] * fall;
            p[c] = v.clamp(0.0, 255.0) as u8;
        }
    }
}

/// A hand-like occluder: a skin-toned palm ellipse with finger strokes, entering from an edge.
fn hand(img: &mut RgbImage, rng: &mut fastrand::Rng) {
    use imageproc::drawing::{draw_filled_ellipse_mut, draw_line_segment_mut};
    let tones = [[224u8, 172, 138], [198, 134, 103], [141, 85, 60], [241, 194, 160]];
    let tone = tones[rng.usize(..tones.len())];
    let skin = Rgb(tone);
    let s = img.width() as f32;
    let r = s * (0.09 + 0.07 * rng.f32());
    let (cx, cy) = match rng.u8(0..4) {
        0 => (rng.f32() * s, s - r * 0.6),
        1 => (rng.f32() * s, r * 0.6),
        2 => (r * 0.6, rng.f32() * s),
        _ => (s - r * 0.6, rng.f32() * s),
    };
    draw_filled_ellipse_mut(img, (cx as i32, cy as i32), r as i32, (r * 1.2) as i32, skin);
    let towards = ((s / 2.0 - cx).atan2(s / 2.0 - cy)) + (rng.f32() - 0.5) * 0.6;
    for f in 0..4 {
        let spread = (f as f32 - 1.5) * 0.28;
        let (dx, dy) = ((towards + spread).sin(), (towards + spread).cos());
        let len = r * (1.3 + 0.3 * rng.f32());
        for t in -3i32..=3 {
            let o = t as f32 * r * 0.05;
            draw_line_segment_mut(
                img,
                (cx + o * dy, cy - o * dx),
                (cx + dx * len + o * dy, cy + dy * len - o * dx),
                skin,
            );
        }
    }
}

fn noise(img: &mut RgbImage, rng: &mut fastrand::Rng) {
    let amp = rng.f32() * 10.0;
    if amp < 1.0 {
        return;
    }
    for p in img.pixels_mut() {
        for c in 0..3 {
            let n = (rng.f32() + rng.f32() - 1.0) * amp;
            p[c] = (p[c] as f32 + n).clamp(0.0, 255.0) as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page() -> RgbImage {
        // A red disc on white: a product page in miniature.
        RgbImage::from_fn(200, 160, |x, y| {
            let d = ((x as f32 - 100.0).powi(2) + (y as f32 - 80.0).powi(2)).sqrt();
            if d < 50.0 { Rgb([200, 30, 30]) } else { Rgb([255, 255, 255]) }
        })
    }

    #[test]
    fn same_seed_same_view_other_seed_other_view() {
        let a = live_view(&page(), &[], &mut fastrand::Rng::with_seed(7));
        let b = live_view(&page(), &[], &mut fastrand::Rng::with_seed(7));
        let c = live_view(&page(), &[], &mut fastrand::Rng::with_seed(8));
        assert_eq!(a.dimensions(), (VIEW_SIDE, VIEW_SIDE));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn backdrop_is_keyed_out_and_product_stays() {
        let cut = cut_out(&page());
        assert_eq!(cut.get_pixel(2, 2)[3], 0, "white border is transparent");
        assert_eq!(cut.get_pixel(100, 80)[3], 255, "the product is opaque");
        // On a dark background the white of the page must not survive: the view is not mostly white.
        let bg = RgbImage::from_pixel(400, 300, Rgb([20, 60, 20]));
        let view = live_view(&page(), &[&bg], &mut fastrand::Rng::with_seed(1));
        let white = view.pixels().filter(|p| p.0.iter().all(|v| *v > 230)).count();
        // Kept for a look (as the dashboard test keeps its screenshots).
        let out = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/tmp");
        if std::fs::create_dir_all(&out).is_ok() {
            let _ = view.save(out.join("synthetic-view.png"));
        }
        assert!(white < (VIEW_SIDE * VIEW_SIDE / 10) as usize, "{white} near-white pixels");
    }
}
