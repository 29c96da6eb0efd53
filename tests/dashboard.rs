//! The moderator dashboard end to end in real headless Chromium: `livesku run` with the demo gallery, a
//! live RTMP stream of the demo scene (empty set, then the espresso set from second 8), the stream added
//! through the API while the page is open. The tile must appear, show keyframes, and list the product
//! within a few seconds of it appearing in the stream; a screenshot is saved (path printed).

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::scene::demo_gallery;
use common::service::Service;
use common::webdriver::Browser;
use common::{Proc, Servers};

/// Seconds into the scene at which the product is shown.
const APPEARS_AT: f64 = 8.0;

/// Streams the demo scene to `url` live (paced by `clocksync`), as a host's camera would.
fn publish_scene(url: &str, seconds: u32) -> (Proc, Proc) {
    let python = livesku::paths::venv_python();
    assert!(python.is_file(), "{} missing: run scripts/setup.sh", python.display());
    let coffee = livesku::paths::cache_dir().join("demo").join("coffee.png");
    assert!(coffee.is_file(), "demo products missing ({}): run scripts/setup.sh", coffee.display());
    let mut scene = Command::new(python)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/demo/scene.py"))
        .args([
            "--seconds",
            &seconds.to_string(),
            "--show",
            &format!("{}:{APPEARS_AT}:{seconds}", coffee.display()),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("run scene.py");
    let frames = scene.stdout.take().unwrap();
    let pipeline = format!(
        "fdsrc ! rawvideoparse width=640 height=360 format=rgb framerate=15/1 ! clocksync ! videoconvert \
         ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=8 ! h264parse \
         ! flvmux streamable=true ! rtmp2sink location={url}"
    );
    let gst = Command::new("gst-launch-1.0")
        .arg("-q")
        .args(pipeline.split_whitespace())
        .stdin(frames)
        .stdout(Stdio::null())
        .spawn()
        .expect("gst-launch-1.0 is missing: run scripts/setup.sh");
    (Proc(scene), Proc(gst))
}

#[test]
fn dashboard_shows_a_new_stream_and_its_detection_live() {
    let dir = tempfile::tempdir().unwrap();
    let gallery = demo_gallery(dir.path());
    let servers = Servers::start();
    let svc = Service::start(&gallery, "");
    let browser = Browser::start();
    browser.goto(&format!("http://{}/", svc.addr));
    let (title, _) = browser
        .wait_for("return document.readyState === 'complete' && document.title", Duration::from_secs(10))
        .expect("the dashboard page loads");
    assert!(title.as_str().unwrap_or_default().contains("livesku"), "{title}");
    browser
        .wait_for("return document.getElementById('conn').textContent === 'live'", Duration::from_secs(10))
        .expect("the page connects to /api/events");

    // The stream is added while the page is open: no reload.
    let url = servers.rtmp_url("shop");
    let _publisher = publish_scene(&url, 40);
    let published = Instant::now();
    svc.add_stream("shop", &url);
    let tile = "document.querySelector('[data-stream=\"shop\"]')";
    let (_, took) = browser
        .wait_for(&format!("return {tile} !== null"), Duration::from_secs(10))
        .expect("the new stream's tile appears");
    eprintln!("tile appeared {took:?} after the stream was added");
    browser
        .wait_for(
            &format!("const i = {tile}.querySelector('.frame img'); return i.complete && i.naturalWidth > 0"),
            Duration::from_secs(20),
        )
        .unwrap_or_else(|| panic!("no keyframe shown in the tile\n{}", svc.log()));

    let product = format!(
        "return {tile}.querySelector('.products li[data-product=\"sku-espresso-set\"] .title')?.textContent ?? null"
    );
    let (title, _) = browser
        .wait_for(&product, Duration::from_secs(40))
        .unwrap_or_else(|| panic!("the espresso set never showed up on the dashboard\n{}", svc.log()));
    let after_appearing = published.elapsed().as_secs_f64() - APPEARS_AT;
    assert_eq!(title, "Red espresso cup and saucer");
    eprintln!("detection on the dashboard {after_appearing:.1} s after the product appeared in the stream");
    assert!(after_appearing < 10.0, "too slow: {after_appearing:.1} s");
    browser
        .wait_for("return document.querySelector('#timeline .appeared') !== null", Duration::from_secs(5))
        .expect("the appeared event is in the timeline");
    let score: f64 = browser
        .eval(&format!("return parseFloat({tile}.querySelector('.products .score').textContent)"))
        .as_f64()
        .unwrap_or(0.0);
    assert!(score > 0.5, "score shown: {score}");
    browser
        .wait_for(
            &format!("const i = {tile}.querySelector('.products li img'); return i !== null && i.complete && i.naturalWidth > 0"),
            Duration::from_secs(5),
        )
        .expect("the product's catalogue image is shown");

    // Let the tile fetch the keyframe that showed the product before taking the picture.
    std::thread::sleep(Duration::from_secs(2));
    browser.wait_for(&format!("return {tile}.querySelector('.frame img').complete"), Duration::from_secs(5));
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    browser.screenshot(&shot);
    eprintln!("dashboard screenshot: {}", shot.display());

    // 50 streams: the page must stay responsive (no long main-thread tasks, smooth frames) while every
    // tile gets its stream and the tiles on screen keep their keyframes coming.
    let _ball = common::publish_rtmp(&servers.rtmp_url("ball"), &common::StreamSpec::default());
    for i in 1..50 {
        let body = serde_json::json!({"id": format!("cam-{i:02}"), "uri": servers.rtmp_url("ball"), "options": {"max_rate_hz": 1.0}});
        let r = svc.send("POST", "/streams", Some(&body));
        assert_eq!(r.status, 201, "{}", r.text());
    }
    let (_, took) = browser
        .wait_for("return document.querySelectorAll('#grid .tile').length === 50", Duration::from_secs(20))
        .expect("50 tiles");
    eprintln!("50 tiles shown {took:?} after the streams were added");
    browser.eval(
        "window.__long = []; window.__frames = 0; \
         new PerformanceObserver((l) => l.getEntries().forEach((e) => window.__long.push(e.duration))) \
           .observe({type: 'longtask', buffered: false}); \
         const tick = () => { window.__frames++; requestAnimationFrame(tick); }; requestAnimationFrame(tick); \
         return true;",
    );
    let (_, took) = browser
        .wait_for(
            "const imgs = [...document.querySelectorAll('#grid .tile')].filter((t) => { \
               const r = t.getBoundingClientRect(); return r.top < innerHeight && r.bottom > 0; }) \
               .map((t) => t.querySelector('.frame img')); \
             return imgs.length > 0 && imgs.every((i) => i.complete && i.naturalWidth > 0) && imgs.length",
            Duration::from_secs(40),
        )
        .unwrap_or_else(|| panic!("tiles on screen did not all get a keyframe\n{}", svc.log()));
    eprintln!("on-screen tiles all showing keyframes after {took:?}");
    std::thread::sleep(Duration::from_secs(10));
    let perf = browser.eval(
        "return {long: window.__long, frames: window.__frames, \
                 requests: performance.getEntriesByType('resource').filter((e) => e.name.includes('frame.jpg')).length}",
    );
    let longest = perf["long"].as_array().unwrap().iter().filter_map(|v| v.as_f64()).fold(0.0, f64::max);
    let frames = perf["frames"].as_f64().unwrap_or(0.0);
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-50.png");
    browser.screenshot(&shot);
    eprintln!(
        "50 streams: longest main-thread task {longest:.0} ms, {} long tasks, {:.0} animation frames/s, \
         {} keyframe images fetched in all; screenshot: {}",
        perf["long"].as_array().unwrap().len(),
        frames / 10.0,
        perf["requests"],
        shot.display()
    );
    // Guards against a page that freezes, not a speed target (those figures are printed above): a
    // clean-clone run on a loaded 2-core machine measured a 299 ms task and 16 frames/s.
    assert!(longest < 1000.0, "the page blocked its main thread for {longest:.0} ms: {perf}");
    assert!(frames / 10.0 > 5.0, "the page rendered only {:.0} frames/s: {perf}", frames / 10.0);
}
