//! `livesku quantize` on the default model: the int8 variant's embeddings of real photos stay within the
//! cosine that models/README.md states (0.98) of float32, it gets its own version so float32 galleries are
//! refused (unless `--keep-version` shares it on purpose), it is deterministic, and it still recognises the
//! demo products. Real models throughout.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::run_livesku;
use common::scene::{demo_dir, demo_gallery};
use image::{RgbImage, imageops};
use livesku::encode::{Encoder, EncoderConfig, Side};

/// The cosine models/README.md promises between an int8 and a float32 embedding of a real picture.
const STATED_COSINE: f32 = 0.98;

fn s(p: &Path) -> String {
    p.display().to_string()
}

fn quantize(out: &Path, extra: &[&str]) -> common::Run {
    let mut args = vec!["quantize", "--out", out.to_str().unwrap(), "--threads", "2"];
    args.extend_from_slice(extra);
    run_livesku(&args, Duration::from_secs(180))
}

/// The demo's photos, whole and as crops and rescales (the sizes a keyframe and its regions come at).
fn real_views() -> Vec<RgbImage> {
    let mut views = Vec::new();
    for name in ["coffee.png", "rocket.jpg", "chelsea.png", "motorcycle_left.png"] {
        let img = image::open(demo_dir().join(name)).unwrap().to_rgb8();
        let (w, h) = img.dimensions();
        views.push(imageops::crop_imm(&img, w / 8, h / 8, w / 2, h / 2).to_image());
        views.push(imageops::crop_imm(&img, w / 3, h / 4, w / 2, h * 2 / 3).to_image());
        views.push(imageops::resize(&img, 160, 120, imageops::FilterType::Triangle));
        views.push(img);
    }
    views
}

fn embed(model: &Path, views: &[RgbImage]) -> Vec<Vec<f32>> {
    let cfg = EncoderConfig { model_dir: Some(model.to_path_buf()), intra_threads: 2, ..Default::default() };
    let mut enc = Encoder::open(&cfg).unwrap();
    let clips: Vec<[&RgbImage; 1]> = views.iter().map(|v| [v]).collect();
    let clips: Vec<&[&RgbImage]> = clips.iter().map(|c| c.as_slice()).collect();
    enc.encode(&clips, &vec![None; views.len()], Side::Page).unwrap()
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>() / (norm(a) * norm(b))
}

#[test]
fn int8_variant_stays_close_gets_its_own_version_and_recognises() {
    let dir = tempfile::tempdir().unwrap();
    let int8 = dir.path().join("int8");
    let run = quantize(&int8, &[]);
    assert!(run.success, "{}", run.stderr);
    let version = run.lines[0]["version"].as_str().unwrap().to_string();
    let fp32 = livesku::paths::model_dir("default");
    let base = livesku::encode::Manifest::load(&fp32).unwrap();
    assert!(version.starts_with(&format!("{}+int8-", base.version)), "{version}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(int8.join("quantization.json")).unwrap()).unwrap();
    assert!(report["check"]["cosine_min"].as_f64().unwrap() >= f64::from(STATED_COSINE), "{report}");
    // The tower really is int8: about a quarter of the float32 file.
    let size = |p: PathBuf| std::fs::metadata(p).unwrap().len();
    let (q, f) = (size(int8.join("visual.int8.onnx")), size(fp32.join(&base.visual.file)));
    assert!(q * 3 < f, "int8 tower {q} bytes against {f}");

    // Independent of the command's own check: views the check never saw.
    let views = real_views();
    let (a, b) = (embed(&fp32, &views), embed(&int8, &views));
    let cosines: Vec<f32> = a.iter().zip(&b).map(|(a, b)| cosine(a, b)).collect();
    let min = cosines.iter().copied().fold(f32::INFINITY, f32::min);
    eprintln!("int8 vs float32 cosine on {} real views: min {min:.4}", cosines.len());
    assert!(min >= STATED_COSINE, "{cosines:?}");

    // A float32 gallery is refused by the int8 model, naming both versions...
    let gallery = demo_gallery(dir.path());
    let queries = dir.path().join("queries.jsonl");
    // Each demo product queried with its own page photo.
    let catalog = demo_dir().join("catalog.jsonl");
    let lines: Vec<String> = std::fs::read_to_string(&catalog)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|p| serde_json::json!({"product_id": p["product_id"], "images": [s(&demo_dir().join(p["images"][0].as_str().unwrap()))]}).to_string())
        .collect();
    std::fs::write(&queries, lines.join("\n") + "\n").unwrap();
    // (R@1, stderr) of `livesku eval`; its last stdout line is the JSON summary.
    let eval = |model: &Path, gallery: &str| {
        let out = common::livesku()
            .args(["eval", "--model", &s(model), "--gallery", gallery, "--queries", &s(&queries)])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let r1 = stdout.lines().last().and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok()).and_then(|v| v["r1"].as_f64());
        (out.status.success().then_some(r1).flatten(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (r1, stderr) = eval(&int8, &gallery);
    assert!(r1.is_none() && stderr.contains(&version) && stderr.contains(&base.version), "{stderr}");

    // ...and a gallery built with the variant recognises every demo product from its photo.
    let g8 = dir.path().join("g8");
    let build = run_livesku(&["gallery", "build", "--model", &s(&int8), "--catalog", &s(&catalog), "--out", &s(&g8)], Duration::from_secs(120));
    assert!(build.success, "{}", build.stderr);
    let (r1, stderr) = eval(&int8, &s(&g8));
    assert_eq!(r1, Some(1.0), "{stderr}");

    // Same source, same bytes: the version is reproducible.
    let again = quantize(&dir.path().join("int8-again"), &[]);
    assert_eq!(again.lines[0]["version"], version.as_str());

    // Sharing the source's version on purpose: the float32 gallery is accepted.
    let shared = dir.path().join("int8-shared");
    let run = quantize(&shared, &["--keep-version"]);
    assert!(run.success, "{}", run.stderr);
    assert_eq!(run.lines[0]["version"], base.version.as_str());
    let (r1, stderr) = eval(&shared, &gallery);
    assert_eq!(r1, Some(1.0), "{stderr}");

    // A model directory is never overwritten (not even the source's).
    let over = quantize(&int8, &[]);
    assert!(!over.success && over.stderr.contains("already holds a model"), "{}", over.stderr);

    // An int8 model is not quantised again.
    let twice = run_livesku(&["quantize", "--model", &s(&int8), "--out", &s(&dir.path().join("x"))], Duration::from_secs(60));
    assert!(!twice.success && twice.stderr.contains("already an int8 model"), "{}", twice.stderr);
}
