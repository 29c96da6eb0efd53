//! The pipeline's stream lifecycle and supervision against a real `livesku run`: a file stream next to
//! live ones (no head-of-line blocking, ends not stuck behind it), 200 remove/re-add cycles of one id
//! (nothing leaked, no episode of one session closed by another), a stage that dies (readiness red,
//! non-zero exit naming it), SIGTERM with 20 streams (exit within the bound, episodes flushed).

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::scene::{assert_no_duplicates, demo_gallery, render_scene, write_silent_wav};
use common::service::Service;
use common::{Servers, publish_file_rtmp};
use serde_json::{Value, json};

/// One service at a time: each loads the model, and the machine has 2 cores.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A `seconds`-long scene that shows the espresso set throughout (with the host's motion), with a
/// silent audio track (RTMP publishing needs one).
fn coffee_scene(dir: &Path, seconds: u32) -> std::path::PathBuf {
    let wav = dir.join(format!("silence-{seconds}.wav"));
    write_silent_wav(&wav, seconds);
    let video = dir.join(format!("coffee-{seconds}.mp4"));
    render_scene(&video, &[("coffee.png", 0, seconds)], seconds, Some(&wav));
    video
}

/// A gallery of the demo products and the nginx-rtmp server, in a fresh directory.
fn fixture() -> (tempfile::TempDir, String, Servers) {
    let dir = tempfile::tempdir().unwrap();
    let gallery = demo_gallery(dir.path());
    (dir, gallery, Servers::start())
}

fn add(svc: &Service, id: &str, uri: &str, options: Value) {
    let r = svc.send("POST", "/streams", Some(&json!({"id": id, "uri": uri, "options": options})));
    assert_eq!(r.status, 201, "add {id}: {}", r.text());
}

fn n(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or(0)
}

fn count(events: &[Value], stream: &str, kind: &str) -> usize {
    events.iter().filter(|e| e["stream_id"] == stream && e["type"] == kind).count()
}

/// Every episode is appeared, updated..., disappeared, in that order, exactly once each.
fn assert_episodes_closed(events: &[Value]) {
    let mut episodes: HashMap<&str, Vec<&str>> = HashMap::new();
    for e in events {
        episodes.entry(e["episode_id"].as_str().unwrap()).or_default().push(e["type"].as_str().unwrap());
    }
    for (id, kinds) in &episodes {
        assert_eq!(kinds.first(), Some(&"product.appeared"), "episode {id}: {kinds:?}");
        assert_eq!(kinds.last(), Some(&"product.disappeared"), "episode {id} not closed: {kinds:?}");
        assert!(kinds[1..kinds.len() - 1].iter().all(|k| *k == "product.updated"), "episode {id}: {kinds:?}");
    }
}

