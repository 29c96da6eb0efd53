//! Speech to text with the real models (Silero VAD + Moonshine base-en through ONNX Runtime) and real
//! GStreamer: word error rate on espeak-ng sentences, transcript timing and tagging on a narrated live
//! RTMP stream, and silence / music / no audio track without bogus text. A missing model, tool or
//! server fails the test (run scripts/setup.sh), it never skips.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use common::scene::{demo_gallery, render_scene, story, validator};
use common::{Servers, StreamSpec, make_file, publish_file_rtmp, run_livesku};
use livesku::asr::wer::{corpus_wer, wer};
use serde_json::Value;

/// The narrated test runs against the wall clock (a live stream read by two livesku processes); the
/// others load the CPU on purpose (overload) or for long stretches (WER). Beside them on a 2-core CI
/// machine its first line came out garbled (WER 0.46): it runs alone, the others share.
static LIVE: RwLock<()> = RwLock::new(());

fn alone() -> RwLockWriteGuard<'static, ()> {
    LIVE.write().unwrap_or_else(|e| e.into_inner())
}

fn shared() -> RwLockReadGuard<'static, ()> {
    LIVE.read().unwrap_or_else(|e| e.into_inner())
}

/// What a host might say; read by espeak-ng at 150 words per minute, one every `SPACING` seconds.
const SENTENCES: [&str; 10] = [
    "Hello everyone and welcome back to the live show.",
    "Today I have three great products for your kitchen.",
    "This kettle boils a full litre of water in two minutes.",
    "The handle stays cool so you can pour it safely.",
    "It comes in red, black and silver.",
    "Our second product is a set of four coffee mugs.",
    "They are made of porcelain and are dishwasher safe.",
    "If you order in the next hour, shipping is free.",
    "Please leave a comment if you have any questions.",
    "Thank you for watching and see you tomorrow.",
];
const SPACING: f64 = 6.0;

/// Writes a 16 kHz mono WAV with each (start seconds, text) spoken by espeak-ng (scripts/demo/narration.py).
fn narration(out: &Path, seconds: f64, lines: &[(f64, &str)]) {
    let python = livesku::paths::venv_python();
    assert!(python.is_file(), "{} missing: run scripts/setup.sh", python.display());
    let mut cmd = Command::new(python);
    cmd.arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/demo/narration.py"));
    cmd.args(["--seconds", &seconds.to_string(), "--out", out.to_str().unwrap()]);
    for (at, text) in lines {
        cmd.args(["--say", &format!("{at}:{text}")]);
    }
    let status = cmd.status().expect("run narration.py");
    assert!(status.success(), "narration.py failed (espeak-ng missing? run scripts/setup.sh)");
}

fn transcribe(uri: &str, extra: &[&str], timeout: Duration) -> Vec<Value> {
    let mut args = vec!["transcribe", uri];
    args.extend_from_slice(extra);
    let run = run_livesku(&args, timeout);
    assert!(run.success, "transcribe failed:\n{}", run.stderr);
    for l in &run.lines {
        let text = l["text"].as_str().expect("text");
        assert!(!text.trim().is_empty(), "empty transcript line: {l}");
        assert!(l["end_ms"].as_u64().unwrap() > l["start_ms"].as_u64().unwrap(), "{l}");
        let c = l["confidence"].as_f64().unwrap();
        assert!(c > 0.0 && c <= 1.0, "{l}");
    }
    run.lines
}

