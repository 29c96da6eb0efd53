//! The control API against a real `livesku run` (real models, the demo gallery) and a real nginx-rtmp
//! stream: authentication, validation, unknown ids, add -> running -> remove, `/metrics`, gallery
//! changes, and 20 streams added and removed at run time without leftovers or stalling the others.

mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::http;
use common::service::{Service, TOKEN};
use serde_json::{Value, json};

/// One service at a time: each loads the model, and the machine has 2 cores.
static SERIAL: Mutex<()> = Mutex::new(());

fn error_message(r: &http::Response) -> String {
    let v = r.json();
    assert_eq!(v["error"]["status"], r.status, "{v}");
    v["error"]["message"].as_str().unwrap_or_else(|| panic!("no error message: {v}")).to_string()
}

#[test]
fn auth_validation_unknown_ids_and_stream_lifecycle() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let gallery = common::scene::demo_gallery(dir.path());
    let servers = common::Servers::start();
    let url = servers.rtmp_url("cam");
    let _publisher = common::publish_rtmp(&url, &common::StreamSpec::default());
    let svc = Service::start(&gallery, "");
    let addr = svc.addr.as_str();

    assert_eq!(svc.get("/healthz").status, 200);
    assert_eq!(svc.get("/readyz").json()["status"], "ready");
    let add = json!({"id": "cam1", "uri": url});

    // Authentication: none -> 401, wrong -> 403, for every mutating endpoint.
    for (method, path) in [("POST", "/streams"), ("DELETE", "/streams/cam1"), ("POST", "/gallery/reload")] {
        let r = http::send_json(addr, method, path, None, Some(&add));
        assert_eq!(r.status, 401, "{method} {path}: {}", r.text());
        assert!(error_message(&r).contains("bearer"));
        let r = http::send_json(addr, method, path, Some("wrong-token-wrong-token"), Some(&add));
        assert_eq!(r.status, 403, "{method} {path}: {}", r.text());
    }
    assert!(svc.stream("cam1").is_none(), "a rejected request must not add the stream");

    // Validation: clear 4xx JSON errors.
    let r = http::request(
        addr,
        "POST",
        "/streams",
        &[("Content-Type", "application/json"), ("Authorization", &format!("Bearer {TOKEN}"))],
        Some(b"{"),
    )
    .unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    error_message(&r);
    for (body, status, needle) in [
        (json!({"id": "x"}), 422, "uri"),
        (json!({"uri": url, "options": {"bogus": 1}}), 422, "bogus"),
        (json!({"uri": url, "options": {"max_rate_hz": -1.0}}), 400, "max_rate_hz"),
        (json!({"uri": "gopher://host/x"}), 400, "scheme"),
        (json!({"uri": "  "}), 400, "uri"),
        (json!({"id": "bad id", "uri": url}), 400, "stream id"),
        (json!({"id": "../etc", "uri": url}), 400, "stream id"),
        // api.allowed_sources: no local files, listeners or internal HTTP hosts from API clients.
        (json!({"uri": "file:///etc/passwd"}), 403, "api.allowed_sources.schemes"),
        (json!({"uri": "/etc/passwd"}), 403, "local files"),
        (json!({"uri": "srt://127.0.0.1:9000?mode=listener"}), 403, "mode=listener"),
        (json!({"uri": "http://127.0.0.1:9/live.m3u8"}), 403, "api.allowed_sources.private_hosts"),
        (json!({"uri": "https://example.com/video.mp4"}), 403, "HLS"),
    ] {
        let r = svc.send("POST", "/streams", Some(&body));
        assert_eq!(r.status, status, "{body}: {}", r.text());
        let msg = error_message(&r);
        assert!(msg.contains(needle), "{body}: {msg}");
    }

    // Unknown ids: 404 (JSON), also for unknown endpoints.
    for r in
        [svc.get("/streams/nope"), svc.send("DELETE", "/streams/nope", None), svc.get("/no/such/endpoint")]
    {
        assert_eq!(r.status, 404, "{}", r.text());
        error_message(&r);
    }

    // Add -> running -> remove.
    let created = svc.add_stream("cam1", &url);
    assert_eq!(created["id"], "cam1");
    // The URI is shown without its stream key (`cam`).
    assert!(created["uri"].as_str().is_some_and(|u| u.ends_with("/live/***")), "{created}");
    assert_eq!(created["live"], true);
    let r = svc.send("POST", "/streams", Some(&add));
    assert_eq!(r.status, 409, "duplicate id: {}", r.text());
    let s = svc.wait_stream("cam1", Duration::from_secs(40), |s| {
        s["state"] == "running" && s["keyframes"].as_u64() >= Some(3)
    });
    for key in ["keyframes_per_sec", "last_keyframe_unix_ms", "reconnects", "dropped", "duplicates_skipped"] {
        assert!(!s[key].is_null(), "GET /streams/cam1 lacks {key}: {s}");
    }
    assert!(s["keyframes_per_sec"].as_f64().unwrap() > 0.3, "{s}");
    assert!(s.as_object().unwrap().contains_key("last_error"), "{s}");
    let list = svc.get("/streams").json();
    assert_eq!(list["streams"].as_array().unwrap().len(), 1, "{list}");

    let metrics = svc.get("/metrics");
    assert!(metrics.header("content-type").unwrap_or_default().contains("openmetrics-text"));
    let text = metrics.text();
    for series in [
        "livesku_stream_keyframes_total{stream=\"cam1\"}",
        "livesku_stream_state{stream=\"cam1\",state=\"running\"} 1",
        "livesku_stream_reconnects_total{stream=\"cam1\"} 0",
        "livesku_encoder_batch_size_bucket",
        "livesku_encoder_queue_wait_seconds_bucket",
        "livesku_search_seconds_count",
        "livesku_event_latency_seconds_bucket",
        "livesku_asr_backlog_utterances",
        "livesku_asr_audio_seconds_total",
        "livesku_publish_delivered_total",
        "livesku_publish_buffered_events",
        "livesku_encoder_open_queues 1",
        "livesku_discarded_total{stage=\"encoder\",reason=\"expired\"} 0",
        "livesku_keyframes_abstained_total",
    ] {
        assert!(text.contains(series), "/metrics lacks {series}:\n{text}");
    }
    assert_metrics_documented(&text);

    let jpeg = svc.get("/streams/cam1/frame.jpg");
    assert_eq!(jpeg.status, 200);
    assert_eq!(jpeg.header("content-type"), Some("image/jpeg"));
    assert_eq!(&jpeg.body[..2], [0xFF, 0xD8], "a JPEG");

    let removed = svc.remove_stream("cam1");
    assert_eq!(removed["final"]["state"], "stopped", "{removed}");
    assert!(svc.stream("cam1").is_none());
    assert_eq!(svc.get("/streams/cam1/frame.jpg").status, 404);
    let text = svc.get("/metrics").text();
    assert!(!text.contains("stream=\"cam1\""), "removed stream still in /metrics:\n{text}");
    wait_metric(&svc, "livesku_encoder_open_queues", 0.0);

    // Thumbnails for the dashboard: copied into the gallery at build time (small JPEGs), 404 for unknown
    // products without a server path; every answer says nosniff and carries the dashboard's CSP.
    let img = svc.get("/gallery/products/sku-espresso-set/image");
    assert_eq!(img.status, 200, "{}", img.text());
    assert_eq!(img.header("content-type"), Some("image/jpeg"));
    assert_eq!(img.header("x-content-type-options"), Some("nosniff"));
    assert!(img.header("content-security-policy").is_some_and(|c| c.contains("img-src 'self'")));
    let thumb = image::load_from_memory(&img.body).expect("a JPEG");
    assert!(thumb.width().max(thumb.height()) <= 256, "{}x{}", thumb.width(), thumb.height());
    assert!(std::path::Path::new(&gallery).join("thumbs").is_dir());
    let missing = svc.get("/gallery/products/nope/image");
    assert_eq!(missing.status, 404);
    assert!(!missing.text().contains(&gallery) && !missing.text().contains('/'), "{}", missing.text());

    // Gallery: remove a product (404 the second time), reload, bad catalogue path.
    let products = svc.get("/gallery").json()["products"].as_u64().unwrap();
    let r = svc.send("DELETE", "/gallery/products/sku-tabby-poster", None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["products"].as_u64(), Some(products - 1));
    assert_eq!(svc.send("DELETE", "/gallery/products/sku-tabby-poster", None).status, 404);
    let r = svc.send("POST", "/gallery/reload", None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["products"].as_u64(), Some(products - 1), "the removal is on disk");
    let r = svc.send("POST", "/gallery/products", Some(&json!({"catalog": "relative.jsonl"})));
    assert_eq!(r.status, 400, "{}", r.text());
    let r = svc.send("POST", "/gallery/products", Some(&json!({"catalog": "/nonexistent/c.jsonl"})));
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(!svc.log().contains("panicked"), "{}", svc.log());
}