#[test]
fn a_file_stream_cannot_slow_live_streams_or_hold_up_their_end() {
    let _serial = serial();
    let (dir, gallery, servers) = fixture();
    // Long enough that the publishers are still on air when the file is done.
    let video = coffee_scene(dir.path(), 150);
    let file_video = coffee_scene(dir.path(), 60);
    let lives = ["live0", "live1", "live2"];
    let _publishers: Vec<_> = lives.iter().map(|id| publish_file_rtmp(&video, &servers.rtmp_url(id))).collect();
    // Files over the API are off by default (api.allowed_sources).
    let svc = Service::start(&gallery, "[api.allowed_sources]\nschemes = [\"rtmp\", \"file\"]");
    let live_opts = json!({"max_rate_hz": 1.0, "dedup_max_distance": 0});
    for id in lives {
        add(&svc, id, &servers.rtmp_url(id), live_opts.clone());
    }
    svc.wait_events(Duration::from_secs(90), |ev| lives.iter().all(|id| count(ev, id, "product.appeared") >= 1));

    // Each live stream's own keyframe rate, before the file.
    let rates = |secs: u64| {
        let a: Vec<Value> = lives.iter().map(|id| svc.stream(id).unwrap()).collect();
        std::thread::sleep(Duration::from_secs(secs));
        let b: Vec<Value> = lives.iter().map(|id| svc.stream(id).unwrap()).collect();
        a.iter().zip(&b).map(|(a, b)| (n(b, "keyframes") - n(a, "keyframes")) as f64 / secs as f64).collect::<Vec<_>>()
    };
    let baseline = rates(8);

    // The file: every key unit (about 2 per second of video), nothing skipped: ~110 frames that wait for
    // the encoder instead of being dropped.
    let before: Vec<Value> = lives.iter().map(|id| svc.stream(id).unwrap()).collect();
    let started = Instant::now();
    add(&svc, "file", file_video.to_str().unwrap(), json!({"max_rate_hz": 0.0, "dedup_max_distance": 0}));
    svc.wait_stream("file", Duration::from_secs(30), |s| n(s, "keyframes") >= 10);
    // While the file keeps the encoder busy, a removed live stream's episode closes at once: its end
    // does not wait behind the file.
    let removed = Instant::now();
    svc.remove_stream("live2");
    svc.wait_events(Duration::from_secs(10), |ev| count(ev, "live2", "product.disappeared") == 1);
    let closed_after = removed.elapsed();
    let file = svc.wait_stream("file", Duration::from_secs(180), |s| {
        s["state"] == "stopped" && s["last_processed_seq"].as_u64() == n(s, "keyframes").checked_sub(1)
    });
    let secs = started.elapsed().as_secs_f64();

    let mut report = Vec::new();
    for (i, id) in lives[..2].iter().enumerate() {
        let after = svc.stream(id).unwrap();
        let gained = n(&after, "keyframes") - n(&before[i], "keyframes");
        let processed = n(&after, "last_processed_seq") - n(&before[i], "last_processed_seq");
        report.push(format!("{id}: {gained} keyframes in {secs:.1} s (baseline {:.2}/s), {processed} matched", baseline[i]));
        assert_eq!(n(&after, "dropped"), 0, "{id} dropped keyframes next to a file: {after}");
        // Its speech audio is not crowded out by the file's either (the VAD serves live audio first).
        assert_eq!(n(&after, "audio_dropped"), n(&before[i], "audio_dropped"), "{id} lost audio next to a file: {after}");
        assert!(gained as f64 >= 0.95 * baseline[i] * secs - 1.0, "{id} slowed down: {report:?}\n{after}\n{}", svc.log());
        // In flight at the snapshot, at 1 keyframe/s: one in the ingest channel, one in the stream's encoder
        // queue, one in the batch being encoded (a batch with region passes takes up to ~1 s on a loaded
        // machine; a previous run was 3 behind). A starved stream would be tens behind, or expire frames.
        assert!(processed + 3 >= gained, "{id} fell behind in the encoder: {report:?}");
    }
    eprintln!("file of {} keyframes next to live streams: {report:?}; removed stream closed in {closed_after:?}", n(&file, "keyframes"));
    let expired = svc.metric("livesku_discarded_total{stage=\"encoder\",reason=\"expired\"}");
    assert_eq!(expired, Some(0.0), "live keyframes expired in the encoder queue");
    // The file lost nothing either.
    assert_eq!(n(&file, "dropped"), 0, "{file}");
    assert!(n(&file, "keyframes") >= 100, "{file}");
    assert!(!svc.log().contains("panicked"), "{}", svc.log());
}