/// Text of the utterances whose midpoint falls in `[from_s, to_s)`.
fn text_between(lines: &[Value], from_s: f64, to_s: f64) -> String {
    lines
        .iter()
        .filter(|l| {
            let mid = (l["start_ms"].as_f64().unwrap() + l["end_ms"].as_f64().unwrap()) / 2000.0;
            (from_s..to_s).contains(&mid)
        })
        .map(|l| l["text"].as_str().unwrap())
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn word_error_rate_on_espeak_sentences_is_at_most_ten_percent() {
    let _cpu = shared();
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("sentences.wav");
    let lines: Vec<(f64, &str)> =
        SENTENCES.iter().enumerate().map(|(i, s)| (0.5 + i as f64 * SPACING, *s)).collect();
    narration(&wav, SENTENCES.len() as f64 * SPACING + 1.0, &lines);
    let got = transcribe(wav.to_str().unwrap(), &[], Duration::from_secs(240));
    let hyps: Vec<String> = (0..SENTENCES.len())
        .map(|i| text_between(&got, i as f64 * SPACING, (i + 1) as f64 * SPACING))
        .collect();
    for (r, h) in SENTENCES.iter().zip(&hyps) {
        eprintln!("WER {:.2}  ref: {r}\n           hyp: {h}", wer(r, h));
    }
    let w = corpus_wer(SENTENCES.iter().copied().zip(hyps.iter().map(String::as_str)));
    eprintln!("corpus WER {w:.3} over {} sentences", SENTENCES.len());
    assert!(w <= 0.10, "WER {w:.3} > 0.10: {got:#?}");
    // Each sentence starts where it was spoken (VAD pad 200 ms, espeak-ng's own lead-in).
    for (i, (at, _)) in lines.iter().enumerate() {
        let first = got
            .iter()
            .map(|l| l["start_ms"].as_f64().unwrap() / 1000.0)
            .find(|s| (i as f64 * SPACING..(i + 1) as f64 * SPACING).contains(s))
            .unwrap_or_else(|| panic!("no utterance for sentence {i}: {got:#?}"));
        assert!((first - at).abs() < 0.5, "sentence {i} spoken at {at} s, transcript starts at {first} s");
    }
}

#[test]
fn silence_music_and_no_audio_track_give_no_text() {
    let _cpu = shared();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Silence and a steady tone through GStreamer, a plucked melody with sox.
    let silence = d.join("silence.wav");
    let tone = d.join("tone.wav");
    for (path, wave) in [(&silence, "silence"), (&tone, "sine freq=440")] {
        let pipeline = format!(
            "audiotestsrc wave={wave} num-buffers=160 ! audio/x-raw,rate=16000,channels=1 ! wavenc ! filesink location={}",
            path.display()
        );
        let ok = Command::new("gst-launch-1.0")
            .arg("-q")
            .args(pipeline.split_whitespace())
            .status()
            .expect("gst-launch-1.0 missing: run scripts/setup.sh");
        assert!(ok.success());
    }
    let melody = d.join("melody.wav");
    let mut sox = Command::new("sox");
    sox.args(["-n", "-r", "16000", "-c", "1", melody.to_str().unwrap()]);
    for note in ["C4", "E4", "G4", "C5", "G4", "E4", "C4", "D4", "F4", "A4", "F4", "D4"] {
        sox.args(["synth", "0.5", "pluck", note, ":"]);
    }
    sox.args(["synth", "0.5", "pluck", "C4"]);
    assert!(sox.status().expect("sox missing: run scripts/setup.sh").success());
    for f in [&silence, &tone, &melody] {
        let got = transcribe(f.to_str().unwrap(), &[], Duration::from_secs(60));
        assert!(got.is_empty(), "{}: bogus text {got:#?}", f.display());
    }
    // A video file without an audio track: no transcripts, no error.
    let video = d.join("mute.mp4");
    make_file(&video, &StreamSpec { audio: false, ..StreamSpec::default() }, 3);
    let got = transcribe(video.to_str().unwrap(), &[], Duration::from_secs(60));
    assert!(got.is_empty(), "{got:#?}");
}

/// The host's lines: (start s, text). The tabby cat print is named while the set is empty: it must not
/// appear. The rocket is named just before it is shown. (Lines chosen so that espeak-ng's voice is
/// intelligible: it mangles e.g. "red porcelain espresso" and "glossy art print" beyond recognition.)
/// The first line starts 12 s in and its product stays on for 15 s: the readers may join late and the
/// transcript lands seconds after the line on a loaded machine.
const LINES: [(f64, &str); 3] = [
    (12.0, "Hello everyone! First today, a red coffee cup and saucer for your espresso."),
    (27.0, "Later this week we will also sell a picture of a cat with green eyes."),
    (32.5, "Now here is our rocket, a detailed scale model on its launch pad."),
];

const SCENE_SECS: f64 = 55.0;

#[test]
fn narrated_live_stream_tags_keyframes_and_events_with_what_the_host_says() {
    let _cpu = alone();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let gallery = demo_gallery(d);
    let wav = d.join("speech.wav");
    narration(&wav, SCENE_SECS, &LINES);
    let video = d.join("scene.mp4");
    render_scene(&video, &[("coffee.png", 11, 26), ("rocket.jpg", 42, 55)], 55, Some(&wav));

    let servers = Servers::start();
    let url = servers.rtmp_url("shop");
    // The readers join a running stream (as a platform would), during the 11 s silent lead-in; their
    // stream clocks start when they join, so the narration is offset by the join delay.
    let mut publisher = publish_file_rtmp(&video, &url);
    std::thread::sleep(Duration::from_millis(1000));
    let (u1, g) = (url.clone(), gallery.clone());
    let recognize = std::thread::spawn(move || {
        run_livesku(&["recognize", &u1, "--gallery", &g, "--duration", "55"], Duration::from_secs(120))
    });
    let u2 = url.clone();
    let transcripts = std::thread::spawn(move || {
        let run = run_livesku(&["transcribe", &u2, "--duration", "55"], Duration::from_secs(120));
        assert!(run.success, "{}", run.stderr);
        run.lines
    });
    let run = recognize.join().unwrap();
    let lines = transcripts.join().unwrap();
    publisher.kill();
    assert!(run.success, "{}", run.stderr);

    // Transcripts: the right words at the right stream time (up to the join delay, the same for all).
    eprintln!("transcripts: {lines:#?}");
    let starts: Vec<f64> = lines.iter().map(|l| l["start_ms"].as_f64().unwrap() / 1000.0).collect();
    let offset = LINES[0].0 - starts.first().copied().expect("no transcript at all");
    assert!((0.0..11.0).contains(&offset), "first utterance at {starts:?}");
    for (i, (at, text)) in LINES.iter().enumerate() {
        let end = LINES.get(i + 1).map_or(SCENE_SECS, |l| l.0);
        let hyp = text_between(&lines, at - offset - 0.5, end - offset - 0.5);
        let w = wer(text, &hyp);
        // espeak-ng through AAC and a live join is harder than the clean WER set: a looser bound here,
        // plus the product words the tagging relies on.
        assert!(w <= 0.35, "line {i}: '{hyp}' for '{text}' (WER {w:.2})");
        let key = ["espresso", "cat", "rocket"][i];
        assert!(hyp.to_lowercase().contains(key), "line {i}: '{hyp}' lacks '{key}'");
        let first = starts.iter().find(|s| **s + offset >= at - 0.5).unwrap();
        assert!((first + offset - at).abs() < 0.6, "line {i} at {at} s, transcript at {first} s + {offset}");
    }

    // Events: schema-valid, the story of the picture (no tabby cat: it was only named), each carrying
    // the speech that went with its keyframes, never an empty tag.
    let events = run.lines;
    eprintln!("events: {events:#?}");
    let schema = validator();
    for e in &events {
        assert!(schema.is_valid(e), "not schema-valid: {e}");
        assert_ne!(e["asr_text"].as_str().map(str::trim), Some(""), "empty tag: {e}");
    }
    let s = story(&events);
    assert!(!s.iter().any(|(_, p)| p == "sku-tabby-poster"), "named but not shown: {s:?}");
    let want = [
        ("product.appeared", "sku-espresso-set"),
        ("product.disappeared", "sku-espresso-set"),
        ("product.appeared", "sku-rocket-model"),
    ];
    let got: Vec<(&str, &str)> = s.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    assert!(got.starts_with(&want), "{got:?}");
    let text_of = |kind: &str, product: &str| {
        events
            .iter()
            .find(|e| e["type"] == kind && e["product_id"] == product)
            .and_then(|e| e["asr_text"].as_str())
            .unwrap_or_default()
            .to_lowercase()
    };
    // Each product is named around the time it is shown; how many keyframes later its transcript lands
    // depends on the machine's load, so any event of the product's episode may carry it (the tag of a
    // later keyframe can already hold the next thing the host says).
    let episode_text = |product: &str| -> Vec<String> {
        ["product.appeared", "product.updated", "product.disappeared"]
            .iter()
            .map(|k| text_of(k, product))
            .collect()
    };
    let espresso = episode_text("sku-espresso-set");
    assert!(espresso.iter().any(|t| t.contains("espresso")), "espresso events carry: {espresso:?}");
    let rocket = episode_text("sku-rocket-model");
    assert!(rocket.iter().any(|t| t.contains("rocket")), "rocket events carry: {rocket:?}");
}

/// 16-bit PCM samples of a WAV written by narration.py, as f32.
fn read_wav(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    let at = bytes.windows(4).position(|w| w == b"data").expect("WAV data chunk") + 8;
    bytes[at..].chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]]) as f32 / 32768.0).collect()
}