/// docs/metrics.md and `/metrics` list the same metric families (every stage enabled here: ASR, publisher).
fn assert_metrics_documented(exposed: &str) {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md")).unwrap();
    let family = |name: &str| {
        let n = name.trim_end_matches("_total");
        n.to_string()
    };
    let exposed: std::collections::BTreeSet<String> =
        exposed.lines().filter_map(|l| l.strip_prefix("# HELP ")).filter_map(|l| l.split(' ').next()).map(family).collect();
    let documented: std::collections::BTreeSet<String> = docs
        .lines()
        .filter(|l| l.starts_with("| `livesku_"))
        .flat_map(|l| l.split('|').nth(1).unwrap_or_default().split(',').map(|n| family(n.trim().trim_matches('`'))).collect::<Vec<_>>())
        .collect();
    let missing: Vec<_> = exposed.difference(&documented).collect();
    // Worker-group families are exposed only with `[cluster]` (tests/cluster.rs checks those).
    let cluster_only = |n: &&String| n.starts_with("livesku_cluster_") || n.as_str() == "livesku_worker_info";
    let stale: Vec<_> = documented.difference(&exposed).filter(|n| !cluster_only(n)).collect();
    assert!(missing.is_empty() && stale.is_empty(), "docs/metrics.md: undocumented {missing:?}, not exposed {stale:?}");
}

