//! One space for the live side and the page side: `[visual | text]`, each part a unit vector (zeros when
//! absent). Gallery vectors keep both parts unweighted; a query scales its parts by the fusion weights, so
//! `query . page = w_v * cos(visual) + w_t * cos(text)` and weights can change without rebuilding galleries.

use super::manifest::FusionWeights;

/// Gallery-side vector.
pub fn page_vector(
    visual: Option<&[f32]>,
    text: Option<&[f32]>,
    vdim: usize,
    tdim: usize,
) -> Vec<f32> {
    fused(
        visual,
        text,
        vdim,
        tdim,
        FusionWeights {
            visual_weight: 1.0,
            text_weight: 1.0,
        },
    )
}

/// Query-side vector.
pub fn query_vector(
    visual: Option<&[f32]>,
    text: Option<&[f32]>,
    vdim: usize,
    tdim: usize,
    w: FusionWeights,
) -> Vec<f32> {
    fused(visual, text, vdim, tdim, w)
}

fn fused(
    visual: Option<&[f32]>,
    text: Option<&[f32]>,
    vdim: usize,
    tdim: usize,
    w: FusionWeights,
) -> Vec<f32> {
    let mut out = vec![0f32; vdim + tdim];
    if let Some(v) = visual {
        out[..vdim]
            .iter_mut()
            .zip(v)
            .for_each(|(o, x)| *o = x * w.visual_weight);
    }
    if let Some(t) = text {
        out[vdim..]
            .iter_mut()
            .zip(t)
            .for_each(|(o, x)| *o = x * w.text_weight);
    }
    out
}