#[test]
fn overload_drops_and_counts_utterances_instead_of_queueing_them() {
    let _cpu = shared();
    use livesku::asr::{AsrConfig, AsrStage};
    use livesku::messages::AudioChunk;
    use std::sync::{Arc, Mutex};

    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("talk.wav");
    let lines: Vec<(f64, &str)> =
        SENTENCES[..4].iter().enumerate().map(|(i, s)| (0.5 + i as f64 * SPACING, *s)).collect();
    narration(&wav, 4.0 * SPACING + 1.0, &lines);
    let talk = read_wav(&wav);

    // One worker, room for one waiting utterance; 6 streams deliver 25 s of talk each, far faster than
    // real time: most utterances must be dropped (and counted), the rest transcribed, nothing waits.
    let cfg = AsrConfig { workers: 1, queue: 1, ..AsrConfig::default() };
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    let (tx, rx) = crossbeam_channel::bounded::<AudioChunk>(16);
    let stage = AsrStage::start(&cfg, vec![rx], move |t| sink.lock().unwrap().push(t), &Default::default())
        .expect("ASR models (run scripts/setup.sh)");
    let metrics = stage.metrics.clone();
    let started = std::time::Instant::now();
    for (i, chunk) in talk.chunks(8000).enumerate() {
        for s in 0..6 {
            let c = AudioChunk {
                generation: 0,
                stream_id: format!("s{s}").into(),
                pts_ms: i as u64 * 500,
                sample_rate: 16_000,
                samples: chunk.to_vec(),
            };
            tx.send(c).unwrap();
        }
    }
    drop(tx);
    let fed = started.elapsed();
    stage.join();
    let m = metrics.snapshot();
    eprintln!("{m:?}, fed in {fed:?}");
    assert!((24..=30).contains(&m.utterances), "4 sentences x 6 streams: {m:?}");
    assert!(m.dropped >= 12, "the bounded queue must shed load: {m:?}");
    assert_eq!(m.transcribed + m.rejected + m.dropped, m.utterances, "{m:?}");
    assert!(m.transcribed >= 1);
    // Feeding never waited for transcription (VAD only: about 0.4 % of a core per second of audio).
    assert!(fed < Duration::from_secs(20), "audio intake was held up by the ASR workers: {fed:?}");
    let texts = got.lock().unwrap();
    assert!(texts.iter().all(|t| !t.text.is_empty() && t.end_ms > t.start_ms));
}
