//! Packaging text (issue 12) with the real PP-OCR models and real GStreamer: package images with a printed
//! product name are made with `videotestsrc ! textoverlay ! pngenc` (gstreamer crate), read, and matched to a small
//! catalogue of look-alike names by text alone. A missing model or tool fails the test (run
//! scripts/setup.sh), it never skips.

use std::path::{Path, PathBuf};
use std::process::Command;

use gstreamer as gst;
use gstreamer::prelude::*;
use livesku::ocr::{MatchConfig, OcrConfig, OcrEngine, ProductText, TextIndex, TextLine};
use serde_json::Value;

const SETUP: &str =
    "run scripts/setup.sh (gstreamer1.0-tools, gstreamer1.0-x for textoverlay, models/ocr.sh)";

/// Look-alikes: a brand shared by three, "standard milk" by two, "milk" by four.
const CATALOGUE: [(&str, &str, &str); 5] = [
    ("arla-standard", "Arla Standard Milk", "Fresh standard milk, 3 % fat."),
    ("garant-standard", "Garant Standard Milk", "Ecological standard milk from Swedish farms."),
    ("arla-sour", "Arla Sour Milk", "Soured milk, mild taste."),
    ("oatly-oat", "Oatly Oat Milk", "Oat drink, a plant-based alternative to milk."),
    ("arla-yoghurt", "Arla Natural Yoghurt", "Natural yoghurt, 3 % fat."),
];

fn products() -> Vec<ProductText> {
    CATALOGUE
        .iter()
        .map(|(id, title, description)| ProductText {
            product_id: id.to_string(),
            title: title.to_string(),
            description: description.to_string(),
        })
        .collect()
}

fn engine() -> OcrEngine {
    let lib = livesku::paths::ort_dylib();
    assert!(lib.is_file(), "ONNX Runtime library not found at {}: {SETUP}", lib.display());
    OcrEngine::open(&OcrConfig::default()).unwrap_or_else(|e| panic!("{e}: {SETUP}"))
}

/// A 640x480 "package": a coloured face with a brand line, a product line and small print, or no text.
/// Made by a GStreamer pipeline (`videotestsrc ! textoverlay ! pngenc`, Pango renders the text).
fn package(dir: &Path, name: &str, brand: &str, product: &str) -> PathBuf {
    let out = dir.join(format!("{name}.png"));
    let mut desc = "videotestsrc pattern=solid-color foreground-color=0xfff0e2c0 num-buffers=1 \
                    ! video/x-raw,width=640,height=480"
        .to_string();
    for (text, font, valign, ypad) in
        [(brand, "Sans Bold 64", "top", 90), (product, "Sans Bold 40", "center", 0)]
    {
        if !text.is_empty() {
            desc += &format!(
                " ! textoverlay text=\"{text}\" font-desc=\"{font}\" valignment={valign} ypad={ypad} \
                 color=0xff1a3c8c"
            );
        }
    }
    if !brand.is_empty() {
        // Small print that is no product word.
        desc += " ! textoverlay text=\"1 L  3%\" font-desc=\"Sans 24\" valignment=bottom halignment=right \
                  ypad=40 xpad=40 color=0xff202020";
    }
    desc += &format!(" ! videoconvert ! pngenc ! filesink location=\"{}\"", out.display());
    gst::init().unwrap_or_else(|e| panic!("GStreamer: {e}: {SETUP}"));
    let pipeline = gst::parse::launch(&desc).unwrap_or_else(|e| panic!("{desc}: {e}: {SETUP}"));
    pipeline.set_state(gst::State::Playing).expect("pipeline plays");
    let bus = pipeline.bus().expect("bus");
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(20),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("pipeline ends within 20 s");
    let _ = pipeline.set_state(gst::State::Null);
    assert!(matches!(msg.view(), gst::MessageView::Eos(_)), "making {name}: {msg:?}");
    assert!(out.is_file(), "{} not written", out.display());
    out
}

fn read(engine: &OcrEngine, path: &Path) -> Vec<TextLine> {
    let img = image::open(path).expect("generated PNG").to_rgb8();
    engine.read(&img).expect("OCR")
}

fn joined(lines: &[TextLine]) -> String {
    lines.iter().map(|l| l.text.as_str()).collect::<Vec<_>>().join(" / ")
}

#[test]
fn a_printed_name_is_matched_to_its_product_by_text_alone() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine();
    let index = TextIndex::new(&products(), MatchConfig::default());
    for (name, brand, product, want, look_alike) in [
        ("garant", "GARANT", "Standard Milk", "garant-standard", "arla-standard"),
        ("arla-sour", "Arla", "Sour Milk", "arla-sour", "arla-standard"),
    ] {
        let lines = read(&engine, &package(dir.path(), name, brand, product));
        let text = joined(&lines).to_lowercase();
        assert!(text.contains(&brand.to_lowercase()), "{name}: read {text:?}");
        for l in &lines {
            assert!(l.confidence > 0.5 && l.bbox[0] < l.bbox[2] && l.bbox[1] < l.bbox[3], "{l:?}");
            assert!(l.bbox.iter().all(|v| (0.0..=1.0).contains(v)), "{l:?}");
        }
        let hits = index.score(&lines);
        assert_eq!(hits[0].product_id, want, "{name}: read {text:?}, ranked {hits:?}");
        assert!(hits[0].accepted, "{name}: {hits:?}");
        let other = hits.iter().find(|h| h.product_id == look_alike).expect("look-alike scored");
        assert!(!other.accepted && other.score < hits[0].score - 0.1, "{name}: {hits:?}");
    }
}

#[test]
fn an_image_without_text_reads_nothing_and_matches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let lines = read(&engine(), &package(dir.path(), "blank", "", ""));
    assert!(lines.is_empty(), "read {lines:?}");
    assert!(TextIndex::new(&products(), MatchConfig::default()).score(&lines).is_empty());
}

#[test]
fn the_cli_prints_lines_and_ranks_the_catalogue() {
    let dir = tempfile::tempdir().unwrap();
    let catalogue = dir.path().join("catalog.jsonl");
    let lines: Vec<String> = CATALOGUE
        .iter()
        .map(|(id, title, description)| {
            serde_json::json!({"product_id": id, "title": title, "description": description,
                               "images": [format!("{id}.jpg")]})
            .to_string()
        })
        .collect();
    std::fs::write(&catalogue, lines.join("\n")).unwrap();
    let img = package(dir.path(), "oatly", "OATLY", "Oat Milk");
    let out = Command::new(env!("CARGO_BIN_EXE_livesku"))
        .args(["ocr", "--catalog"])
        .arg(&catalogue)
        .arg(&img)
        .output()
        .expect("run livesku");
    assert!(out.status.success(), "livesku ocr failed: {}", String::from_utf8_lossy(&out.stderr));
    let record: Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    assert!(record["lines"].as_array().is_some_and(|l| !l.is_empty()), "{record}");
    assert!(record["det_ms"].as_f64().is_some() && record["rec_ms"].as_f64().is_some(), "{record}");
    let top = &record["products"][0];
    assert_eq!(top["product_id"], "oatly-oat", "{record}");
    assert_eq!(top["accepted"], true, "{record}");
}