#[test]
fn two_hundred_remove_and_readd_cycles_of_one_id_leave_nothing_and_keep_sessions_apart() {
    let _serial = serial();
    let (dir, gallery, servers) = fixture();
    let video = coffee_scene(dir.path(), 60);
    let url = servers.rtmp_url("cyc");
    let _publisher = publish_file_rtmp(&video, &url);
    let svc = Service::start(&gallery, "");
    let opts = json!({"max_rate_hz": 1.0, "dedup_max_distance": 0});

    // Sessions that see the product: each one's episode opens in it and closes when it is removed,
    // never earlier (an end of the previous session must not reach it).
    for k in 0..3 {
        add(&svc, "cyc", &url, opts.clone());
        let ev = svc.wait_events(Duration::from_secs(60), |ev| count(ev, "cyc", "product.appeared") == k + 1);
        assert_eq!(count(&ev, "cyc", "product.disappeared"), k, "session {k}'s episode closed early: {ev:#?}");
        svc.remove_stream("cyc");
        svc.wait_events(Duration::from_secs(10), |ev| count(ev, "cyc", "product.disappeared") == k + 1);
    }
    std::thread::sleep(Duration::from_secs(12)); // idle blocking-pool threads exit after 10 s
    let threads0 = svc.threads();

    let started = Instant::now();
    for _ in 0..200 {
        add(&svc, "cyc", &url, opts.clone());
        svc.remove_stream("cyc");
    }
    let churn = started.elapsed();

    // Nothing of any session is left: API, board, metric series, encoder queues, threads.
    assert_eq!(svc.get("/streams").json()["streams"], json!([]));
    assert_eq!(svc.get("/api/board").json()["streams"], json!([]));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (queues, threads) = (svc.metric("livesku_encoder_open_queues"), svc.threads());
        if queues == Some(0.0) && threads <= threads0 + 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "leftovers after 200 cycles: open queues {queues:?}, threads {threads0} -> {threads}: {:?}",
            svc.thread_names()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(!svc.get("/metrics").text().contains("stream=\"cyc\""), "a removed stream's series is left");
    let events = svc.events();
    assert_episodes_closed(&events);
    assert_no_duplicates(&events);
    eprintln!("200 add/remove cycles in {churn:?}; {} events", events.len());
    assert!(!svc.log().contains("panicked"), "{}", svc.log());
}

#[test]
fn a_stage_that_dies_turns_readiness_red_and_ends_the_process_naming_it() {
    let _serial = serial();
    let (_dir, gallery, servers) = fixture();
    let url = servers.rtmp_url("cam");
    let _publisher = common::publish_rtmp(&url, &common::StreamSpec::default());
    // The matcher panics 8 s after it starts (src/stage.rs): after the service has reported ready.
    let mut svc = Service::start_env(&gallery, "", &[("LIVESKU_FAULT_PANIC_STAGE", "matcher@8")]);
    svc.add_stream("cam", &url);
    let deadline = Instant::now() + Duration::from_secs(60);
    let red = loop {
        assert!(svc.exited().is_none(), "exited before /readyz turned red:\n{}", svc.log());
        let r = common::http::request(&svc.addr, "GET", "/readyz", &[], None);
        if let Ok(r) = r
            && r.status == 503
        {
            break r.json();
        }
        assert!(Instant::now() < deadline, "/readyz still green:\n{}", svc.log());
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(red["status"], "failed", "{red}");
    assert_eq!(red["stage"], "matcher", "{red}");
    let status = svc.wait_exit(Duration::from_secs(30));
    assert!(!status.success(), "a dead stage must end the process with an error");
    let log = svc.log();
    assert!(log.contains("stage 'matcher' failed: panicked: fault injected"), "{log}");
}

#[test]
fn sigterm_with_twenty_streams_exits_within_the_bound_and_flushes_episodes() {
    let _serial = serial();
    let (dir, gallery, servers) = fixture();
    let video = coffee_scene(dir.path(), 90);
    let url = servers.rtmp_url("shop");
    let _publisher = publish_file_rtmp(&video, &url);
    let mut svc = Service::start(&gallery, "shutdown_timeout = \"10s\"");
    // 20 viewers of one published stream: 20 pipelines, 10 keyframes/s for the encoder.
    let ids: Vec<String> = (0..20).map(|i| format!("s{i:02}")).collect();
    for id in &ids {
        add(&svc, id, &url, json!({"max_rate_hz": 0.5, "dedup_max_distance": 0}));
    }
    for id in &ids {
        svc.wait_stream(id, Duration::from_secs(60), |s| s["state"] == "running");
    }
    let open = svc.wait_events(Duration::from_secs(90), |ev| {
        ids.iter().filter(|id| count(ev, id, "product.appeared") > 0).count() >= 5
    });
    let streams_open = ids.iter().filter(|id| count(&open, id, "product.appeared") > 0).count();
    let sent = Instant::now();
    svc.terminate();
    let status = svc.wait_exit(Duration::from_secs(30));
    let took = sent.elapsed();
    assert!(status.success(), "{status}\n{}", svc.log());
    assert!(took < Duration::from_secs(11), "shutdown took {took:?}, bound 10 s");
    let events = svc.events();
    assert_episodes_closed(&events);
    assert_no_duplicates(&events);
    eprintln!("SIGTERM with 20 streams ({streams_open} showing the product): exited in {took:?}, {} events", events.len());
}
