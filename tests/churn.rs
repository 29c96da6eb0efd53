//! Churn: 50 RTMP streams added and removed through the API, over and over, next to one steady live
//! stream that shows a product. Afterwards nothing of them is left (threads, file descriptors, streams,
//! metric series), memory has not grown beyond a generous bound, and the steady stream's episode ran
//! on untouched. `LIVESKU_CHURN_SECS` sets how long it churns (default 60; BENCHMARKS.md has 600).

mod common;

use std::time::{Duration, Instant};

use common::scene::{demo_gallery, render_scene, write_silent_wav};
use common::service::Service;
use common::{Proc, Servers, StreamSpec, publish_file_rtmp, publish_rtmp};
use serde_json::{Value, json};

const STREAMS: usize = 50;
/// Publishers the churned streams watch (several viewers each): cheap sources for 50 pipelines.
const PUBLISHERS: usize = 5;

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

fn count(events: &[Value], stream: &str, kind: &str) -> usize {
    events.iter().filter(|e| e["stream_id"] == stream && e["type"] == kind).count()
}

/// Waits until no churned stream is listed any more.
fn wait_all_removed(svc: &Service) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while svc.get("/streams").json()["streams"].as_array().map_or(0, Vec::len) != 1 {
        assert!(Instant::now() < deadline, "removed streams still listed: {}", svc.get("/streams").text());
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn fifty_streams_churning_next_to_a_steady_one_leave_nothing_behind() {
    let churn = Duration::from_secs(
        std::env::var("LIVESKU_CHURN_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60),
    );
    let dir = tempfile::tempdir().unwrap();
    let gallery = demo_gallery(dir.path());
    // The steady stream stays on air through warm-up, churn and the checks after it.
    let seconds = churn.as_secs() as u32 + 120;
    let wav = dir.path().join("silence.wav");
    write_silent_wav(&wav, seconds);
    let video = dir.path().join("steady.mp4");
    render_scene(&video, &[("coffee.png", 0, seconds)], seconds, Some(&wav));
    let servers = Servers::start();
    let steady_url = servers.rtmp_url("steady");
    let _steady = publish_file_rtmp(&video, &steady_url);
    let spec = StreamSpec { width: 160, height: 120, fps: 10, gop: 20, pattern: "smpte", audio: true };
    let urls: Vec<String> = (0..PUBLISHERS).map(|i| servers.rtmp_url(&format!("p{i}"))).collect();
    let _publishers: Vec<Proc> = urls.iter().map(|u| publish_rtmp(u, &spec)).collect();

    let svc = Service::start(&gallery, "");
    svc.add_stream("steady", &steady_url);
    svc.wait_events(Duration::from_secs(90), |ev| count(ev, "steady", "product.appeared") == 1);

    // A few keyframes per churned stream: its pipelines and queues are what is churned, not the encoder.
    let opts = json!({"max_rate_hz": 0.2, "dedup_max_distance": 0});
    let ids: Vec<String> = (0..STREAMS).map(|i| format!("churn{i:02}")).collect();
    let cycle = |wait_running: bool| {
        for (i, id) in ids.iter().enumerate() {
            let body = json!({"id": id, "uri": urls[i % PUBLISHERS], "options": opts});
            let r = svc.send("POST", "/streams", Some(&body));
            assert_eq!(r.status, 201, "add {id}: {}", r.text());
        }
        if wait_running {
            for id in &ids {
                svc.wait_stream(id, Duration::from_secs(60), |s| s["state"] == "running");
            }
        }
        for id in &ids {
            svc.remove_stream(id);
        }
        wait_all_removed(&svc);
    };
    // Warm-up: one full cycle, then idle blocking-pool threads exit (after 10 s).
    cycle(true);
    std::thread::sleep(Duration::from_secs(12));
    let (threads0, fds0, rss0) = (svc.threads(), fds(svc.pid), svc.rss_kib());

    let started = Instant::now();
    let mut cycles = 0;
    while started.elapsed() < churn {
        // Every other cycle removes streams before they are up (while still connecting).
        cycle(cycles % 2 == 0);
        cycles += 1;
    }
    let churned = started.elapsed();

    // Nothing of the churned streams is left.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (threads, fds1) = loop {
        let (t, f) = (svc.threads(), fds(svc.pid));
        let queues = svc.metric("livesku_encoder_open_queues");
        if t <= threads0 + 2 && f <= fds0 + 2 && queues == Some(1.0) {
            break (t, f);
        }
        assert!(
            Instant::now() < deadline,
            "leftovers after {cycles} cycles: threads {threads0} -> {t}, fds {fds0} -> {f}, open queues {queues:?}: {:?}",
            svc.thread_names()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(svc.metric("livesku_streams"), Some(1.0));
    let metrics = svc.get("/metrics").text();
    assert!(!metrics.contains("stream=\"churn"), "removed streams' series are left");
    let rss1 = svc.rss_kib();
    eprintln!(
        "{cycles} cycles of {STREAMS} streams in {churned:?}: threads {threads0} -> {threads}, fds {fds0} -> {fds1}, \
         RSS {} -> {} MiB",
        rss0 / 1024,
        rss1 / 1024
    );
    // Generous: allocator fragmentation and caches may grow a little, a leak per stream grows without end.
    assert!(rss1 < rss0 + rss0 / 2, "RSS grew from {rss0} KiB to {rss1} KiB over {cycles} cycles");

    // The steady stream ran on in one session with its product on screen the whole time.
    let steady = svc.stream("steady").unwrap();
    assert_eq!(steady["state"], "running", "{steady}");
    assert_eq!(steady["reconnects"], 0, "{steady}");
    let events = svc.events();
    assert_eq!(count(&events, "steady", "product.appeared"), 1, "{events:#?}");
    assert_eq!(
        count(&events, "steady", "product.disappeared"),
        0,
        "the steady product went off during churn: {events:#?}"
    );
    assert!(!svc.log().contains("panicked"), "{}", svc.log());
}
