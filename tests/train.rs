//! `livesku train` on a small generated set: four products (the demo's photos) whose live examples show
//! the product small, on top of another product's photo (the untrained tower then matches the backdrop).
//! Training must raise held-out recall above the base model's, be deterministic for a seed, write a model
//! that loads, matches Python onnxruntime, and refuses galleries of the base model; bad lines are reported.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::run_livesku;
use common::scene::demo_dir;
use image::{Rgb, RgbImage, imageops};
use serde_json::{Value, json};

const PRODUCTS: [(&str, &str); 4] = [
    ("sku-espresso-set", "coffee.png"),
    ("sku-rocket-model", "rocket.jpg"),
    ("sku-cat-plush", "chelsea.png"),
    ("sku-motorbike-model", "motorcycle_left.png"),
];

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    catalog: String,
    examples: String,
    val: String,
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// Product `k`'s photo at 45-60 % of the frame, somewhere on a colour-shifted photo of product `j != k`.
fn live_example(photos: &[RgbImage], k: usize, n: u64) -> RgbImage {
    let mut rng = fastrand::Rng::with_seed(n * 31 + k as u64);
    let j = (k + 1 + rng.usize(..photos.len() - 1)) % photos.len();
    let mut frame = imageops::resize(&photos[j], 320, 240, imageops::FilterType::Triangle);
    let tint: [f32; 3] = std::array::from_fn(|_| 0.7 + 0.5 * rng.f32());
    frame.pixels_mut().for_each(|p| *p = Rgb(std::array::from_fn(|c| (p[c] as f32 * tint[c]).min(255.0) as u8)));
    let side = (240.0 * (0.45 + 0.15 * rng.f32())) as u32;
    let (w, h) = photos[k].dimensions();
    let (pw, ph) = if w > h { (side, side * h / w) } else { (side * w / h, side) };
    let product = imageops::resize(&photos[k], pw, ph, imageops::FilterType::Triangle);
    imageops::overlay(&mut frame, &product, rng.u32(0..=320 - pw) as i64, rng.u32(0..=240 - ph) as i64);
    frame
}

fn fixture(train_per_product: u64, val_per_product: u64) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let demo = demo_dir();
    let photos = fixture_photos();
    let catalog: String = PRODUCTS
        .iter()
        .map(|(id, f)| json!({"product_id": id, "title": id, "images": [s(&demo.join(f))]}).to_string() + "\n")
        .collect();
    std::fs::write(root.join("catalog.jsonl"), catalog).unwrap();
    let write_split = |name: &str, from: u64, count: u64| {
        let mut lines = String::new();
        for (k, (id, _)) in PRODUCTS.iter().enumerate() {
            for n in from..from + count {
                let path = root.join(format!("{name}-{k}-{n}.png"));
                live_example(&photos, k, n).save(&path).unwrap();
                lines += &(json!({"images": [s(&path)], "product_id": id}).to_string() + "\n");
            }
        }
        let file = root.join(format!("{name}.jsonl"));
        std::fs::write(&file, lines).unwrap();
        s(&file)
    };
    let examples = write_split("examples", 0, train_per_product);
    let val = write_split("val", 1000, val_per_product);
    Fixture { catalog: s(&root.join("catalog.jsonl")), examples, val, root, _dir: dir }
}

fn train(f: &Fixture, out: &str, seed: &str) -> Value {
    let cache = s(&f.root.join("cache"));
    let run = run_livesku(
        &[
            "train", "--catalog", &f.catalog, "--examples", &f.examples, "--val", &f.val, "--out", out, "--seed", seed,
            "--synthetic-views", "2", "--epochs", "200", "--cache", &cache,
        ],
        Duration::from_secs(600),
    );
    assert!(run.success, "train failed:\n{}", run.stderr);
    run.lines.last().cloned().expect("a summary line")
}

