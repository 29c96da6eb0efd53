//! Ingest cost: CPU seconds per minute of 720p30 H.264 in keyframe mode against full decode (same file,
//! one run), then the CPU share and resident memory of live 720p30 RTMP streams, 1 vs 4 at once.
//! Prints figures; recorded in BENCHMARKS.md. Run: `cargo bench --bench ingest`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// CPU seconds (user + system) and peak RSS (MB) of one child run, from wait4's rusage.
fn measure(mut cmd: Command) -> (f64, f64, f64) {
    let start = Instant::now();
    let child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn livesku");
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32, "wait4 failed");
    assert_eq!(status, 0, "livesku exited with status {status}");
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(usage.ru_utime) + secs(usage.ru_stime), usage.ru_maxrss as f64 / 1024.0, start.elapsed().as_secs_f64())
}

fn ingest(args: &[&str]) -> Command {
    let mut c = livesku();
    c.arg("ingest").args(args);
    c
}

fn media(dir: &Path) -> std::path::PathBuf {
    let file = dir.join("720p30-60s.mp4");
    if !file.is_file() {
        eprintln!("generating 60 s of 720p30 H.264 + AAC (1 s GOP) ...");
        make_file(&file, &StreamSpec { width: 1280, height: 720, fps: 30, gop: 30, pattern: "ball", audio: true }, 60);
    }
    file
}

fn main() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-media");
    std::fs::create_dir_all(&dir).unwrap();
    let file = media(&dir);
    let f = file.to_str().unwrap();

    println!("## Decoding cost, 60 s of 720p30 H.264 (file, as fast as possible)");
    let (key_cpu, key_rss, _) = measure(ingest(&[f, "--max-rate", "0", "--dedup-distance", "0"]));
    let (all_cpu, all_rss, _) = measure(ingest(&[f, "--decode", "all", "--max-rate", "0", "--dedup-distance", "0"]));
    println!("keyframes only : {key_cpu:6.2} CPU s per minute of video (peak RSS {key_rss:.0} MB)");
    println!("full decode    : {all_cpu:6.2} CPU s per minute of video (peak RSS {all_rss:.0} MB)");
    println!("ratio          : keyframe mode costs 1/{:.1} of full decode (target: <= 1/8)", all_cpu / key_cpu);

    println!("\n## Live 720p30 RTMP streams in keyframe mode (45 s each run)");
    let servers = Servers::start();
    let secs = 45;
    let mut rows = Vec::new();
    for n in [1usize, 4] {
        let urls: Vec<String> = (0..n).map(|i| servers.rtmp_url(&format!("b{n}-{i}"))).collect();
        let _pubs: Vec<Proc> = urls.iter().map(|u| publish_file_rtmp(&file, u)).collect();
        std::thread::sleep(Duration::from_secs(1));
        let mut args = vec!["--duration".to_string(), secs.to_string(), "--dedup-distance".into(), "0".into()];
        args.extend(urls);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (cpu, rss, wall) = measure(ingest(&args));
        println!("{n} stream(s): {:5.2} % of one core in total, peak RSS {rss:.1} MB", 100.0 * cpu / wall);
        rows.push((n as f64, cpu / wall, rss));
    }
    let (n1, c1, r1) = rows[0];
    let (n4, c4, r4) = rows[1];
    println!(
        "per added stream: {:.2} % of a core (target < 3 %), {:.1} MB resident (target < 20 MB)",
        100.0 * (c4 - c1) / (n4 - n1),
        (r4 - r1) / (n4 - n1)
    );
    println!("first stream incl. process baseline: {:.2} % of a core, {r1:.1} MB", 100.0 * c1);
}
