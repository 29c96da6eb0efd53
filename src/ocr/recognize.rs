//! Text-line recognition (PP-OCR's CRNN-style recogniser with a CTC head): each detected box is cropped,
//! resized to the model's height keeping its aspect ratio, normalised to [-1, 1] and right-padded to the
//! batch's width; the output is a probability per time step and character class, decoded greedily.

use image::RgbImage;
use image::imageops::{FilterType, crop_imm, resize};

/// The recogniser's classes: 0 is the CTC blank, 1..=n the characters of the model's `character` list,
/// n + 1 a space (PaddleOCR's `use_space_char`).
#[derive(Debug, Clone)]
pub struct Dictionary {
    chars: Vec<String>,
}

impl Dictionary {
    /// From the newline-separated character list (the ONNX metadata key `character` of PP-OCR models).
    pub fn from_list(list: &str) -> Self {
        let mut chars = vec![String::new()];
        chars.extend(list.split('\n').map(|c| c.trim_end_matches('\r').to_string()));
        // A list ending with a newline would otherwise add an empty class.
        if chars.len() > 1 && chars.last().is_some_and(|c| c.is_empty()) {
            chars.pop();
        }
        chars.push(" ".to_string());
        Dictionary { chars }
    }

    /// Number of classes, blank and space included: must equal the model's last output dimension.
    pub fn classes(&self) -> usize {
        self.chars.len()
    }
}

/// Greedy CTC: best class per step, repeats collapsed, blanks dropped. Confidence is the mean probability
/// of the emitted characters (0 for an empty line). `probs` is `[steps, classes]`, row-major.
pub fn ctc_greedy(probs: &[f32], classes: usize, dict: &Dictionary) -> (String, f32) {
    let mut text = String::new();
    let (mut sum, mut n) = (0f32, 0usize);
    let mut prev = 0usize;
    for row in probs.chunks_exact(classes.max(1)) {
        let (best, p) =
            row.iter().enumerate().fold((0, f32::MIN), |acc, (i, &p)| if p > acc.1 { (i, p) } else { acc });
        if best != 0 && best != prev {
            if let Some(c) = dict.chars.get(best) {
                text.push_str(c);
                sum += p;
                n += 1;
            }
        }
        prev = best;
    }
    let conf = if n == 0 { 0.0 } else { sum / n as f32 };
    (text.trim().to_string(), conf)
}

/// Width a crop of `w` x `h` gets at model height `height`, at least 1 and at most `max_width`.
pub fn crop_width(w: u32, h: u32, height: u32, max_width: u32) -> u32 {
    ((w as f32 * height as f32 / h.max(1) as f32).ceil() as u32).clamp(1, max_width)
}

/// The crop of `bbox` (pixels x0, y0, x1, y1) resized to `height` x `width`, as B, G, R planes in [-1, 1]
/// (PaddleOCR's recogniser normalisation), written into `out` whose rows are `stride` wide (padding stays
/// as the caller filled it).
pub fn write_crop(img: &RgbImage, bbox: [u32; 4], height: u32, width: u32, stride: usize, out: &mut [f32]) {
    let [x0, y0, x1, y1] = bbox;
    let crop = crop_imm(img, x0, y0, (x1 - x0).max(1), (y1 - y0).max(1)).to_image();
    let line = resize(&crop, width, height, FilterType::Triangle);
    let plane = height as usize * stride;
    for (x, y, px) in line.enumerate_pixels() {
        for c in 0..3 {
            out[c * plane + y as usize * stride + x as usize] = px.0[2 - c] as f32 / 127.5 - 1.0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dict() -> Dictionary {
        Dictionary::from_list("a\nb\nc\n")
    }

    /// One-hot-ish rows for a class sequence over 5 classes (blank, a, b, c, space).
    fn rows(seq: &[usize], p: f32) -> Vec<f32> {
        seq.iter().flat_map(|&k| (0..5).map(move |i| if i == k { p } else { (1.0 - p) / 4.0 })).collect()
    }

    #[test]
    fn dictionary_has_blank_and_space() {
        let d = dict();
        assert_eq!(d.classes(), 5);
        assert_eq!(d.chars[4], " ");
    }

    #[test]
    fn repeats_collapse_and_blanks_separate() {
        // a a _ a b b _ _ c  ->  "aabc"
        let (text, conf) = ctc_greedy(&rows(&[1, 1, 0, 1, 2, 2, 0, 0, 3], 0.9), 5, &dict());
        assert_eq!(text, "aabc");
        assert!((conf - 0.9).abs() < 1e-6);
    }

    #[test]
    fn space_class_and_trimming() {
        let (text, _) = ctc_greedy(&rows(&[4, 1, 4, 0, 2, 4], 0.8), 5, &dict());
        assert_eq!(text, "a b");
    }

    #[test]
    fn all_blank_is_empty_with_zero_confidence() {
        assert_eq!(ctc_greedy(&rows(&[0, 0, 0], 0.99), 5, &dict()), (String::new(), 0.0));
    }

    #[test]
    fn crop_width_keeps_aspect_within_bounds() {
        assert_eq!(crop_width(200, 50, 48, 1280), 192);
        assert_eq!(crop_width(10_000, 10, 48, 1280), 1280);
        assert_eq!(crop_width(1, 500, 48, 1280), 1);
    }
}
