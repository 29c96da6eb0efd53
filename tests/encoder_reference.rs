//! The Rust encoder against an independent reference: Python onnxruntime (private venv) on the same input
//! tensors, with pooling re-implemented in numpy (tests/reference/encoder_ref.py).

mod support;

use std::process::Command;

use livesku::encode::preprocess::Preprocessor;
use livesku::encode::{Encoder, Side};

fn write_f32(path: &std::path::Path, v: &[f32]) {
    std::fs::write(
        path,
        v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>(),
    )
    .unwrap();
}

fn write_i64(path: &std::path::Path, v: &[i64]) {
    std::fs::write(
        path,
        v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>(),
    )
    .unwrap();
}

fn read_f32(path: &std::path::Path) -> Vec<f32> {
    std::fs::read(path)
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[test]
fn encoder_matches_python_onnxruntime() {
    let cfg = support::encoder_config();
    let python = support::venv_python();
    let mut enc = Encoder::open(&cfg).expect("open encoder");
    let spec = enc.manifest.visual.clone();

    // Different sizes and aspect ratios exercise the resize/crop path; 224x224 the no-resize path.
    let images = [
        support::picture(1, 224, 224),
        support::picture(2, 640, 360),
        support::picture(3, 300, 500),
        support::picture(4, 97, 131),
    ];
    let refs: Vec<&image::RgbImage> = images.iter().collect();
    let mut pre = Preprocessor::new(&spec);
    let mut tensor = vec![0f32; pre.slot_len() * images.len()];
    for (img, slot) in images.iter().zip(tensor.chunks_exact_mut(pre.slot_len())) {
        pre.write(img, slot).unwrap();
    }
    let rust_visual = enc.visual.run_tensor(&tensor, images.len()).unwrap();
    // The batched image path must give the same vectors as the prepared tensor.
    let via_images = enc.visual.encode_images(&refs).unwrap();
    for (a, b) in rust_visual.iter().zip(&via_images) {
        assert!(support::max_abs_diff(a, b) < 1e-5);
    }

    let texts = [
        "Golden Delicious apple",
        "Oat milk, 1 litre, organic and barista-friendly",
        "x",
    ];
    let model_dir = enc.manifest.dir.clone();
    let text = enc.text_encoder().unwrap().expect("default model has a text tower");
    let (ids, mask, len) = text.tokenize(&texts).unwrap();
    let rust_text = text.run_tokens(&ids, &mask, texts.len(), len).unwrap();

    let work = tempfile::tempdir().unwrap();
    write_f32(&work.path().join("visual_in.f32"), &tensor);
    write_i64(&work.path().join("ids.i64"), &ids);
    write_i64(&work.path().join("mask.i64"), &mask);
    let [h, w] = spec.size;
    let request = serde_json::json!({
        "visual": {"file": "visual_in.f32", "shape": [images.len(), 3, h, w]},
        "text": {"ids": "ids.i64", "mask": "mask.i64", "shape": [texts.len(), len]},
    });
    std::fs::write(work.path().join("request.json"), request.to_string()).unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/reference/encoder_ref.py"
    );
    let status = Command::new(&python)
        .arg(script)
        .arg(&model_dir)
        .arg(work.path())
        .status()
        .unwrap();
    assert!(status.success(), "reference script failed: {status}");

    let py_visual = read_f32(&work.path().join("visual_out.f32"));
    let py_text = read_f32(&work.path().join("text_out.f32"));
    let dim = spec.dim;
    for (i, v) in rust_visual.iter().enumerate() {
        let r = &py_visual[i * dim..(i + 1) * dim];
        let diff = support::max_abs_diff(v, r);
        assert!(diff < 1e-4, "visual item {i}: max abs diff {diff}");
    }
    let tdim = text.dim();
    for (i, v) in rust_text.iter().enumerate() {
        let r = &py_text[i * tdim..(i + 1) * tdim];
        let diff = support::max_abs_diff(v, r);
        assert!(diff < 1e-4, "text item {i}: max abs diff {diff}");
    }

    // Fusion: a query . page dot product is the weighted sum of the two cosines.
    let clip0: &[&image::RgbImage] = &[&images[0]];
    let clip1: &[&image::RgbImage] = &[&images[1]];
    let q = enc
        .encode(&[clip0], &[Some(texts[0])], Side::Query)
        .unwrap()
        .remove(0);
    let p = enc
        .encode(&[clip1], &[Some(texts[1])], Side::Page)
        .unwrap()
        .remove(0);
    let dot: f32 = q.iter().zip(&p).map(|(a, b)| a * b).sum();
    let cv: f32 = rust_visual[0]
        .iter()
        .zip(&rust_visual[1])
        .map(|(a, b)| a * b)
        .sum();
    let ct: f32 = rust_text[0]
        .iter()
        .zip(&rust_text[1])
        .map(|(a, b)| a * b)
        .sum();
    let expect = enc.weights.visual_weight * cv + enc.weights.text_weight * ct;
    assert!(
        (dot - expect).abs() < 1e-4,
        "fused dot {dot} vs weighted cosines {expect}"
    );
}

/// A GPU provider that cannot be used (this build has no `cuda` feature, or no GPU) falls back to the CPU
/// with a warning instead of failing.
#[test]
fn unavailable_gpu_provider_falls_back_to_cpu() {
    let cfg = livesku::encode::EncoderConfig { provider: livesku::encode::Provider::Cuda(0), ..support::encoder_config() };
    let mut enc = Encoder::open(&cfg).expect("falls back to CPU");
    let img = support::picture(5, 224, 224);
    let v = enc.visual.encode_images(&[&img]).unwrap();
    assert_eq!(v[0].len(), enc.manifest.visual.dim);
}
