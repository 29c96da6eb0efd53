//! The whole service under live load: N concurrent 720p RTMP streams (1 keyframe/s each, one sampled
//! keyframe per second) through ingest, the shared encoder, gallery search, the tracker and a real Kafka
//! broker (tansu), read back by a consumer group. The service runs in this process so its threads can be
//! measured; streams are added at run time, phase by phase (1, 2, 4, ... streams).
//!
//! Per phase it prints: keyframes/s processed, keyframes dropped (ingest + encoder), CPU (cores),
//! resident memory, and keyframe-to-Kafka latency: from the deciding keyframe leaving the decoder
//! (`last_seen.utc` of `appeared`/`updated` events) to a consumer receiving the event. At the end: where
//! the CPU time went, by thread (decode / encode / search+track / publish), and peak RSS.
//!
//!     cargo bench --bench service                      # phases 1,2,4,...,12 streams, 30 s each
//!     LIVESKU_BENCH_STREAMS=1,3 LIVESKU_BENCH_SECS=20 cargo bench --bench service
//!     LIVESKU_BENCH_MODEL=/tmp/int8 cargo bench --bench service   # another model dir (e.g. `livesku quantize`)
//!     LIVESKU_BENCH_MAX_BATCH=8 cargo bench --bench service        # `encoder.max_batch` (default 16)
//!     LIVESKU_BENCH_MAX_REGIONS=0 cargo bench --bench service      # `encoder.localise.max_regions` (0 = off)
//!
//! Needs scripts/setup.sh (nginx-rtmp, tansu, models, demo products); a missing piece fails loudly.

#[path = "../tests/common/mod.rs"]
#[allow(dead_code, unused_imports)]
mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime};

use common::broker::Broker;
use common::scene::{demo_gallery, demo_gallery_with, render_scene_sized, write_silent_wav};
use common::{Proc, Servers, publish_file_rtmp};
use livesku::publish::{Publisher, SinkKind};
use livesku::service::{Service, ServiceConfig};
use parking_lot::Mutex;
use rdkafka::Message;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

const TOPIC: &str = "detections";
const SCENE_SECS: u32 = 60;