fn wait_metric(svc: &Service, series: &str, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got = svc.metric(series);
        if got == Some(want) {
            return;
        }
        if Instant::now() > deadline {
            let log: String = svc.log().lines().rev().take(60).collect::<Vec<_>>().join("\n");
            panic!(
                "{series} = {got:?}, want {want}\n/metrics:\n{}\nlog (last lines first):\n{log}",
                svc.get("/metrics").text()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn keyframes(s: &Value) -> u64 {
    s["keyframes"].as_u64().unwrap_or(0)
}

#[test]
fn twenty_streams_added_and_removed_leave_nothing_behind() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let gallery = common::scene::demo_gallery(dir.path());
    let servers = common::Servers::start();
    let url = servers.rtmp_url("cam");
    let _publisher = common::publish_rtmp(&url, &common::StreamSpec::default());
    // livesku limits glibc to two malloc arenas itself (src/main.rs): with the default count, RSS would
    // creep up by fragmentation as streaming threads come and go and hide a real leak (docs/metrics.md).
    // ONNX Runtime keeps the memory of the largest batch it has run: the warm-up pass makes that peak
    // part of the baseline (CI saw +58 MiB in the one round whose streams' first keyframes met in a batch
    // larger than any before: the arena, not a leak).
    let svc = Service::start(&gallery, "[encoder]\nwarmup = true\n");
    // A stream that stays throughout: churn must not stall it.
    svc.add_stream("anchor", &url);
    svc.wait_stream("anchor", Duration::from_secs(40), |s| s["state"] == "running" && keyframes(s) >= 2);

    let cycle = |ids: &[String]| -> Duration {
        for id in ids {
            svc.add_stream(id, &url);
        }
        for id in ids {
            svc.wait_stream(id, Duration::from_secs(60), |s| s["state"] == "running" && keyframes(s) >= 2);
        }
        let started = Instant::now();
        for id in ids {
            let r = svc.remove_stream(id);
            assert_eq!(r["final"]["state"], "stopped", "{r}");
        }
        started.elapsed() / ids.len() as u32
    };
    // Warm-up at the same concurrency: the first pipelines load GStreamer plugins and grow the
    // allocator's per-thread pools once; growth after that would be a leak.
    cycle(&(0..5).map(|i| format!("warm-{i}")).collect::<Vec<_>>());
    // Idle blocking-pool threads (pipeline teardown runs there) exit after 10 s.
    std::thread::sleep(Duration::from_secs(12));
    let (threads0, rss0) = (svc.threads(), svc.rss_kib());
    let names0 = svc.thread_names();

    let anchor_before = svc.stream("anchor").unwrap();
    let anchor0 = keyframes(&anchor_before);
    let churn = Instant::now();
    let (mut remove_times, mut rss_trend) = (Vec::new(), Vec::new());
    let rounds: usize = std::env::var("LIVESKU_CHURN_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(4);
    for round in 0..rounds {
        let ids: Vec<String> = (0..5).map(|i| format!("s{}", round * 5 + i)).collect();
        remove_times.push(cycle(&ids));
        rss_trend.push(svc.rss_kib() / 1024);
    }
    let churn_secs = churn.elapsed().as_secs_f64();
    let anchor = svc.stream("anchor").unwrap();
    let gained = keyframes(&anchor) - anchor0;
    // The publisher makes 1 keyframe/s; a stalled anchor would gain (almost) nothing.
    assert!(
        gained as f64 >= churn_secs * 0.5,
        "anchor gained {gained} keyframes in {churn_secs:.0} s: {anchor}"
    );
    assert_eq!(anchor["state"], "running");
    // ...and its keyframes kept going through the encoder and matcher, not just into the ingest channel.
    let processed = |s: &Value| s["last_processed_seq"].as_u64().unwrap_or(0);
    assert!(
        processed(&anchor) >= processed(&anchor_before) + gained / 2,
        "anchor stalled behind ingest: {anchor_before} -> {anchor}"
    );
    assert_eq!(anchor["reconnects"], 0, "{anchor}");

    // Nothing of the 20 streams is left: API, board, metrics, encoder queues.
    let list = svc.get("/streams").json();
    let ids: Vec<&str> =
        list["streams"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["anchor"]);
    let board = svc.get("/api/board").json();
    assert_eq!(board["streams"].as_array().unwrap().len(), 1, "{board}");
    assert!(!svc.get("/metrics").text().contains("stream=\"s1"), "removed streams in /metrics");
    wait_metric(&svc, "livesku_encoder_open_queues", 1.0);
    wait_metric(&svc, "livesku_streams", 1.0);

    // Threads: back to the baseline once idle blocking threads have exited.
    let deadline = Instant::now() + Duration::from_secs(30);
    while svc.threads() > threads0 + 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
    }
    let (threads1, rss1) = (svc.threads(), svc.rss_kib());
    eprintln!(
        "20 streams added and removed in {churn_secs:.1} s; remove took {:?} per stream (per round); \
         threads {threads0} -> {threads1}; RSS {} -> {} MiB (after each round: {rss_trend:?}); \
         anchor +{gained} keyframes",
        remove_times,
        rss0 / 1024,
        rss1 / 1024
    );
    assert!(
        threads1 <= threads0 + 2,
        "threads {threads0} -> {threads1}\nbefore: {names0:?}\nafter: {:?}",
        svc.thread_names()
    );
    assert!(rss1 <= rss0 + 40 * 1024, "RSS grew {} -> {} MiB", rss0 / 1024, rss1 / 1024);
    // A leak grows with every round; fragmentation settles: the second half must add little.
    let half = rss_trend[rss_trend.len() / 2 - 1];
    let last = rss_trend[rss_trend.len() - 1];
    assert!(last <= half + 16, "RSS still growing after each round: {rss_trend:?} MiB");
    assert!(svc.log().contains("encoder warmed up"), "{}", svc.log());
    assert!(!svc.log().contains("panicked"), "{}", svc.log());
}
