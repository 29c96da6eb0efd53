//! 1,000 corrupted media files (truncated, bit-flipped, spliced MP4/FLV/TS test streams and random
//! bytes, made from a fixed seed) through `livesku ingest`, then a sample of them as file streams of a
//! running service next to a healthy live RTMP stream: no crash, one clear outcome per stream, the
//! healthy stream's detections untouched.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::scene::{demo_gallery, render_scene, write_silent_wav};
use common::service::Service;
use common::{Servers, StreamSpec, livesku, make_file_muxed, publish_file_rtmp};
use serde_json::Value;

const INPUTS: usize = 1000;
const SEED: u64 = 13;
/// Files per `livesku ingest` run (each is a concurrent stream of that run).
const BATCH: usize = 25;

struct Input {
    path: PathBuf,
    /// How it was made, for a failure message.
    how: String,
}

/// Small clean files of each container: 3 s, 2 keyframes per second, with audio.
fn clean_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let spec = StreamSpec { width: 160, height: 120, fps: 10, gop: 5, ..StreamSpec::default() };
    [("mp4", "mp4mux"), ("flv", "flvmux"), ("ts", "mpegtsmux")]
        .into_iter()
        .map(|(ext, muxer)| {
            let path = dir.join(format!("clean.{ext}"));
            make_file_muxed(&path, &spec, 3, muxer);
            (ext.to_string(), std::fs::read(&path).unwrap())
        })
        .collect()
}

/// One corrupted input; the kind cycles so that each gets a quarter of the inputs.
fn corrupt(rng: &mut fastrand::Rng, i: usize, clean: &[(String, Vec<u8>)]) -> (String, Vec<u8>, String) {
    let (ext, base) = &clean[rng.usize(..clean.len())];
    let mut data = base.clone();
    let how = match i % 4 {
        0 => {
            let keep = rng.usize(..data.len());
            data.truncate(keep);
            format!("{ext} truncated to {keep} of {} bytes", base.len())
        }
        1 => {
            // Half of them in the first 4 KiB, where the container's headers are.
            let span = if rng.bool() { data.len().min(4096) } else { data.len() };
            let flips = rng.usize(1..=64);
            for _ in 0..flips {
                data[rng.usize(..span)] ^= 1 << rng.u8(..8);
            }
            format!("{ext} with {flips} bits flipped in the first {span} bytes")
        }
        2 => {
            let (other_ext, other) = &clean[rng.usize(..clean.len())];
            let (cut, from) = (rng.usize(..data.len()), rng.usize(..other.len()));
            data.truncate(cut);
            data.extend_from_slice(&other[from..]);
            format!("{ext} [..{cut}] + {other_ext} [{from}..]")
        }
        _ => {
            let len = rng.usize(..64 * 1024);
            data = std::iter::repeat_with(|| rng.u8(..)).take(len).collect();
            // Some start with a real container's first bytes, so typefinding passes and a demuxer parses.
            let prefix = rng.usize(..=64).min(base.len()).min(len);
            if rng.bool() {
                data[..prefix].copy_from_slice(&base[..prefix]);
            }
            format!("{len} random bytes (maybe after {ext}'s first {prefix})")
        }
    };
    (ext.clone(), data, how)
}

fn make_inputs(dir: &Path) -> Vec<Input> {
    let clean = clean_files(dir);
    let mut rng = fastrand::Rng::with_seed(SEED);
    (0..INPUTS)
        .map(|i| {
            let (ext, data, how) = corrupt(&mut rng, i, &clean);
            let path = dir.join(format!("c{i:04}.{ext}"));
            std::fs::write(&path, data).unwrap();
            Input { path, how }
        })
        .collect()
}

/// One stream's outcome in an `ingest` run: its last state change (`stopped` at the end of the file, or
/// `failed` with the error) and how many keyframes it gave.
#[derive(Debug, Default)]
struct Outcome {
    state: String,
    reason: String,
    keyframes: u64,
}

/// Runs `livesku ingest` on a batch; `Err` says how the process died (a crash or a panic).
fn ingest(batch: &[&Input]) -> Result<BTreeMap<String, Outcome>, String> {
    let out = livesku()
        // A broken file that gives no data fails after this; the duration is a cap for anything else.
        .args(["ingest", "--stall-timeout", "5", "--duration", "60"])
        .args(batch.iter().map(|i| &i.path))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run livesku ingest");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code().is_none() || stderr.contains("panicked") {
        return Err(format!("{}\n{stderr}", out.status));
    }
    let mut outcomes: BTreeMap<String, Outcome> = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON ({e}): {line}"))?;
        let o = outcomes.entry(v["stream_id"].as_str().unwrap_or_default().to_string()).or_default();
        match v["kind"].as_str() {
            Some("status") => {
                o.state = v["state"].as_str().unwrap_or_default().to_string();
                o.reason = v["reason"].as_str().unwrap_or_default().to_string();
            }
            Some("keyframe") => o.keyframes += 1,
            _ => {}
        }
    }
    Ok(outcomes)
}

/// The error's kind: its text without the file's own details (parenthesised debug, numbers as `N`).
fn kind(error: &str) -> String {
    let head = error.split(" (").next().unwrap_or(error);
    let (mut kind, mut in_number) = (String::new(), false);
    for c in head.trim().chars() {
        if !c.is_ascii_digit() {
            kind.push(c);
        } else if !in_number {
            kind.push('N');
        }
        in_number = c.is_ascii_digit();
    }
    kind
}

