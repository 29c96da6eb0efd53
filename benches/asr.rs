//! ASR cost: Silero VAD over a host's narration track (speech and pauses, as a live stream carries it) and
//! Moonshine base-en on the utterances it finds, one ONNX Runtime thread each, as the service runs them.
//!
//!     cargo bench --bench asr                      # needs scripts/setup.sh (models, espeak-ng, sox)
//!     LIVESKU_BENCH_ROUNDS=3 cargo bench --bench asr
//!
//! Reports, from process CPU time: the VAD's CPU per second of audio, Moonshine's speed as a multiple of
//! real time on one core (seconds of speech per CPU second), and the CPU share one live stream costs at
//! the track's speech duty cycle. Also the track's WER, as a check that the work measured is the real one.

use std::process::Command;
use std::time::Instant;

use livesku::asr::moonshine::Moonshine;
use livesku::asr::segment::Segmenter;
use livesku::asr::vad::{SAMPLE_RATE, Vad, VadState, WINDOW};
use livesku::asr::wer::corpus_wer;
use livesku::asr::{AsrConfig, VadConfig};
use livesku::encode::Provider;
use livesku::encode::runtime::SessionOptions;

const LINES: [&str; 6] = [
    "Hello everyone and welcome back to the live show.",
    "Today I have three great products for your kitchen.",
    "This kettle boils a full litre of water in two minutes.",
    "The handle stays cool so you can pour it safely.",
    "Our second product is a set of four coffee mugs.",
    "Please leave a comment if you have any questions.",
];
/// Pause after each line: a host talks about 60-70 % of the time.
const PAUSE_S: f64 = 2.0;

fn cpu_seconds() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // Safety: a valid out-pointer; CLOCK_PROCESS_CPUTIME_ID is always available on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// espeak-ng speech as 16 kHz mono f32 (sox resamples).
fn speak(text: &str, dir: &std::path::Path) -> Vec<f32> {
    let (raw, out) = (dir.join("raw.wav"), dir.join("out.f32"));
    let ok = Command::new("espeak-ng").args(["-s", "150", "-w"]).arg(&raw).arg(text).status();
    assert!(ok.is_ok_and(|s| s.success()), "espeak-ng failed or is missing: run scripts/setup.sh");
    let ok = Command::new("sox").arg(&raw).args(["-r", "16000", "-c", "1", "-t", "f32"]).arg(&out).status();
    assert!(ok.is_ok_and(|s| s.success()), "sox failed or is missing: run scripts/setup.sh");
    std::fs::read(&out)
        .expect("read sox output")
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn main() {
    let rounds: usize = std::env::var("LIVESKU_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(2);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut track = Vec::new();
    for line in LINES {
        track.extend(speak(line, dir.path()));
        track.extend(std::iter::repeat_n(0.0f32, (PAUSE_S * SAMPLE_RATE as f64) as usize));
    }
    let audio_s = track.len() as f64 / SAMPLE_RATE as f64;

    let cfg = AsrConfig::default();
    let models = cfg.model_dir();
    let opts = SessionOptions { provider: Provider::Cpu, intra_threads: 1 };
    let mut vad = Vad::open(&models.join("silero_vad.onnx"), opts).expect("open VAD (run scripts/setup.sh)");
    let mut asr =
        Moonshine::open(&models.join("base-en"), opts, cfg.max_tokens_per_sec).expect("open Moonshine");
    println!(
        "ASR bench: {audio_s:.1} s narration track ({} lines, {PAUSE_S} s pauses), 1 ORT thread, {rounds} rounds",
        LINES.len()
    );
    println!(
        "{:>5} {:>10} {:>12} {:>12} {:>12} {:>13} {:>8}",
        "round", "speech s", "VAD ms/s", "decode x RT", "wall x RT", "CPU/stream %", "WER"
    );
    for round in 0..rounds {
        // VAD + segmentation over the whole track, as the VAD thread does for one stream.
        let c0 = cpu_seconds();
        let mut st = VadState::default();
        let mut seg = Segmenter::new(&VadConfig::default());
        let mut utterances = Vec::new();
        for window in track.chunks_exact(WINDOW) {
            let p = vad.prob(&mut st, window).expect("VAD");
            utterances.extend(seg.push(window, p));
        }
        utterances.extend(seg.flush());
        let vad_cpu = cpu_seconds() - c0;
        // Moonshine on each utterance, as a worker does.
        let (c1, t1) = (cpu_seconds(), Instant::now());
        let mut texts = Vec::new();
        for u in &utterances {
            texts.push(asr.transcribe(&u.samples).expect("transcribe").text);
        }
        let (dec_cpu, dec_wall) = (cpu_seconds() - c1, t1.elapsed().as_secs_f64());
        let speech_s: f64 = utterances.iter().map(|u| u.samples.len() as f64 / SAMPLE_RATE as f64).sum();
        let hyp = texts.join(" ");
        let reference = LINES.join(" ");
        let wer = corpus_wer([(reference.as_str(), hyp.as_str())]);
        println!(
            "{round:>5} {speech_s:>10.1} {:>12.2} {:>12.2} {:>12.2} {:>13.1} {:>8.3}",
            vad_cpu / audio_s * 1000.0,
            speech_s / dec_cpu,
            speech_s / dec_wall,
            (vad_cpu + dec_cpu) / audio_s * 100.0,
            wer
        );
    }
    println!(
        "VAD ms/s: VAD CPU per second of audio. decode x RT: seconds of speech transcribed per CPU second."
    );
    println!(
        "CPU/stream: ASR CPU time over audio time for this track (speech {:.0} % of the time).",
        100.0 * (audio_s - PAUSE_S * LINES.len() as f64) / audio_s
    );
}
