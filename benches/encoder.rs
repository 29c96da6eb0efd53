//! Encoder stage throughput against the bare ONNX Runtime session, batch sizes 1..64, in one run.
//!
//!     cargo bench --bench encoder            # needs scripts/setup.sh
//!     LIVESKU_BENCH_IMAGES=128 cargo bench --bench encoder   # images per measurement (default 64)
//!
//! bare:  `VisualEncoder::run_tensor` on a prepared NCHW tensor (ORT only).
//! stage: 4 streams submit 320x240 keyframes to the shared `Batcher` (max_batch = B): resize/crop and
//!        normalisation into the reused batch buffer, batching, ORT, pooling, fan-out of results.

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant, SystemTime};

use image::RgbImage;
use livesku::encode::{Batcher, BatcherConfig, EncodedMsg, Encoder, EncoderConfig};
use livesku::messages::Flow;
use livesku::messages::Keyframe;

fn picture(seed: u32, w: u32, h: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 7 + seed) as u8, (y * 3 + seed * 5) as u8, ((x ^ y) + seed) as u8]))
}

fn main() {
    let images: usize = std::env::var("LIVESKU_BENCH_IMAGES").ok().and_then(|v| v.parse().ok()).unwrap_or(64);
    let threads: usize = std::env::var("LIVESKU_BENCH_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    let cfg = EncoderConfig { intra_threads: threads, ..EncoderConfig::default() };
    let lib = livesku::paths::ort_dylib();
    assert!(lib.is_file() && cfg.model_dir().join("manifest.toml").is_file(), "run scripts/setup.sh first (ONNX Runtime and models)");
    let mut bare = Encoder::open(&cfg).expect("open encoder");
    let item = bare.visual.item_len();
    let tensor: Vec<f32> = (0..item * 64).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
    println!("encoder stage vs bare ORT: {images} images per measurement, intra threads {}", if threads == 0 { "auto".into() } else { threads.to_string() });
    println!("{:>5} {:>12} {:>12} {:>7} {:>14} {:>14}", "batch", "bare img/s", "stage img/s", "ratio", "mean batch", "mean wait ms");
    let mut best = (0.0f64, 0.0f64, 0usize);
    for bs in [1usize, 2, 4, 8, 16, 32, 64] {
        let runs = images.div_ceil(bs).max(1);
        bare.visual.run_tensor(&tensor[..bs * item], bs).expect("warm-up");
        let t = Instant::now();
        for _ in 0..runs {
            std::hint::black_box(bare.visual.run_tensor(&tensor[..bs * item], bs).expect("bare run"));
        }
        let bare_ips = (runs * bs) as f64 / t.elapsed().as_secs_f64();

        let enc = Encoder::open(&cfg).expect("open encoder");
        let bcfg = BatcherConfig { max_batch: bs, max_wait: Duration::from_millis(200), queue_per_stream: 64, output_capacity: 256 };
        let (batcher, out) = Batcher::start(enc, bcfg, None, &Default::default()).expect("start batcher");
        let total = runs * bs;
        let streams = 4;
        let frames: Vec<RgbImage> = (0..streams).map(|s| picture(s as u32, 320, 240)).collect();
        // Warm-up batch at this size (first run of a shape allocates).
        let warm = batcher.stream("warm".into()).expect("stream");
        for i in 0..bs {
            warm.send(req("warm", i as u64, frames[0].clone())).expect("send");
        }
        drop(warm);
        for _ in 0..bs {
            next_embedding(&out);
        }
        let metrics = batcher.metrics();
        let (b0, f0, w0) = (metrics.batches.load(Relaxed), metrics.frames.load(Relaxed), metrics.wait_us_total.load(Relaxed));
        let t = Instant::now();
        let producers: Vec<_> = (0..streams)
            .map(|s| {
                let tx = batcher.stream(format!("s{s}").into()).expect("stream");
                let img = frames[s].clone();
                let n = total / streams + usize::from(s < total % streams);
                std::thread::spawn(move || {
                    for seq in 0..n {
                        tx.send(req(&format!("s{s}"), seq as u64, img.clone())).expect("send");
                    }
                })
            })
            .collect();
        for _ in 0..total {
            next_embedding(&out);
        }
        let stage_ips = total as f64 / t.elapsed().as_secs_f64();
        for p in producers {
            p.join().expect("producer");
        }
        let batches = metrics.batches.load(Relaxed) - b0;
        let frames_run = metrics.frames.load(Relaxed) - f0;
        let wait_ms = (metrics.wait_us_total.load(Relaxed) - w0) as f64 / 1000.0 / frames_run.max(1) as f64;
        batcher.finish();
        let ratio = stage_ips / bare_ips;
        println!(
            "{bs:>5} {bare_ips:>12.2} {stage_ips:>12.2} {ratio:>7.3} {:>14.2} {:>14.1}",
            total as f64 / batches.max(1) as f64,
            wait_ms
        );
        if bare_ips > best.0 {
            best = (bare_ips, stage_ips, bs);
        }
    }
    let (b, s, bs) = best;
    println!("best bare batch size {bs}: bare {b:.2} img/s, stage {s:.2} img/s, ratio {:.3} (target >= 0.9)", s / b);
}

fn req(stream: &str, seq: u64, image: RgbImage) -> Keyframe {
    Keyframe { stream_id: stream.into(), generation: 0, seq, pts_ms: seq * 1000, captured_at: SystemTime::now(), image, phash: 0 }
}

/// The next embedding, past any stream's end marker.
fn next_embedding(out: &crossbeam_channel::Receiver<EncodedMsg>) {
    loop {
        if let Flow::Item(_) = out.recv().expect("result") {
            return;
        }
    }
}