#[test]
fn a_thousand_corrupted_inputs_fail_cleanly_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = make_inputs(dir.path());
    let batches: Vec<Vec<&Input>> = inputs.chunks(BATCH).map(|c| c.iter().collect()).collect();
    // Two runs at a time: one per core.
    let results: Vec<(Vec<&Input>, Result<BTreeMap<String, Outcome>, String>)> = std::thread::scope(|s| {
        let mut results = Vec::new();
        for pair in batches.chunks(2) {
            let runs: Vec<_> = pair.iter().map(|b| s.spawn(move || (b.clone(), ingest(b)))).collect();
            results.extend(runs.into_iter().map(|r| r.join().unwrap()));
        }
        results
    });

    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    let (mut ended, mut failed, mut decoded) = (0, 0, 0);
    for (batch, result) in results {
        let outcomes = result.unwrap_or_else(|death| {
            // Name the input that kills the process.
            let culprit = batch.iter().find(|i| ingest(&[i]).is_err()).map(|i| &i.how);
            panic!("livesku ingest died on a batch (culprit: {culprit:?}): {death}")
        });
        for input in batch {
            let id = input.path.file_stem().unwrap().to_str().unwrap();
            let o = outcomes.get(id).unwrap_or_else(|| panic!("no outcome for {id} ({})", input.how));
            match o.state.as_str() {
                "stopped" => {
                    assert_eq!(o.reason, "end of file", "{id} ({}) did not end by itself: {o:?}", input.how);
                    ended += 1;
                }
                "failed" => {
                    assert!(!o.reason.trim().is_empty(), "{id} ({}): {o:?}", input.how);
                    // GStreamer's source locations are for its developers, not for the operator.
                    assert!(!o.reason.contains(".c("), "{id} ({}): {}", input.how, o.reason);
                    *kinds.entry(kind(&o.reason)).or_default() += 1;
                    failed += 1;
                }
                _ => panic!("{id} ({}) ended in an unexpected state: {o:?}", input.how),
            }
            decoded += usize::from(o.keyframes > 0);
        }
    }
    eprintln!(
        "{INPUTS} inputs (seed {SEED}): {ended} ended at their end ({decoded} with keyframes), {failed} failed:"
    );
    for (k, n) in &kinds {
        eprintln!("  {n:4}  {k}");
    }
    assert_eq!(ended + failed, INPUTS);
    assert!(failed >= INPUTS / 4, "most corruptions should be refused, not played: {kinds:?}");
}

/// A healthy live stream's detections do not notice corrupted file streams failing next to it.
#[test]
fn corrupted_file_streams_next_to_a_live_stream() {
    let dir = tempfile::tempdir().unwrap();
    let input_dir = dir.path().join("inputs");
    std::fs::create_dir_all(&input_dir).unwrap();
    let inputs = make_inputs(&input_dir);
    let gallery = demo_gallery(dir.path());
    let wav = dir.path().join("silence.wav");
    // On air through the service's start-up and every file's end.
    write_silent_wav(&wav, 90);
    let video = dir.path().join("coffee.mp4");
    render_scene(&video, &[("coffee.png", 0, 90)], 90, Some(&wav));
    let servers = Servers::start();
    let url = servers.rtmp_url("healthy");
    let _publisher = publish_file_rtmp(&video, &url);

    // Every 25th input (all four kinds), as config-file streams that start with the service.
    let sample: Vec<&Input> = inputs.iter().step_by(25).collect();
    let mut streams: String =
        sample.iter().map(|i| format!("[[streams]]\nuri = {:?}\n", i.path.to_str().unwrap())).collect();
    streams += &format!("[[streams]]\nid = \"healthy\"\nuri = {url:?}\n[ingest]\nstall_timeout_secs = 5\n");
    let svc = Service::start(&gallery, &streams);
    let appeared =
        |ev: &[Value]| ev.iter().any(|e| e["stream_id"] == "healthy" && e["type"] == "product.appeared");
    svc.wait_events(Duration::from_secs(60), appeared);
    for input in &sample {
        let id = input.path.file_stem().unwrap().to_str().unwrap();
        let s = svc
            .wait_stream(id, Duration::from_secs(60), |s| s["state"] == "stopped" || s["state"] == "failed");
        if s["state"] == "failed" {
            let error = s["last_error"].as_str().unwrap_or_default();
            assert!(!error.trim().is_empty(), "{id} ({}) failed without a reason: {s}", input.how);
        }
    }
    // The live stream kept going through all of it: same session, nothing dropped, its product still on.
    let healthy = svc.stream("healthy").unwrap();
    assert_eq!(healthy["state"], "running", "{healthy}");
    assert_eq!(healthy["reconnects"], 0, "{healthy}");
    assert_eq!(healthy["dropped"], 0, "{healthy}");
    let events = svc.events();
    let gone = events.iter().filter(|e| e["stream_id"] == "healthy" && e["type"] == "product.disappeared");
    assert_eq!(gone.count(), 0, "the live stream's product disappeared while on air: {events:#?}");
    let log = svc.log();
    assert!(!log.contains("panicked"), "{log}");
}
