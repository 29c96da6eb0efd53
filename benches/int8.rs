//! int8 visual tower against its float32 source, alternating in one run (the machine's noise hits both).
//!
//!     cargo bench --bench int8                      # default model; needs scripts/setup.sh
//!     LIVESKU_MODEL_DIR=DIR cargo bench --bench int8    # e.g. a trained model
//!     LIVESKU_BENCH_ROUNDS=10 LIVESKU_BENCH_BATCH=8 LIVESKU_BENCH_THREADS=2 cargo bench --bench int8
//!
//! The variant is made with `livesku quantize`'s code into a temporary directory. Each round encodes the
//! same batch of real photos (the demo's, at keyframe size) with both models through `Encoder::encode`
//! (pre-processing, tower, head, pooling); rounds alternate which model goes first.

use std::time::Instant;

use image::{RgbImage, imageops};
use livesku::encode::{Encoder, EncoderConfig, Side};
use livesku::train::quantize::{QuantizeSettings, quantize};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let (rounds, batch, threads) = (env("LIVESKU_BENCH_ROUNDS", 10), env("LIVESKU_BENCH_BATCH", 8), env("LIVESKU_BENCH_THREADS", 2));
    let model = std::env::var_os("LIVESKU_MODEL_DIR").map(Into::into).unwrap_or_else(|| livesku::paths::model_dir("default"));
    let demo = livesku::paths::cache_dir().join("demo");
    let photos: Vec<_> = ["coffee.png", "rocket.jpg", "chelsea.png", "motorcycle_left.png"].iter().map(|n| demo.join(n)).collect();
    assert!(photos.iter().all(|p| p.is_file()), "run scripts/setup.sh first (demo photos, models)");
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("int8");
    let q = quantize(&QuantizeSettings {
        model: model.clone(),
        out: out.clone(),
        python: livesku::paths::venv_python(),
        images: photos.clone(),
        min_cosine: 0.98,
        keep_version: false,
        threads,
    })
    .expect("quantize");
    let frames: Vec<RgbImage> = (0..batch)
        .map(|i| {
            let img = image::open(&photos[i % photos.len()]).expect("photo").to_rgb8();
            imageops::resize(&img, 640, 360, imageops::FilterType::Triangle)
        })
        .collect();
    let open = |dir: &std::path::Path| {
        Encoder::open(&EncoderConfig { model_dir: Some(dir.to_path_buf()), intra_threads: threads, ..Default::default() }).expect("open")
    };
    let mut models = [("float32", open(&model)), ("int8", open(&out))];
    let clips: Vec<[&RgbImage; 1]> = frames.iter().map(|f| [f]).collect();
    let clips: Vec<&[&RgbImage]> = clips.iter().map(|c| c.as_slice()).collect();
    let none = vec![None; batch];
    for (_, enc) in models.iter_mut() {
        enc.encode(&clips, &none, Side::Query).expect("warm-up");
    }
    let mut secs = [0f64; 2];
    for round in 0..rounds {
        for k in [round % 2, 1 - round % 2] {
            let t = Instant::now();
            std::hint::black_box(models[k].1.encode(&clips, &none, Side::Query).expect("encode"));
            secs[k] += t.elapsed().as_secs_f64();
        }
    }
    let images = (rounds * batch) as f64;
    println!("int8 vs float32 visual tower: {} ({}), {rounds} rounds of batch {batch}, {threads} intra threads", model.display(), q.manifest.version);
    println!("  check cosine to float32: min {:.4} mean {:.4} on {} photos", q.cosine_min, q.cosine_mean, q.images);
    for (k, (name, _)) in models.iter().enumerate() {
        println!("  {name:<8} {:>7.2} img/s", images / secs[k]);
    }
    println!("  int8 / float32 images/s: {:.2}x", secs[0] / secs[1]);
}
