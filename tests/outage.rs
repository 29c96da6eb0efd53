//! Broker outages against a real `livesku run` (Kafka sink, outbox on disk) with four live RTMP streams
//! showing products: a loopback proxy (tests/common/proxy.rs) cuts the service off the broker (tansu) for
//! 60 s while episodes open and close. Once with the service running through the outage, once with it
//! killed (SIGKILL) during the outage and restarted on the same outbox. Nothing persisted is lost, each
//! stream's order is kept, every episode ends (those open at the kill by the restart, `end_reason =
//! "restart"`), and a consumer that dedupes on `event_id` sees every event once. The figures
//! printed here are in BENCHMARKS.md ("Issue 13: broker outage").

mod common;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use common::broker::{Broker, Received};
use common::proxy::Proxy;
use common::scene::{demo_gallery, render_scene, write_silent_wav};
use common::service::Service;
use common::{Proc, Servers, publish_file_rtmp};
use livesku::publish::Outbox;
use serde_json::{Value, json};

const TOPIC: &str = "detections";
const STREAMS: [&str; 4] = ["shop0", "shop1", "shop2", "shop3"];
const OUTAGE: Duration = Duration::from_secs(60);

/// One service at a time: each loads the model, and the machine has 2 cores.
static SERIAL: Mutex<()> = Mutex::new(());

struct Fixture {
    dir: tempfile::TempDir,
    gallery: String,
    servers: Servers,
    broker: Broker,
    proxy: Proxy,
    video: PathBuf,
}

impl Fixture {
    /// Gallery, RTMP server, a 100 s scene whose products change every 20-30 s (so episodes open and close
    /// during the outage), and a broker that clients reach through the proxy only.
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let gallery = demo_gallery(dir.path());
        let wav = dir.path().join("silence.wav");
        write_silent_wav(&wav, 100);
        let video = dir.path().join("scene.mp4");
        let shows = [("coffee.png", 0, 20), ("rocket.jpg", 30, 50), ("coffee.png", 60, 80), ("rocket.jpg", 88, 100)];
        render_scene(&video, &shows, 100, Some(&wav));
        let broker_port = common::free_port();
        let proxy = Proxy::start(broker_port);
        let broker = Broker::start_advertising(broker_port, proxy.port, &[(TOPIC, 4)]);
        Fixture { dir, gallery, servers: Servers::start(), broker, proxy, video }
    }

    fn outbox(&self) -> PathBuf {
        self.dir.path().join("spool/outbox.redb")
    }

    fn service(&self) -> Service {
        let publish = format!(
            "sink = \"kafka\"\nflush_timeout_ms = 5000\n[publish.kafka]\nbrokers = \"127.0.0.1:{}\"\n\
             topic = \"{TOPIC}\"\n[publish.outbox]\npath = {:?}\n",
            self.proxy.port,
            self.outbox()
        );
        Service::start_publishing(&self.gallery, &publish, "")
    }

    /// Starts the four live publishers.
    fn publish(&self) -> Vec<Proc> {
        STREAMS.iter().map(|id| publish_file_rtmp(&self.video, &self.servers.rtmp_url(id))).collect()
    }

    fn add_streams(&self, svc: &Service) {
        for id in STREAMS {
            let body = json!({"id": id, "uri": self.servers.rtmp_url(id), "options": {"max_rate_hz": 1.0, "dedup_max_distance": 0}});
            let r = svc.send("POST", "/streams", Some(&body));
            assert_eq!(r.status, 201, "add {id}: {}", r.text());
        }
    }
}

fn metric(svc: &Service, name: &str) -> u64 {
    svc.metric(name).unwrap_or_else(|| panic!("no {name} in /metrics:\n{}", svc.get("/metrics").text())) as u64
}

fn pending(svc: &Service) -> u64 {
    metric(svc, "livesku_publish_buffered_events")
}

