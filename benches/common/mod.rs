//! Generated gallery data shared by the search benches: clustered unit vectors standing in for product
//! embeddings, and queries that are noisy views of gallery rows.
#![allow(dead_code)]

pub const DIM: usize = 384;

pub fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

pub struct Rng(u64);
impl Rng {
    pub fn f(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32 - 0.5
    }
}

pub fn normalise(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= n);
}

/// n unit vectors. `LIVESKU_BENCH_DATA=latent` (default): clusters in a 32-dimensional latent space mapped
/// to 384 dimensions by a fixed random matrix plus a little noise: low intrinsic dimension, like real
/// embeddings. `iso`: n/100 random centres with isotropic 384-dimensional noise, a worst case for graphs.
pub fn gallery(n: usize, seed: u64) -> Vec<f32> {
    if std::env::var("LIVESKU_BENCH_DATA").as_deref() == Ok("iso") {
        return gallery_iso(n, seed);
    }
    const LATENT: usize = 32;
    let mut rng = Rng(seed | 1);
    let proj: Vec<f32> = (0..DIM * LATENT).map(|_| rng.f()).collect();
    let clusters = (n / 100).max(1);
    let centres: Vec<f32> = (0..clusters * LATENT).map(|_| 2.0 * rng.f()).collect();
    let mut out = vec![0f32; n * DIM];
    let mut z = [0f32; LATENT];
    for (i, v) in out.chunks_exact_mut(DIM).enumerate() {
        let c = &centres[(i % clusters) * LATENT..(i % clusters + 1) * LATENT];
        z.iter_mut().zip(c).for_each(|(z, c)| *z = c + 0.5 * rng.f());
        for (d, x) in v.iter_mut().enumerate() {
            *x = proj[d * LATENT..(d + 1) * LATENT].iter().zip(&z).map(|(p, z)| p * z).sum::<f32>() + 0.02 * rng.f();
        }
        normalise(v);
    }
    out
}

/// `LIVESKU_BENCH_ISO_PER` (100) products per centre: fewer makes a small gallery as hard as a large one
/// (the number of centres is what the graph struggles with).
pub fn gallery_iso(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng(seed | 1);
    let clusters = (n / env("LIVESKU_BENCH_ISO_PER", 100).max(1)).max(1);
    let mut centres = vec![0f32; clusters * DIM];
    centres.chunks_exact_mut(DIM).for_each(|c| {
        c.iter_mut().for_each(|x| *x = rng.f());
        normalise(c);
    });
    let mut out = vec![0f32; n * DIM];
    for (i, v) in out.chunks_exact_mut(DIM).enumerate() {
        let c = &centres[(i % clusters) * DIM..(i % clusters + 1) * DIM];
        v.iter_mut().zip(c).for_each(|(x, c)| *x = c + 0.1 * rng.f());
        normalise(v);
    }
    out
}

/// Queries: noisy views of random gallery rows.
pub fn queries(g: &[f32], m: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng(seed | 1);
    let n = g.len() / DIM;
    let mut out = vec![0f32; m * DIM];
    for (i, q) in out.chunks_exact_mut(DIM).enumerate() {
        let r = (i * 7_919 + 13) % n;
        q.iter_mut().zip(&g[r * DIM..(r + 1) * DIM]).for_each(|(x, g)| *x = g + 0.03 * rng.f());
        normalise(q);
    }
    out
}