/// Builds a gallery of the catalogue with `model` and returns eval's R@1 on the validation queries.
fn recall_at_1(f: &Fixture, model: Option<&str>, gallery: &str) -> f64 {
    let with_model = |mut args: Vec<String>| {
        if let Some(m) = model {
            args.extend(["--model".to_string(), m.to_string()]);
        }
        args
    };
    let build = with_model(vec!["gallery".into(), "build".into(), "--catalog".into(), f.catalog.clone(), "--out".into(), gallery.into()]);
    let run = run_livesku(&build.iter().map(String::as_str).collect::<Vec<_>>(), Duration::from_secs(120));
    assert!(run.success, "{}", run.stderr);
    // eval prints a readable line before its JSON one.
    let eval = with_model(vec!["eval".into(), "--gallery".into(), gallery.into(), "--queries".into(), f.val.clone()]);
    let out = common::livesku().args(&eval).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    last["r1"].as_f64().unwrap()
}

#[test]
fn training_raises_recall_is_deterministic_and_writes_a_loadable_model() {
    let f = fixture(24, 8);
    let out_a = s(&f.root.join("model-a"));
    let summary = train(&f, &out_a, "7");
    let version = summary["version"].as_str().unwrap().to_string();
    let base = livesku::encode::Manifest::load(&livesku::paths::model_dir("default")).unwrap();
    assert!(version.starts_with(&format!("{}+cope-", base.version)), "{version}");

    // The written model loads; its report has the settings, per-epoch loss and both recalls.
    let trained = livesku::encode::Manifest::load(Path::new(&out_a)).expect("trained model loads");
    assert_eq!(trained.version, version);
    assert!(trained.visual.head.is_some());
    let report: Value = serde_json::from_str(&std::fs::read_to_string(f.root.join("model-a/training.json")).unwrap()).unwrap();
    assert_eq!(report["history"].as_array().unwrap().len(), 200);
    assert_eq!(report["params"]["seed"], 7);
    assert!(report["export_max_abs_diff"].as_f64().unwrap() < 1e-4);
    // The tracker thresholds calibrated on the val rows travel in the manifest, on the head's own scale.
    let cal = &report["calibration"];
    let track = trained.track.expect("a [track] calibration in the trained manifest");
    assert!((track.enter_threshold as f64 - cal["enter_threshold"].as_f64().unwrap()).abs() < 1e-6, "{track:?} vs {cal}");
    assert!(cal["precision"].as_f64().unwrap() >= 0.95 && cal["absent_accepted"].as_f64().unwrap() <= 0.1, "{cal}");
    assert!(track.exit_threshold <= track.enter_threshold && track.min_margin >= 0.0, "{track:?}");

    // Held-out recall through the real runtime (gallery build + eval), base model against trained.
    let base_r1 = recall_at_1(&f, None, &s(&f.root.join("gallery-base")));
    let trained_r1 = recall_at_1(&f, Some(&out_a), &s(&f.root.join("gallery-trained")));
    eprintln!("held-out R@1: base {base_r1:.3}, trained {trained_r1:.3}");
    assert!(trained_r1 >= 0.8 && trained_r1 >= base_r1 + 0.3, "trained {trained_r1} vs base {base_r1}");
    assert_eq!(
        report["eval"]["trained"]["val"]["r1"].as_f64().unwrap(),
        trained_r1,
        "the recipe's own figure is what the runtime measures"
    );

    // A gallery of the base model is refused with the trained one.
    let out = common::livesku()
        .args(["eval", "--gallery", &s(&f.root.join("gallery-base")), "--queries", &f.val, "--model", &out_a])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains(&version), "{stderr}");

    // Same seed: same weights, same version (features come from the cache the second time).
    let out_b = s(&f.root.join("model-b"));
    assert_eq!(train(&f, &out_b, "7")["version"], version.as_str());
    let report_b: Value = serde_json::from_str(&std::fs::read_to_string(f.root.join("model-b/training.json")).unwrap()).unwrap();
    assert_eq!(report_b["livesku"]["feature_cache"]["computed"], 0, "{}", report_b["livesku"]);
    // Another seed: other weights.
    assert_ne!(train(&f, &s(&f.root.join("model-c")), "8")["version"], version.as_str());

    // The trained encoder against an independent reference: Python onnxruntime, tower then head.
    let cfg = livesku::encode::EncoderConfig { model_dir: Some(PathBuf::from(&out_a)), intra_threads: 2, ..Default::default() };
    let mut enc = livesku::encode::Encoder::open(&cfg).unwrap();
    let spec = enc.manifest.visual.clone();
    let photos = fixture_photos();
    let pics = [live_example(&photos, 0, 5000), live_example(&photos, 2, 5001)];
    let mut pre = livesku::encode::preprocess::Preprocessor::new(&spec);
    let mut tensor = vec![0f32; pre.slot_len() * pics.len()];
    for (img, slot) in pics.iter().zip(tensor.chunks_exact_mut(pre.slot_len())) {
        pre.write(img, slot).unwrap();
    }
    let rust = enc.visual.run_tensor(&tensor, pics.len()).unwrap();
    let work = f.root.join("ref");
    std::fs::create_dir_all(&work).unwrap();
    std::fs::write(work.join("visual_in.f32"), tensor.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
    let [h, w] = spec.size;
    std::fs::write(work.join("request.json"), json!({"visual": {"file": "visual_in.f32", "shape": [pics.len(), 3, h, w]}}).to_string())
        .unwrap();
    let status = std::process::Command::new(livesku::paths::venv_python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/reference/encoder_ref.py"))
        .arg(&out_a)
        .arg(&work)
        .status()
        .unwrap();
    assert!(status.success());
    let py: Vec<f32> =
        std::fs::read(work.join("visual_out.f32")).unwrap().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    for (i, v) in rust.iter().enumerate() {
        let diff = v.iter().zip(&py[i * spec.dim..(i + 1) * spec.dim]).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(diff < 1e-4, "item {i}: max abs diff {diff}");
    }
}

fn fixture_photos() -> Vec<RgbImage> {
    PRODUCTS.iter().map(|(_, f)| image::open(demo_dir().join(f)).unwrap().to_rgb8()).collect()
}

#[test]
fn bad_lines_are_reported_by_number_and_the_rest_still_trains() {
    let f = fixture(3, 1);
    let garbage = f.root.join("broken.jpg");
    std::fs::write(&garbage, b"this is not a JPEG").unwrap();
    let good = std::fs::read_to_string(&f.examples).unwrap();
    let bad = format!(
        "{}{}\n{}\nnot json\n",
        good,
        json!({"images": [s(&f.root.join("examples-0-0.png"))], "product_id": "sku-not-in-catalogue"}),
        json!({"images": [s(&garbage)], "product_id": PRODUCTS[0].0}),
    );
    let n = good.lines().count();
    let examples = f.root.join("bad.jsonl");
    std::fs::write(&examples, bad).unwrap();
    let out = s(&f.root.join("model"));
    let cache = s(&f.root.join("cache"));
    let args = ["train", "--catalog", &f.catalog, "--examples", &s(&examples), "--out", &out, "--epochs", "3", "--synthetic-views", "1", "--cache", &cache];
    let run = run_livesku(&args, Duration::from_secs(300));
    assert_eq!(run.lines.len(), 1, "{}", run.stderr);
    assert!(!run.success, "skipped lines give exit status 3");
    let e = s(&examples);
    for (line, why) in [(n + 1, "not in the catalogue"), (n + 2, "unreadable image"), (n + 3, "invalid example")] {
        let want = format!("{e}:{line}: skipped: ");
        let hit = run.stderr.lines().find(|l| l.starts_with(&want)).unwrap_or_else(|| panic!("no report for line {line}:\n{}", run.stderr));
        assert!(hit.contains(why), "{hit}");
    }
    assert!(livesku::encode::Manifest::load(Path::new(&out)).is_ok(), "the rest still trained");

    // Nothing left: a clear error, no model.
    let empty = f.root.join("empty.jsonl");
    std::fs::write(&empty, "\n").unwrap();
    let out2 = s(&f.root.join("model2"));
    let args = ["train", "--catalog", &f.catalog, "--examples", &s(&empty), "--out", &out2, "--cache", &cache];
    let run = run_livesku(&args, Duration::from_secs(120));
    assert!(!run.success);
    assert!(run.stderr.contains("no usable example"), "{}", run.stderr);
    assert!(!Path::new(&out2).join("manifest.toml").exists());
}
