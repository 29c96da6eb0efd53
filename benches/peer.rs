//! livesku against its obvious alternative, a short Python script (benches/peer/peer.py: PyAV key-unit
//! decoding, onnxruntime, numpy), doing the same work on the same file: key units only, 1 keyframe/s, the
//! same model file and thread count, cosine top-k against the same gallery files, abstention against
//! empty-set references, livesku's K-of-N tracker rules, events as JSON lines on stdout.
//!
//!     cargo bench --bench peer                              # 3 rounds, float32 and int8 models
//!     LIVESKU_BENCH_ROUNDS=5 LIVESKU_BENCH_THREADS=2 LIVESKU_PEER_BATCH=1 cargo bench --bench peer
//!
//! The scene is the demo scene (tests/common/scene.rs) at 1280x720, 30 fps, 1 s GOP, 94 s, four products
//! shown one after the other with empty studio between them, silent AAC audio (rendered once into target/,
//! minutes). The
//! int8 model is made by `livesku quantize`, each model with its own gallery (`gallery build --model`).
//! livesku runs `livesku recognize` with the peer's settings (`[ingest] max_rate_hz = 1`, `[encoder]
//! intra_threads`, ASR and localisation off: the peer does neither); its other defaults stay (the
//! near-duplicate filter, batching). Each round runs both sides on both models, the side that goes first
//! alternating, so the machine's load hits both alike. CPU = user + system seconds of the process and its
//! threads (wait4), the measure that load distorts least. Before the rounds, the peer's pre-processing and
//! pooling are checked against livesku's encoder on the same decoded frames (cosine).
//!
//! Needs scripts/setup.sh (models, demo products, GStreamer) and benches/peer/setup.sh (the peer's venv,
//! run from here); a missing piece fails loudly.

#[path = "../tests/common/mod.rs"]
#[allow(dead_code, unused_imports)]
mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use common::scene::{demo_dir, render_scene_at, write_silent_wav};
use image::RgbImage;
use livesku::encode::{Encoder, EncoderConfig, Side};
use serde_json::Value;

const SCENE_SECS: u32 = 94;
/// (product shown, its image, from s, to s): the known story.
const SHOWS: [(&str, &str, u32, u32); 4] = [
    ("sku-espresso-set", "coffee.png", 0, 14),
    ("sku-rocket-model", "rocket.jpg", 22, 36),
    ("sku-tabby-poster", "chelsea.png", 44, 58),
    ("sku-sport-bike", "motorcycle_left.png", 66, 80),
];

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().map_or(default, |v| v.parse().unwrap_or_else(|_| panic!("{name}: a number")))
}

