//! The demo scene as a test fixture: scripts/demo/scene.py renders a host presenting the sample products
//! (set up by scripts/setup.sh), encoded to H.264 MP4; plus a gallery of those products and the event
//! schema validator.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::run_livesku;

pub fn demo_dir() -> PathBuf {
    let dir = livesku::paths::cache_dir().join("demo");
    assert!(
        dir.join("catalog.jsonl").is_file(),
        "demo products missing in {}: run scripts/setup.sh",
        dir.display()
    );
    dir
}

/// Renders `shows` (image file in the demo dir, start s, end s) as a `seconds`-long 640x360 15 fps
/// H.264 MP4 with a 0.5 s GOP. `audio`: a WAV file muxed as AAC at 44.1 kHz stereo like a real encoder
/// (AAC at 16 kHz loses the consonants ASR needs); RTMP publishing needs an audio track.
pub fn render_scene(out: &Path, shows: &[(&str, u32, u32)], seconds: u32, audio: Option<&Path>) {
    render_scene_sized(out, shows, seconds, audio, (640, 360), 8);
}

/// [`render_scene`] with a silent sound track (its WAV next to `out`), as RTMP publishing needs.
pub fn render_silent_scene(out: &Path, shows: &[(&str, u32, u32)], seconds: u32) {
    let silence = out.with_extension("wav");
    write_silent_wav(&silence, seconds);
    render_scene(out, shows, seconds, Some(&silence));
}

/// [`render_scene`] at `size`, with a keyframe every `gop` frames (15 fps).
pub fn render_scene_sized(
    out: &Path,
    shows: &[(&str, u32, u32)],
    seconds: u32,
    audio: Option<&Path>,
    size: (u32, u32),
    gop: u32,
) {
    render_scene_at(out, shows, seconds, audio, size, 15, gop);
}

/// [`render_scene_sized`] at `fps` frames per second.
pub fn render_scene_at(
    out: &Path,
    shows: &[(&str, u32, u32)],
    seconds: u32,
    audio: Option<&Path>,
    size: (u32, u32),
    fps: u32,
    gop: u32,
) {
    let (w, h) = size;
    let python = livesku::paths::venv_python();
    assert!(python.is_file(), "{} missing: run scripts/setup.sh", python.display());
    let demo = demo_dir();
    let mut args = vec![
        concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/demo/scene.py").to_string(),
        "--seconds".into(),
        seconds.to_string(),
        "--size".into(),
        format!("{w}x{h}"),
        "--fps".into(),
        fps.to_string(),
    ];
    for (img, start, end) in shows {
        args.push("--show".into());
        args.push(format!("{}:{start}:{end}", demo.join(img).display()));
    }
    let mut scene = Command::new(python).args(&args).stdout(Stdio::piped()).spawn().expect("run scene.py");
    let frames = scene.stdout.take().unwrap();
    let mut pipeline = format!(
        "fdsrc ! rawvideoparse width={w} height={h} format=rgb framerate={fps}/1 ! videoconvert \
         ! x264enc speed-preset=ultrafast key-int-max={gop} ! h264parse ! mp4mux name=m ! filesink location={}",
        out.display()
    );
    if let Some(wav) = audio {
        pipeline += &format!(
            " filesrc location={} ! wavparse ! audioconvert ! audioresample \
             ! audio/x-raw,rate=44100,channels=2 ! voaacenc bitrate=128000 ! aacparse ! m.",
            wav.display()
        );
    }
    let status = Command::new("gst-launch-1.0")
        .arg("-q")
        .args(pipeline.split_whitespace())
        .stdin(frames)
        .status()
        .expect("gst-launch-1.0 is missing: run scripts/setup.sh");
    assert!(status.success() && scene.wait().unwrap().success(), "could not render the scene");
}

/// Builds a gallery of the demo products into `dir/gallery`; returns its path.
pub fn demo_gallery(dir: &Path) -> String {
    demo_gallery_with(dir, &[])
}

/// [`demo_gallery`] with more `gallery build` arguments (e.g. `--model DIR`).
pub fn demo_gallery_with(dir: &Path, extra: &[&str]) -> String {
    let gallery = dir.join("gallery");
    let catalog = demo_dir().join("catalog.jsonl");
    let mut args = vec!["gallery", "build", "--catalog", catalog.to_str().unwrap(), "--out", gallery.to_str().unwrap()];
    args.extend_from_slice(extra);
    let build = run_livesku(&args, Duration::from_secs(120));
    assert!(build.success, "{}", build.stderr);
    gallery.to_str().unwrap().to_string()
}

/// A gallery of the demo products and a 40 s scene: espresso set 0-14 s, empty set, rocket 22-40 s.
pub fn scene_fixture() -> (tempfile::TempDir, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let gallery = demo_gallery(dir.path());
    let video = dir.path().join("scene.mp4");
    render_scene(&video, &[("coffee.png", 0, 14), ("rocket.jpg", 22, 40)], 40, None);
    (dir, gallery, video.to_str().unwrap().to_string())
}

/// What the fixture scene must produce, `product.updated` left out.
pub const STORY: [(&str, &str); 4] = [
    ("product.appeared", "sku-espresso-set"),
    ("product.disappeared", "sku-espresso-set"),
    ("product.appeared", "sku-rocket-model"),
    ("product.disappeared", "sku-rocket-model"),
];

pub fn story(events: &[Value]) -> Vec<(String, String)> {
    events
        .iter()
        .filter(|e| e["type"] != "product.updated")
        .map(|e| (e["type"].as_str().unwrap().into(), e["product_id"].as_str().unwrap().into()))
        .collect()
}

pub fn expected_story() -> Vec<(String, String)> {
    STORY.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

/// Consumers deduplicate on `event_id`: within one run no id may repeat.
pub fn assert_no_duplicates(events: &[Value]) {
    let mut ids: Vec<&str> = events.iter().map(|e| e["event_id"].as_str().unwrap()).collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "duplicate event ids: {events:#?}");
}

pub fn validator() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(livesku::event::SCHEMA).unwrap();
    jsonschema::validator_for(&schema).expect("the event schema compiles")
}

/// 16 kHz mono 16-bit PCM silence.
pub fn write_silent_wav(path: &Path, seconds: u32) {
    let data_len = seconds * 16_000 * 2;
    let mut wav = Vec::with_capacity(44 + data_len as usize);
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data_len).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&16_000u32.to_le_bytes());
    wav.extend_from_slice(&32_000u32.to_le_bytes()); // byte rate
    wav.extend_from_slice(&2u16.to_le_bytes()); // block align
    wav.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data_len.to_le_bytes());
    wav.resize(44 + data_len as usize, 0);
    std::fs::write(path, wav).unwrap();
}
