//! Token pooling and normalisation of tower outputs.

use super::manifest::{TextPooling, VisualPooling};

/// Scales `v` to unit length (left as is when it is all zeros).
pub fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

/// Pools one item's visual output (`tokens` x `dim`, row-major) into a unit vector.
pub fn pool_visual(data: &[f32], tokens: usize, dim: usize, pooling: VisualPooling) -> Vec<f32> {
    let row = |t: usize| &data[t * dim..(t + 1) * dim];
    let mean_patch = || {
        let mut m = vec![0f32; dim];
        for t in 1..tokens {
            m.iter_mut().zip(row(t)).for_each(|(a, b)| *a += b);
        }
        m
    };
    let mut out = match pooling {
        VisualPooling::None | VisualPooling::Cls => row(0).to_vec(),
        VisualPooling::MeanPatch => mean_patch(),
        VisualPooling::ClsMean => {
            let mut cls = row(0).to_vec();
            let mut mean = mean_patch();
            l2_normalize(&mut cls);
            l2_normalize(&mut mean);
            cls.iter_mut().zip(&mean).for_each(|(a, b)| *a += b);
            cls
        }
    };
    l2_normalize(&mut out);
    out
}

/// Pools one item's text output (`tokens` x `dim`) with its attention mask into a unit vector.
pub fn pool_text(
    data: &[f32],
    tokens: usize,
    dim: usize,
    mask: &[i64],
    pooling: TextPooling,
) -> Vec<f32> {
    let mut out = match pooling {
        TextPooling::None | TextPooling::Cls => data[..dim].to_vec(),
        TextPooling::Mean => {
            let mut m = vec![0f32; dim];
            for t in (0..tokens).filter(|t| mask.get(*t).copied().unwrap_or(0) != 0) {
                m.iter_mut()
                    .zip(&data[t * dim..(t + 1) * dim])
                    .for_each(|(a, b)| *a += b);
            }
            m
        }
    };
    l2_normalize(&mut out);
    out
}

/// Mean of unit vectors, renormalised: the embedding of several views of one thing.
pub fn mean_of_units(vectors: &[Vec<f32>], dim: usize) -> Vec<f32> {
    let mut m = vec![0f32; dim];
    for v in vectors {
        m.iter_mut().zip(v).for_each(|(a, b)| *a += b);
    }
    l2_normalize(&mut m);
    m
}