fn main() {
    let rounds = env_usize("LIVESKU_BENCH_ROUNDS", 3);
    let threads = env_usize("LIVESKU_BENCH_THREADS", 2);
    let batch = env_usize("LIVESKU_PEER_BATCH", 1);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    println!("machine: {} cores, {}; load average {}", nproc(), cpu_model(), loadavg());

    let setup = Command::new(root.join("benches/peer/setup.sh")).output().expect("run benches/peer/setup.sh");
    assert!(setup.status.success(), "benches/peer/setup.sh failed:\n{}", String::from_utf8_lossy(&setup.stderr));
    let python = PathBuf::from(String::from_utf8(setup.stdout).unwrap().trim().lines().last().unwrap().to_string());
    let peer = root.join("benches/peer/peer.py");

    let scene = root.join("target/bench-peer-scene-720p30-v1.mp4");
    if !scene.is_file() {
        eprintln!("rendering the {SCENE_SECS} s 1280x720 30 fps scene (1 s GOP) into {}...", scene.display());
        let partial = scene.with_extension("partial.mp4");
        let shows: Vec<(&str, u32, u32)> = SHOWS.iter().map(|(_, img, a, b)| (*img, *a, *b)).collect();
        // A silent audio track, as a real file has (and RTMP publishing needs).
        let silence = scene.with_extension("wav");
        write_silent_wav(&silence, SCENE_SECS);
        render_scene_at(&partial, &shows, SCENE_SECS, Some(&silence), (1280, 720), 30, 30);
        let _ = std::fs::remove_file(&silence);
        std::fs::rename(&partial, &scene).expect("keep the scene");
    }

    let dir = tempfile::tempdir().unwrap();
    let fp32 = livesku::paths::model_dir("default");
    let int8 = dir.path().join("int8");
    livesku_ok(&["quantize", "--model", s(&fp32), "--out", s(&int8)]);
    let catalog = demo_dir().join("catalog.jsonl");
    let mut models = Vec::new();
    for (name, model) in [("float32", fp32), ("int8", int8)] {
        let gallery = dir.path().join(format!("gallery-{name}"));
        livesku_ok(&["gallery", "build", "--model", s(&model), "--catalog", s(&catalog), "--out", s(&gallery)]);
        models.push((name, model, gallery));
    }
    let config = dir.path().join("peer.toml");
    std::fs::write(
        &config,
        format!(
            "[ingest]\nmax_rate_hz = 1.0\n[encoder]\nintra_threads = {threads}\n[encoder.localise]\nmax_regions = 0\n\
             [asr]\nenabled = false\n"
        ),
    )
    .unwrap();

    // The peer must compute what livesku computes: its embeddings of the frames it decodes against
    // livesku's encoder on the very same pictures.
    for (name, model, _) in &models {
        let dump = dir.path().join(format!("dump-{name}"));
        let out = Command::new(&python)
            .args([s(&peer), s(&scene), "--model", s(model), "--dump", s(&dump), "--dump-max", "12"])
            .output()
            .expect("run peer.py --dump");
        assert!(out.status.success(), "peer.py --dump: {}", String::from_utf8_lossy(&out.stderr));
        let (min, mean) = parity(model, &dump, threads);
        println!("parity, {name}: cosine of the peer's embeddings to livesku's encoder on the same 12 decoded frames: min {min:.6}, mean {mean:.6}");
        // int8: the tower quantises activations at run time per batch, and livesku's encoder splits the
        // frames into batches of its own, so the two differ by that rounding (measured min 0.9991).
        assert!(min > 0.998, "the peer does not reproduce livesku's pre-processing and pooling ({name}: {min})");
    }

    // What livesku's ingest samples from the file with these settings (the encoder embeds all of them).
    let ingest = Command::new(env!("CARGO_BIN_EXE_livesku"))
        .env("RUST_LOG", "warn")
        .args(["ingest", s(&scene), "--max-rate", "1"])
        .output()
        .expect("run livesku ingest");
    assert!(ingest.status.success(), "livesku ingest: {}", String::from_utf8_lossy(&ingest.stderr));
    let livesku_keyframes =
        String::from_utf8_lossy(&ingest.stdout)
        .lines()
        .filter(|l| serde_json::from_str::<Value>(l).is_ok_and(|v| v["kind"] == "keyframe"))
        .count() as u64;

    let mut results: Vec<(usize, &str, &str, Measured)> = Vec::new();
    for round in 0..rounds {
        for (name, model, gallery) in &models {
            let livesku_cmd = || {
                let mut c = Command::new(env!("CARGO_BIN_EXE_livesku"));
                c.env("RUST_LOG", "warn")
                    .args(["recognize", s(&scene), "--gallery", s(gallery), "--model", s(model), "--config", s(&config)]);
                c
            };
            let python_cmd = || {
                let mut c = Command::new(&python);
                c.args([s(&peer), s(&scene), "--gallery", s(gallery), "--model", s(model)])
                    .args(["--threads", &threads.to_string(), "--rate", "1", "--batch", &batch.to_string()]);
                c
            };
            let mut sides = [("livesku", livesku_cmd()), ("python", python_cmd())];
            if round % 2 == 1 {
                sides.reverse();
            }
            for (side, cmd) in sides {
                let m = start(cmd).finish(false);
                let (found, false_appearances) = m.accuracy();
                println!(
                    "round {} {name:7} {side:7}: wall {:6.2} s, CPU {:6.2} s, events {}, found {}/{} in order, false {} (load {})",
                    round + 1,
                    m.wall,
                    m.cpu,
                    m.events.len(),
                    found,
                    SHOWS.len(),
                    false_appearances,
                    loadavg()
                );
                results.push((round, name, side, m));
            }
        }
    }

    println!(
        "\n| model | side | wall s (median) | CPU s (median) | keyframes | keyframes per CPU s | video s per CPU s | found in order | false appearances |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    for (name, _, _) in &models {
        let mut cpus = Vec::new();
        for side in ["livesku", "python"] {
            let runs: Vec<&Measured> =
                results.iter().filter(|r| r.1 == *name && r.2 == side).map(|r| &r.3).collect();
            let (mut wall, mut cpu): (Vec<f64>, Vec<f64>) = runs.iter().map(|m| (m.wall, m.cpu)).unzip();
            let (w, c) = (median(&mut wall), median(&mut cpu));
            let found: Vec<String> = runs.iter().map(|m| m.accuracy().0.to_string()).collect();
            let false_: Vec<String> = runs.iter().map(|m| m.accuracy().1.to_string()).collect();
            let keyframes = if side == "livesku" { Some(livesku_keyframes) } else { runs[0].peer_keyframes() };
            let kf = keyframes.map_or("?".into(), |k| k.to_string());
            let kf_per_cpu = keyframes.map_or("?".into(), |k| format!("{:.2}", k as f64 / c));
            println!(
                "| {name} | {side} | {w:.2} | {c:.2} | {kf} | {kf_per_cpu} | {:.2} | {} of {} | {} |",
                SCENE_SECS as f64 / c,
                found.join(", "),
                SHOWS.len(),
                false_.join(", ")
            );
            cpus.push((c, w));
        }
        // Per round (same load for both sides): Python's CPU over livesku's.
        let mut per_round: Vec<f64> = (0..rounds)
            .filter_map(|r| {
                let get = |side: &str| results.iter().find(|x| x.0 == r && x.1 == *name && x.2 == side).map(|x| x.3.cpu);
                Some(get("python")? / get("livesku")?)
            })
            .collect();
        let shown: Vec<String> = per_round.iter().map(|x| format!("{x:.2}")).collect();
        println!(
            "| {name} | **ratio python / livesku** | {:.2}x | **{:.2}x** (per round: {}) | | | | | |",
            cpus[1].1 / cpus[0].1,
            median(&mut per_round),
            shown.join(", ")
        );
    }

    let streams = env_usize("LIVESKU_PEER_LIVE_STREAMS", 4);
    let live_rounds = env_usize("LIVESKU_PEER_LIVE_ROUNDS", 2);
    if streams > 0 && live_rounds > 0 {
        let secs = env_usize("LIVESKU_PEER_LIVE_SECS", 60) as u32;
        let (name, model, gallery) = &models[0];
        live(Live { streams, secs, rounds: live_rounds, threads, scene: &scene, model, gallery, python: &python, peer: &peer, dir: dir.path() });
        println!("(live streams: {name} model)");
    }
    println!("\nload average at the end: {}", loadavg());
}