/// Waits until every stream has logged a `product.appeared`, i.e. the tracker runs on all four.
fn wait_all_appeared(svc: &Service, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let log = svc.log();
        let seen = |id: &str| log.lines().any(|l| l.contains("product.appeared") && l.contains(&format!("stream={id} ")));
        if STREAMS.iter().all(|id| seen(id)) {
            return;
        }
        assert!(Instant::now() < deadline, "not every stream showed a product within {timeout:?}:\n{log}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until the outbox is empty; returns how long it took.
fn wait_drained(svc: &Service, timeout: Duration) -> Duration {
    let start = Instant::now();
    while pending(svc) > 0 {
        assert!(start.elapsed() < timeout, "outbox not drained within {timeout:?}:\n{}", svc.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    start.elapsed()
}

/// Waits out the rest of the outage, sampling the outbox; returns the most events seen pending.
fn ride_out(svc: &Service, until: Instant) -> u64 {
    let mut peak = 0;
    while Instant::now() < until {
        peak = peak.max(pending(svc));
        std::thread::sleep(Duration::from_millis(250));
    }
    peak
}

/// SIGTERM: the service closes every open episode, delivers everything and exits; returns the
/// publisher's final counters from its "event sink closed" log line (`accepted: N, ...`). Removing the
/// streams instead would not do: keyframes already sampled are still matched after the removal.
fn finish(mut svc: Service) -> (HashMap<String, u64>, String) {
    svc.terminate();
    let status = svc.wait_exit(Duration::from_secs(30));
    let log = svc.log();
    assert!(status.success(), "{status}:\n{log}");
    let line = log.lines().find(|l| l.contains("event sink closed")).unwrap_or_else(|| panic!("no final counters:\n{log}"));
    let counters = line
        .split(['{', ',', '}'])
        .filter_map(|kv| kv.split_once(": "))
        .filter_map(|(k, v)| Some((k.trim().to_string(), v.trim().parse().ok()?)))
        .collect::<HashMap<_, _>>();
    assert_eq!(counters.get("buffered"), Some(&0), "left in the outbox at exit: {line}");
    (counters, log)
}

/// What a consumer that dedupes on `event_id` keeps (first occurrences, in topic order), and how many
/// duplicates it dropped. Checks keys and per-stream order on the way.
fn dedupe(got: &[Received]) -> (Vec<Value>, usize) {
    let mut seen = HashSet::new();
    let mut kept = Vec::new();
    for m in got {
        let e: Value = serde_json::from_slice(&m.payload).expect("payload is JSON");
        assert_eq!(m.key.as_deref(), e["stream_id"].as_str(), "key = stream id: {e}");
        if seen.insert(e["event_id"].as_str().unwrap().to_string()) {
            kept.push(e);
        }
    }
    let dups = got.len() - kept.len();
    (kept, dups)
}

/// Per stream: emission order kept (`emitted_at` never goes back), and each episode is appeared,
/// updated..., disappeared with nothing after its end. Returns the episodes left open.
fn check_streams(events: &[Value]) -> Vec<String> {
    let mut last: HashMap<&str, &str> = HashMap::new();
    let mut episodes: HashMap<&str, Vec<&str>> = HashMap::new();
    for e in events {
        let (stream, at) = (e["stream_id"].as_str().unwrap(), e["emitted_at"].as_str().unwrap());
        if let Some(prev) = last.insert(stream, at) {
            assert!(prev <= at, "{stream}: an event emitted at {at} arrived after one emitted at {prev}");
        }
        let kinds = episodes.entry(e["episode_id"].as_str().unwrap()).or_default();
        assert!(kinds.last() != Some(&"product.disappeared"), "an event after its episode's end: {e}");
        kinds.push(e["type"].as_str().unwrap());
    }
    let mut open = Vec::new();
    for (id, kinds) in &episodes {
        assert_eq!(kinds[0], "product.appeared", "episode {id} has no start: {kinds:?}");
        assert!(kinds[1..].iter().all(|k| *k != "product.appeared"), "episode {id}: {kinds:?}");
        if kinds.last() != Some(&"product.disappeared") {
            open.push(id.to_string());
        }
    }
    open
}

fn now_utc() -> String {
    humantime::format_rfc3339_millis(SystemTime::now()).to_string()
}

fn kinds(events: &[Value], kind: &str) -> usize {
    events.iter().filter(|e| e["type"] == kind).count()
}

#[test]
fn sixty_seconds_without_the_broker_lose_nothing_and_keep_each_streams_order() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut fx = Fixture::new();
    let svc = fx.service();
    let _publishers = fx.publish();
    fx.add_streams(&svc);
    wait_all_appeared(&svc, Duration::from_secs(90));

    fx.proxy.cut();
    let cut = Instant::now();
    let before = metric(&svc, "livesku_publish_accepted_total");
    let peak_events = ride_out(&svc, cut + OUTAGE);
    let during = metric(&svc, "livesku_publish_accepted_total") - before;
    assert!(peak_events > 0, "nothing was pending during the outage");
    fx.proxy.restore();
    let drain = wait_drained(&svc, Duration::from_secs(60));
    let (counters, log) = finish(svc);

    let accepted = counters["accepted"];
    assert_eq!(counters["dropped"], 0, "events refused");
    let peak_bytes = counters["outbox_peak_bytes"];
    let got = fx.broker.consume(TOPIC, "outage-1", accepted as usize, Duration::from_secs(60), Duration::from_secs(3));
    let (events, dups) = dedupe(&got);
    assert_eq!(events.len() as u64, accepted, "every persisted event arrives (lost = accepted - distinct)");
    let open = check_streams(&events);
    assert!(open.is_empty(), "episodes without their product.disappeared: {open:?}");
    for id in STREAMS {
        assert!(events.iter().any(|e| e["stream_id"] == id), "no events of {id}");
    }
    eprintln!(
        "outage 60 s, 4 streams: {accepted} events published ({during} during the outage; {} appeared, {} disappeared), \
         0 lost, {dups} duplicates before dedupe, 0 after; outbox peak {peak_events} events / {peak_bytes} bytes; \
         drained {drain:.1?} after the broker was back",
        kinds(&events, "product.appeared"),
        kinds(&events, "product.disappeared"),
    );
    assert!(!log.contains("panicked"), "{log}");
}

/// The event ids persisted in an outbox file that no process holds, and the episodes it has open.
fn outbox_ids(path: &Path) -> (Vec<String>, Vec<String>) {
    let outbox = Outbox::open(Some(path)).expect("open the killed service's outbox");
    let pending = outbox.read_from(0, usize::MAX).unwrap();
    let ids = pending.iter().map(|p| serde_json::from_slice::<Value>(&p.payload).unwrap()["event_id"].as_str().unwrap().to_string()).collect();
    (ids, outbox.open_episodes().unwrap().into_iter().map(|(id, _)| id).collect())
}

#[test]
fn sigkill_during_the_outage_loses_nothing_persisted_after_a_restart_on_the_same_outbox() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut fx = Fixture::new();
    let mut first = fx.service();
    let _publishers = fx.publish();
    fx.add_streams(&first);
    wait_all_appeared(&first, Duration::from_secs(90));

    fx.proxy.cut();
    let (cut, cut_at) = (Instant::now(), now_utc());
    // Half-way through the outage, with events waiting in the outbox: SIGKILL. Nothing is delivered while
    // the proxy is cut, so the removed count read just before the kill is final.
    ride_out(&first, cut + OUTAGE / 2);
    let delivered_first = metric(&first, "livesku_publish_outbox_removed_total");
    first.kill();
    let (persisted, open_at_kill) = outbox_ids(&fx.outbox());
    assert!(!persisted.is_empty(), "nothing was pending at the kill");

    // Restarted on the same outbox while the broker is still unreachable; the streams are added again.
    let second = fx.service();
    // The restart finds the killed run's events and ends the episodes it left open (one event each).
    let ended_at_restart = open_at_kill.len() as u64;
    assert_eq!(pending(&second), persisted.len() as u64 + ended_at_restart, "the restart finds the killed run's events");
    fx.add_streams(&second);
    let peak_events = ride_out(&second, cut + OUTAGE);
    fx.proxy.restore();
    let back_at = now_utc();
    let drain = wait_drained(&second, Duration::from_secs(60));
    let second_pid = second.pid;
    let (counters, log) = finish(second);
    let (accepted_second, peak_bytes) = (counters["accepted"], counters["outbox_peak_bytes"]);

    let total = delivered_first + persisted.len() as u64 + ended_at_restart + accepted_second;
    let got = fx.broker.consume(TOPIC, "outage-2", total as usize, Duration::from_secs(60), Duration::from_secs(3));
    let (events, dups) = dedupe(&got);
    let listing: Vec<String> = events
        .iter()
        .map(|e| format!("{} {} {} {} {}", e["emitted_at"], e["stream_id"], e["type"], e["event_id"], e["worker"]))
        .collect();
    let ids: HashSet<&str> = events.iter().map(|e| e["event_id"].as_str().unwrap()).collect();
    let missing: Vec<&String> = persisted.iter().filter(|id| !ids.contains(id.as_str())).collect();
    assert!(missing.is_empty(), "persisted before the kill and never delivered: {missing:?}\n{listing:#?}");
    // `worker` is HOST/PID: each run's events apart (an end made at the restart keeps its episode's worker).
    let of = |pid: u32| events.iter().filter(|e| e["worker"].as_str().unwrap().ends_with(&format!("/{pid}"))).count() as u64;
    let (run1, run2) = (of(first.pid), of(second_pid));
    assert_eq!(
        (run1, run2, events.len() as u64),
        (delivered_first + persisted.len() as u64 + ended_at_restart, accepted_second, run1 + run2),
        "killed run: delivered before the kill ({delivered_first}) + persisted at the kill ({}) + its open episodes \
         ended at the restart ({ended_at_restart}); restart: accepted ({accepted_second}); nothing else: {listing:#?}",
        persisted.len()
    );
    // Every episode ends: those open at the kill with a `product.disappeared` the restart made.
    let open = check_streams(&events);
    assert!(open.is_empty(), "episodes without their product.disappeared: {open:?}\n{listing:#?}");
    let mut restart_ends: Vec<String> =
        events.iter().filter(|e| e["end_reason"] == "restart").map(|e| e["episode_id"].as_str().unwrap().to_string()).collect();
    restart_ends.sort();
    let mut expected = open_at_kill.clone();
    expected.sort();
    assert_eq!(restart_ends, expected, "the restart ends exactly the episodes open at the kill");
    let during = events.iter().filter(|e| (cut_at.as_str()..back_at.as_str()).contains(&e["emitted_at"].as_str().unwrap())).count();
    eprintln!(
        "SIGKILL 30 s into a 60 s outage, 4 streams: {total} events published ({during} during the outage, {} persisted at the kill), 0 lost, \
         {dups} duplicates before dedupe, 0 after; {ended_at_restart} episodes open at the kill, ended by the restart; \
         restarted outbox peak {peak_events} events / {peak_bytes} bytes; drained {drain:.1?} after the broker was back",
        persisted.len(),
    );
    assert!(!log.contains("panicked"), "{log}");
}
