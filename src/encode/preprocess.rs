//! Pixels to the visual tower's input: resize/crop/letterbox with `fast_image_resize` into a reused RGB
//! scratch image, then normalise straight into one image slot of the NCHW batch buffer.

use fast_image_resize::images::{Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::RgbImage;

use super::manifest::{ResizePolicy, VisualSpec};

#[derive(Debug, thiserror::Error)]
pub enum PreprocessError {
    #[error("empty image ({0}x{1})")]
    Empty(u32, u32),
    #[error("resize failed: {0}")]
    Resize(String),
}

pub struct Preprocessor {
    width: u32,
    height: u32,
    policy: ResizePolicy,
    pad: [u8; 3],
    /// Per channel: u8 value -> normalised f32 ((v/255 - mean) / std), so normalising is one lookup.
    lut: [[f32; 256]; 3],
    resizer: Resizer,
    scratch: Vec<u8>,
    /// Letterbox only: the scaled image before padding.
    inner: Vec<u8>,
}

impl Preprocessor {
    pub fn new(spec: &VisualSpec) -> Self {
        let mut lut = [[0f32; 256]; 3];
        for (c, table) in lut.iter_mut().enumerate() {
            for (v, out) in table.iter_mut().enumerate() {
                *out = (v as f32 / 255.0 - spec.mean[c]) / spec.std[c];
            }
        }
        let [height, width] = spec.size;
        Preprocessor {
            width,
            height,
            policy: spec.resize,
            pad: spec.pad_rgb,
            lut,
            resizer: Resizer::new(),
            scratch: vec![0; (width * height * 3) as usize],
            inner: Vec::new(),
        }
    }

    /// Floats per image: 3 * H * W.
    pub fn slot_len(&self) -> usize {
        (3 * self.width * self.height) as usize
    }

    /// Writes `img` as a normalised CHW image into `slot` (length [`Self::slot_len`]).
    pub fn write(&mut self, img: &RgbImage, slot: &mut [f32]) -> Result<(), PreprocessError> {
        debug_assert_eq!(slot.len(), self.slot_len());
        let (w, h) = img.dimensions();
        if w == 0 || h == 0 {
            return Err(PreprocessError::Empty(w, h));
        }
        // Ingest already scales keyframes to the input size: then there is nothing to resize.
        let pixels: &[u8] = if (w, h) == (self.width, self.height) {
            img.as_raw()
        } else {
            self.resize(img)?;
            &self.scratch
        };
        let plane = (self.width * self.height) as usize;
        let (r, rest) = slot.split_at_mut(plane);
        let (g, b) = rest.split_at_mut(plane);
        for (i, px) in pixels.chunks_exact(3).enumerate() {
            r[i] = self.lut[0][px[0] as usize];
            g[i] = self.lut[1][px[1] as usize];
            b[i] = self.lut[2][px[2] as usize];
        }
        Ok(())
    }

    fn resize(&mut self, img: &RgbImage) -> Result<(), PreprocessError> {
        let (w, h) = img.dimensions();
        let src = ImageRef::new(w, h, img.as_raw(), PixelType::U8x3)
            .map_err(|e| PreprocessError::Resize(e.to_string()))?;
        let alg = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
        let (tw, th) = (self.width as f64, self.height as f64);
        let (sw, sh) = (w as f64, h as f64);
        let err = |e: fast_image_resize::ResizeError| PreprocessError::Resize(e.to_string());
        match self.policy {
            ResizePolicy::Stretch | ResizePolicy::Crop => {
                let opts = if self.policy == ResizePolicy::Crop {
                    // The source window with the target's aspect ratio, centred.
                    let scale = (tw / sw).max(th / sh);
                    let (cw, ch) = (tw / scale, th / scale);
                    alg.crop((sw - cw) / 2.0, (sh - ch) / 2.0, cw, ch)
                } else {
                    alg
                };
                let mut dst = Image::from_slice_u8(self.width, self.height, &mut self.scratch, PixelType::U8x3)
                    .map_err(|e| PreprocessError::Resize(e.to_string()))?;
                self.resizer.resize(&src, &mut dst, &opts).map_err(err)?;
            }
            ResizePolicy::Letterbox => {
                let scale = (tw / sw).min(th / sh);
                let nw = ((sw * scale).round() as u32).clamp(1, self.width);
                let nh = ((sh * scale).round() as u32).clamp(1, self.height);
                self.inner.resize((nw * nh * 3) as usize, 0);
                let mut dst = Image::from_slice_u8(nw, nh, &mut self.inner, PixelType::U8x3)
                    .map_err(|e| PreprocessError::Resize(e.to_string()))?;
                self.resizer.resize(&src, &mut dst, &alg).map_err(err)?;
                for px in self.scratch.chunks_exact_mut(3) {
                    px.copy_from_slice(&self.pad);
                }
                let (x0, y0) = ((self.width - nw) / 2, (self.height - nh) / 2);
                let row = (nw * 3) as usize;
                for y in 0..nh {
                    let d = (((y0 + y) * self.width + x0) * 3) as usize;
                    let s = (y * nw * 3) as usize;
                    self.scratch[d..d + row].copy_from_slice(&self.inner[s..s + row]);
                }
            }
        }
        Ok(())
    }
}