struct Live<'a> {
    streams: usize,
    secs: u32,
    rounds: usize,
    threads: usize,
    scene: &'a Path,
    model: &'a Path,
    gallery: &'a Path,
    python: &'a Path,
    peer: &'a Path,
    dir: &'a Path,
}

/// N live RTMP streams (the scene published in real time to nginx-rtmp, fresh publishers for each side)
/// for `secs`: one `livesku run` on all of them against one peer process per stream, alternately.
/// Accuracy counts the order of appearances only ([`score_in_order`]).
fn live(l: Live) {
    let servers = common::Servers::start();
    let keys: Vec<String> = (0..l.streams).map(|i| format!("shop-{}", i + 1)).collect();
    let mut config = format!(
        "[ingest]\nmax_rate_hz = 1.0\n[encoder]\nintra_threads = {}\nmodel_dir = \"{}\"\n[encoder.localise]\n\
         max_regions = 0\n[asr]\nenabled = false\n[gallery]\npath = \"{}\"\n[publish]\nsink = \"stdout\"\n",
        l.threads,
        s(l.model),
        s(l.gallery)
    );
    for k in &keys {
        config += &format!("[[streams]]\nid = \"{k}\"\nuri = \"{}\"\n", servers.rtmp_url(k));
    }
    let config_path = l.dir.join("live.toml");
    std::fs::write(&config_path, config).unwrap();
    // Shows over by the end of the window (2 s to decide the last one).
    let expected = SHOWS.iter().filter(|(_, _, _, end)| *end + 2 <= l.secs).count();
    println!(
        "\nlive: {} RTMP streams of the scene (720p30, 1 keyframe/s each), {} s per side and round; expected per stream: {expected} showings",
        l.streams, l.secs
    );
    println!("\n| round | side | CPU s | CPU cores | keyframe-s per CPU s | found in order | false appearances | load |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut cpu: Vec<(&str, f64)> = Vec::new();
    for round in 0..l.rounds {
        let mut sides = ["livesku", "python"];
        if round % 2 == 1 {
            sides.reverse();
        }
        for side in sides {
            let publishers: Vec<common::Proc> =
                keys.iter().map(|k| common::publish_file_rtmp(l.scene, &servers.rtmp_url(k))).collect();
            std::thread::sleep(std::time::Duration::from_millis(1500));
            let running: Vec<Running> = if side == "livesku" {
                let mut c = Command::new(env!("CARGO_BIN_EXE_livesku"));
                c.env("RUST_LOG", "warn").args(["run", "--config", s(&config_path)]);
                vec![start(c)]
            } else {
                keys.iter()
                    .map(|k| {
                        let mut c = Command::new(l.python);
                        c.args([s(l.peer), &servers.rtmp_url(k), "--gallery", s(l.gallery), "--model", s(l.model)])
                            .args(["--threads", &l.threads.to_string(), "--rate", "1", "--stream-id", k]);
                        start(c)
                    })
                    .collect()
            };
            std::thread::sleep(std::time::Duration::from_secs(l.secs as u64));
            for r in &running {
                r.signal(libc::SIGTERM);
            }
            let done: Vec<Measured> = running.into_iter().map(|r| r.finish(true)).collect();
            drop(publishers);
            let total: f64 = done.iter().map(|m| m.cpu).sum();
            let events: Vec<Value> = done.into_iter().flat_map(|m| m.events).collect();
            if round == 0 {
                let story: Vec<String> = events
                    .iter()
                    .filter(|e| e["type"] == "product.appeared")
                    .map(|e| format!("{}:{}@{}", e["stream_id"].as_str().unwrap_or("?"), e["product_id"].as_str().unwrap_or("?"), e["first_seen"]["pts_ms"]))
                    .collect();
                eprintln!("{side} appeared (stream:product@first_seen pts_ms): {}", story.join(" "));
            }
            let (mut found, mut false_) = (0, 0);
            for k in &keys {
                let mine: Vec<Value> = events.iter().filter(|e| e["stream_id"] == k.as_str()).cloned().collect();
                let (f, x) = score_in_order(&mine, expected);
                found += f;
                false_ += x;
            }
            println!(
                "| {} | {side} | {total:.2} | {:.2} | {:.2} | {found} of {} | {false_} | {} |",
                round + 1,
                total / l.secs as f64,
                (l.streams as f64 * l.secs as f64) / total,
                expected * l.streams,
                loadavg()
            );
            cpu.push((side, total));
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }
    let sum = |side: &str| cpu.iter().filter(|c| c.0 == side).map(|c| c.1).sum::<f64>();
    println!("| all | **ratio python / livesku (CPU)** | **{:.2}x** | | | | | |", sum("python") / sum("livesku"));
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

fn livesku_ok(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_livesku"))
        .env("RUST_LOG", "warn")
        .args(args)
        .output()
        .expect("run livesku");
    assert!(out.status.success(), "livesku {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
}

struct Measured {
    wall: f64,
    cpu: f64,
    events: Vec<Value>,
    stderr: String,
}

impl Measured {
    /// (showings found in order, false appearances) of the whole file.
    fn accuracy(&self) -> (usize, usize) {
        score(&self.events, SHOWS.len())
    }

    /// Keyframes the peer embedded (its summary, the last line on stderr).
    fn peer_keyframes(&self) -> Option<u64> {
        let last: Value = serde_json::from_str(self.stderr.lines().last()?).ok()?;
        last["keyframes"].as_u64()
    }
}

/// A side's process, its output collected in the background.
struct Running {
    pid: libc::pid_t,
    start: Instant,
    out: std::thread::JoinHandle<String>,
    err: std::thread::JoinHandle<String>,
    what: String,
}

fn start(mut cmd: Command) -> Running {
    let what = format!("{cmd:?}");
    let start = Instant::now();
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start a side");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut v = String::new();
        let _ = stdout.read_to_string(&mut v);
        v
    });
    let err = std::thread::spawn(move || {
        let mut v = String::new();
        let _ = stderr.read_to_string(&mut v);
        v
    });
    Running { pid: child.id() as libc::pid_t, start, out, err, what }
}

impl Running {
    /// Waits for the end: wall time, CPU (user + system of the process and its threads, from wait4) and
    /// the events it printed. `stopped`: it was ended by a signal of ours, any exit status is fine.
    fn finish(self, stopped: bool) -> Measured {
        let (status, cpu) = wait4(self.pid);
        let wall = self.start.elapsed().as_secs_f64();
        let (out, err) = (self.out.join().unwrap(), self.err.join().unwrap());
        assert!(stopped || status == 0, "{} failed (wait status {status}):\n{err}", self.what);
        let events: Vec<Value> = out
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: not an event line ({e}): {l}", self.what)))
            .collect();
        Measured { wall, cpu, events, stderr: err }
    }

    fn signal(&self, sig: libc::c_int) {
        unsafe { libc::kill(self.pid, sig) };
    }
}

/// Against the known story: products whose `appeared` falls inside their showing (first seen at most 4 s
/// after it ended), counted in showing order; any other `appeared` is a false one.
fn score(events: &[Value], shows: usize) -> (usize, usize) {
    let appeared: Vec<(String, f64)> = events
        .iter()
        .filter(|e| e["type"] == "product.appeared")
        .map(|e| {
            (e["product_id"].as_str().unwrap().to_string(), e["first_seen"]["pts_ms"].as_f64().unwrap() / 1000.0)
        })
        .collect();
    let right = |(id, t): &(String, f64)| {
        SHOWS[..shows].iter().position(|(p, _, a, b)| p == id && *t >= *a as f64 && *t <= *b as f64 + 4.0)
    };
    let mut false_appearances = 0;
    let mut found = std::collections::BTreeSet::new();
    for a in &appeared {
        match right(a) {
            // A showing counts once, after the ones found before it; a second `appeared` within the
            // same showing (flapping) is a false one.
            Some(i) if found.iter().all(|&f| f < i) => {
                found.insert(i);
            }
            _ => false_appearances += 1,
        }
    }
    (found.len(), false_appearances)
}

/// Live streams: the stream clock starts where the consumer joined (livesku) or where the publisher did
/// (FFmpeg), so only the order counts: `appeared` events that follow the showings in order are found,
/// the others false.
fn score_in_order(events: &[Value], shows: usize) -> (usize, usize) {
    let (mut next, mut found, mut false_) = (0, 0, 0);
    for e in events.iter().filter(|e| e["type"] == "product.appeared") {
        let id = e["product_id"].as_str().unwrap_or_default();
        match SHOWS[next.min(shows)..shows].iter().position(|(p, ..)| *p == id) {
            Some(i) => {
                found += 1;
                next += i + 1;
            }
            None => false_ += 1,
        }
    }
    (found, false_)
}

fn wait4(pid: libc::pid_t) -> (i32, f64) {
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4: {}", std::io::Error::last_os_error());
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (status, secs(usage.ru_utime) + secs(usage.ru_stime))
}

/// Cosine of the peer's embeddings (`dump/embeddings.f32`) to livesku's encoder on the same frames.
fn parity(model: &Path, dump: &Path, threads: usize) -> (f32, f32) {
    let meta: Value = serde_json::from_slice(&std::fs::read(dump.join("dump.json")).unwrap()).unwrap();
    let dim = meta["dim"].as_u64().unwrap() as usize;
    let theirs: Vec<f32> = std::fs::read(dump.join("embeddings.f32"))
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let frames: Vec<RgbImage> = meta["frames"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| image::open(dump.join(f.as_str().unwrap())).unwrap().to_rgb8())
        .collect();
    let cfg = EncoderConfig { model_dir: Some(model.to_path_buf()), intra_threads: threads, ..Default::default() };
    let mut enc = Encoder::open(&cfg).expect("open livesku's encoder");
    let clips: Vec<[&RgbImage; 1]> = frames.iter().map(|f| [f]).collect();
    let refs: Vec<&[&RgbImage]> = clips.iter().map(|c| c.as_slice()).collect();
    let ours = enc.encode(&refs, &vec![None; refs.len()], Side::Query).expect("encode");
    let cos: Vec<f32> = ours
        .iter()
        .zip(theirs.chunks_exact(dim))
        .map(|(a, b)| {
            let a = &a[..dim];
            let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            let n = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
            dot / (n(a) * n(b))
        })
        .collect();
    assert_eq!(cos.len(), frames.len());
    (cos.iter().copied().fold(f32::INFINITY, f32::min), cos.iter().sum::<f32>() / cos.len() as f32)
}

fn nproc() -> usize {
    std::thread::available_parallelism().map_or(0, |n| n.get())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string()))
        .unwrap_or_else(|| "unknown CPU".into())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(|_| "?".into(), |l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}