fn main() {
    let counts: Vec<usize> = std::env::var("LIVESKU_BENCH_STREAMS")
        .unwrap_or_else(|_| "1,2,4,6,8,10,12".into())
        .split(',')
        .map(|n| n.trim().parse().expect("LIVESKU_BENCH_STREAMS: comma-separated stream counts"))
        .collect();
    let phase = Duration::from_secs_f64(
        std::env::var("LIVESKU_BENCH_SECS").map_or(30.0, |s| s.parse().expect("LIVESKU_BENCH_SECS: seconds")),
    );
    let warmup = Duration::from_secs(8);

    let model = std::env::var_os("LIVESKU_BENCH_MODEL").map(std::path::PathBuf::from);
    let dir = tempfile::tempdir().unwrap();
    let gallery = match &model {
        None => demo_gallery(dir.path()),
        Some(m) => demo_gallery_with(dir.path(), &["--model", m.to_str().expect("LIVESKU_BENCH_MODEL: a UTF-8 path")]),
    };
    let shows = [
        ("coffee.png", 0, 8),
        ("rocket.jpg", 10, 18),
        ("chelsea.png", 20, 28),
        ("motorcycle_left.png", 30, 38),
        ("coffee.png", 40, 48),
        ("rocket.jpg", 50, 58),
    ];
    // Rendering 720p takes minutes: kept between runs (delete it after changing the scene).
    let scene = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-scene-720p-v1.mp4");
    if !scene.is_file() {
        eprintln!("rendering a {SCENE_SECS} s 1280x720 scene (1 s GOP) into {}...", scene.display());
        let silence = dir.path().join("silence.wav");
        write_silent_wav(&silence, SCENE_SECS);
        let partial = dir.path().join("scene.mp4");
        render_scene_sized(&partial, &shows, SCENE_SECS, Some(&silence), (1280, 720), 15);
        std::fs::copy(&partial, &scene).expect("cache the scene");
    }

    let servers = Servers::start();
    let broker = Broker::start(&[(TOPIC, 8)]);
    let mut cfg = ServiceConfig::default();
    cfg.gallery.path = Some(gallery.into());
    cfg.encoder.model_dir = model;
    if let Ok(b) = std::env::var("LIVESKU_BENCH_MAX_BATCH") {
        cfg.encoder.max_batch = b.parse().expect("LIVESKU_BENCH_MAX_BATCH: a batch size");
    }
    if let Ok(r) = std::env::var("LIVESKU_BENCH_MAX_REGIONS") {
        cfg.encoder.localise.max_regions = r.parse().expect("LIVESKU_BENCH_MAX_REGIONS: a count");
    }
    cfg.ingest.max_rate_hz = 1.0;
    // Keyframes only: speech has its own benchmark (benches/asr.rs).
    cfg.asr.enabled = false;
    cfg.publish.sink = SinkKind::Kafka;
    cfg.publish.kafka.brokers = broker.brokers();
    cfg.publish.kafka.topic = TOPIC.into();

    let rss0 = rss_kb();
    let publisher = Arc::new(Publisher::start(&cfg.publish).expect("start the Kafka sink"));
    let sink = publisher.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let _guard = runtime.enter();
    let service = Service::start(&cfg, move |ev| {
        sink.publish(ev);
    })
    .expect("start the service");
    let rss_models = rss_kb();
    let cpu_start = thread_cpu();
    println!(
        "service started: RSS {} MB before, {} MB with models and gallery loaded",
        rss0 / 1024,
        rss_models / 1024
    );

    let phase_no = Arc::new(AtomicUsize::new(0));
    let latencies: Arc<Mutex<Vec<(usize, f64)>>> = Arc::default();
    let consumer = spawn_consumer(&broker.brokers(), phase_no.clone(), latencies.clone());
    let process_cpu_start = process_cpu_secs();

    println!(
        "\n| streams | keyframes/s | dropped | CPU (cores) | machine CPU (cores) | RSS MB | events | latency p50 ms | p99 ms | max ms |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut publishers: Vec<(String, Proc)> = Vec::new();
    let mut rows = Vec::new();
    let mut encoder_rows = Vec::new();
    for (i, &n) in counts.iter().enumerate() {
        while publishers.len() < n {
            let key = format!("shop-{}", publishers.len() + 1);
            let url = servers.rtmp_url(&key);
            publishers.push((url.clone(), publish_file_rtmp(&scene, &url)));
            service.add_stream(Some(&key), &url).expect("add stream");
        }
        // Warm-up (connect, first keyframes); then measure.
        keep_publishing(&mut publishers, &scene, warmup);
        phase_no.store(i + 1, Relaxed);
        let (kf0, drop0) = totals(&service);
        let enc0 = encoder_totals(&service);
        let (cpu_a, busy_a, t_a) = (process_cpu_secs(), machine_busy_secs(), Instant::now());
        keep_publishing(&mut publishers, &scene, phase);
        let (kf1, drop1) = totals(&service);
        let enc1 = encoder_totals(&service);
        let secs = t_a.elapsed().as_secs_f64();
        let cores = (process_cpu_secs() - cpu_a) / secs;
        let machine = (machine_busy_secs() - busy_a) / secs;
        let rss = rss_kb();
        phase_no.store(0, Relaxed);
        std::thread::sleep(Duration::from_secs(2)); // events of this phase still in flight
        let lat: Vec<f64> = latencies.lock().iter().filter(|(p, _)| *p == i + 1).map(|(_, l)| *l).collect();
        let (p50, p99, max) = (pct(&lat, 0.5), pct(&lat, 0.99), pct(&lat, 1.0));
        println!(
            "| {n} | {:.2} | {} | {cores:.2} | {machine:.2} | {} | {} | {p50:.0} | {p99:.0} | {max:.0} |",
            (kf1 - kf0) as f64 / secs,
            drop1 - drop0,
            rss / 1024,
            lat.len()
        );
        rows.push((n, rss));
        let frames = (enc1[1] - enc0[1]).max(1) as f64;
        encoder_rows.push(format!(
            "| {n} | {:.1} | {:.2} | {} |",
            frames / (enc1[0] - enc0[0]).max(1) as f64,
            (enc1[2] - enc0[2]) as f64 / frames,
            enc1[3] - enc0[3]
        ));
    }

    println!("\n| streams | frames per batch | region crops per frame | frames without regions (shed) |\n|---|---|---|---|");
    encoder_rows.iter().for_each(|r| println!("{r}"));

    // Memory: the slope over the phases is the cost of one more stream.
    if let (Some(&(n0, r0)), Some(&(n1, r1))) = (rows.first(), rows.last())
        && n1 > n0
    {
        println!(
            "\nRSS per added stream: {:.1} MB (from {n0} to {n1} streams); models + gallery: {} MB; peak RSS {} MB",
            (r1 as f64 - r0 as f64) / 1024.0 / (n1 - n0) as f64,
            (rss_models - rss0) / 1024,
            peak_rss_kb() / 1024
        );
    }
    print_cpu_breakdown(&cpu_start, &thread_cpu(), process_cpu_secs() - process_cpu_start);

    drop(publishers);
    runtime.block_on(service.shutdown(tokio::time::Instant::now() + Duration::from_secs(20)));
    drop(consumer);
    if let Ok(p) = Arc::try_unwrap(publisher) {
        let report = p.shutdown(Duration::from_secs(10));
        println!("\nKafka: {:?}", report.metrics);
    }
}

/// Sleeps `d`, restarting any publisher whose file ended (each restart is a reconnect for livesku).
fn keep_publishing(publishers: &mut [(String, Proc)], scene: &std::path::Path, d: Duration) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        for (url, p) in publishers.iter_mut() {
            if p.0.try_wait().ok().flatten().is_some() {
                *p = publish_file_rtmp(scene, url);
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// (keyframes accepted by ingest, keyframes dropped: at the stream's full encoder queue, or expired in
/// it) over all streams.
fn totals(service: &Service) -> (u64, u64) {
    let infos = service.stream_infos();
    let kf = infos.iter().map(|i| i.stats.keyframes).sum();
    let dropped = infos.iter().map(|i| i.stats.dropped).sum::<u64>()
        + service.encoder_metrics.expired.load(std::sync::atomic::Ordering::Relaxed);
    (kf, dropped)
}

/// The encoder's totals: [batches, frames, region crops, frames shed of their regions].
fn encoder_totals(service: &Service) -> [u64; 4] {
    let m = &service.encoder_metrics;
    [&m.batches, &m.frames, &m.region_crops, &m.regions_shed].map(|c| c.load(std::sync::atomic::Ordering::Relaxed))
}

struct ConsumerThread {
    stop: Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Drop for ConsumerThread {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A consumer group member recording, for `appeared`/`updated` events, receive time - `last_seen.utc`.
fn spawn_consumer(
    brokers: &str,
    phase: Arc<AtomicUsize>,
    out: Arc<Mutex<Vec<(usize, f64)>>>,
) -> ConsumerThread {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "bench")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "10")
        .create()
        .expect("create consumer");
    consumer.subscribe(&[TOPIC]).expect("subscribe");
    // Join the group before measuring: a rebalance in the middle of a phase would count as latency.
    let joined = Instant::now() + Duration::from_secs(30);
    while consumer.assignment().map_or(0, |a| a.count()) == 0 {
        assert!(Instant::now() < joined, "the bench consumer got no partitions within 30 s");
        let _ = consumer.poll(Duration::from_millis(100));
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s = stop.clone();
    let handle = std::thread::spawn(move || {
        while !s.load(Relaxed) {
            let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) else { continue };
            let now = SystemTime::now();
            let p = phase.load(Relaxed);
            let Some(ev) = m.payload().and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
            else {
                continue;
            };
            if p == 0 || ev["type"] == "product.disappeared" {
                continue;
            }
            let seen = ev["last_seen"]["utc"].as_str().and_then(|t| humantime::parse_rfc3339(t).ok());
            if let Some(d) = seen.and_then(|t| now.duration_since(t).ok()) {
                out.lock().push((p, d.as_secs_f64() * 1000.0));
            }
        }
    });
    ConsumerThread { stop, handle: Some(handle) }
}

fn pct(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// CPU seconds (user + system) per thread, by thread id: (name, seconds).
fn thread_cpu() -> BTreeMap<u32, (String, f64)> {
    let tick = 100.0; // USER_HZ on Linux
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return out };
    for t in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else { continue };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        let name = stat[open + 1..close].to_string();
        let f: Vec<&str> = stat[close + 2..].split(' ').collect();
        let (ut, st) = (f[11].parse::<f64>().unwrap_or(0.0), f[12].parse::<f64>().unwrap_or(0.0));
        if let Ok(tid) = t.file_name().to_string_lossy().parse() {
            out.insert(tid, (name, (ut + st) / tick));
        }
    }
    out
}

/// Groups thread CPU into pipeline stages by thread name.
/// `process_total`: the process's CPU time over the same span, which also counts threads that have
/// exited meanwhile (the pipelines of streams that reconnected).
fn print_cpu_breakdown(
    before: &BTreeMap<u32, (String, f64)>,
    after: &BTreeMap<u32, (String, f64)>,
    process_total: f64,
) {
    let main_name = after.values().next().map(|(n, _)| n.clone()).unwrap_or_default();
    let mut stages: BTreeMap<&str, f64> = BTreeMap::new();
    let mut names: BTreeMap<String, f64> = BTreeMap::new();
    for (tid, (name, secs)) in after {
        let d = secs - before.get(tid).map_or(0.0, |(_, s)| *s);
        let stage = match name.as_str() {
            "livesku-encoder" => "encode (preprocess + ONNX Runtime, batcher thread)",
            // ONNX Runtime's intra-op pool threads carry the name of the thread that made the session.
            n if n == main_name => "encode (ONNX Runtime intra-op pool) + bench main",
            "livesku-matcher" => "search + track + events",
            "livesku-router" => "route",
            n if n.starts_with("rdk:") || n == "livesku-publish" => {
                "publish (librdkafka, sink thread) + bench consumer"
            }
            n if n.starts_with("tokio") => "stream supervisors (tokio)",
            _ => "ingest: GStreamer (network, demux, decode key units, scale)",
        };
        *stages.entry(stage).or_default() += d;
        *names.entry(name.clone()).or_default() += d;
    }
    let living: f64 = stages.values().sum();
    if process_total > living {
        *stages
            .entry("ingest: GStreamer threads since exited (pipelines replaced at reconnects)")
            .or_default() += process_total - living;
    }
    let total: f64 = stages.values().sum();
    println!(
        "\nCPU time by stage over the whole run ({total:.1} CPU s):\n\n| stage | CPU s | share |\n|---|---|---|"
    );
    let mut sorted: Vec<_> = stages.into_iter().collect();
    sorted.sort_by(|a, b| b.1.total_cmp(&a.1));
    for (stage, s) in sorted {
        println!("| {stage} | {s:.1} | {:.0} % |", 100.0 * s / total.max(1e-9));
    }
    let mut top: Vec<_> = names.into_iter().collect();
    top.sort_by(|a, b| b.1.total_cmp(&a.1));
    let top: Vec<String> = top.iter().take(12).map(|(n, s)| format!("{n} {s:.1}")).collect();
    println!("\nbusiest thread names (CPU s): {}", top.join(", "));
}

/// User + system CPU seconds of the whole process, threads that have exited included.
/// CPU seconds the whole machine has spent busy (all processes: the bench's publishers, nginx and the
/// broker share the two cores with the service), from /proc/stat.
fn machine_busy_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else { return 0.0 };
    let Some(cpu) = stat.lines().next() else { return 0.0 };
    let f: Vec<f64> = cpu.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal guest guest_nice: guest time is inside user already,
    // steal is the hypervisor's.
    [0, 1, 2, 5, 6].iter().filter_map(|&i| f.get(i)).sum::<f64>() / 100.0
}

fn process_cpu_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    let Some(close) = stat.rfind(')') else { return 0.0 };
    let f: Vec<&str> = stat[close + 2..].split(' ').collect();
    (f[11].parse::<f64>().unwrap_or(0.0) + f[12].parse::<f64>().unwrap_or(0.0)) / 100.0
}

fn status_kb(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with(key)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn rss_kb() -> u64 {
    status_kb("VmRSS:")
}

fn peak_rss_kb() -> u64 {
    status_kb("VmHWM:")
}
