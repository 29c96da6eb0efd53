//! Delivery contract of `livesku run` with the Kafka sink, against a real broker (tansu): events produced
//! while the broker is down are delivered once it is up, nothing lost and nothing duplicated; SIGTERM
//! closes the open episodes and flushes them; a broker that never comes up costs at most the flush
//! timeout at shutdown, and the loss is reported.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant, SystemTime};

use common::broker::Broker;
use common::scene::{
    assert_no_duplicates, demo_gallery, expected_story, render_silent_scene, scene_fixture, story, validator,
};
use common::{Servers, free_port, livesku, publish_file_rtmp};
use serde_json::Value;

/// `livesku run --config FILE`, logging to a file; killed on drop.
struct RunningService {
    child: Child,
    log: PathBuf,
}

impl RunningService {
    fn start(dir: &Path, config: &str) -> Self {
        let cfg = dir.join("livesku.toml");
        std::fs::write(&cfg, config).unwrap();
        let log = dir.join("livesku.log");
        let child = livesku()
            .args(["run", "--config", cfg.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start livesku run");
        RunningService { child, log }
    }

    /// Waits until the log contains `needle` `times` times.
    fn wait_for_log(&self, needle: &str, times: usize, timeout: Duration) {
        let start = Instant::now();
        while std::fs::read_to_string(&self.log).unwrap_or_default().matches(needle).count() < times {
            if start.elapsed() > timeout {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                panic!("not {times} x '{needle}' in the log within {timeout:?}:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGTERM, then waits up to `timeout` for the exit. Returns the status, the log and the time taken.
    fn terminate(mut self, timeout: Duration) -> (ExitStatus, String, Duration) {
        let start = Instant::now();
        // SAFETY: plain kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) }, 0);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(start.elapsed() < timeout, "livesku did not exit within {timeout:?} of SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        };
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        assert!(!log.contains("panicked"), "livesku panicked:\n{log}");
        (status, log, start.elapsed())
    }
}

impl Drop for RunningService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(gallery: &str, brokers: &str, uri: &str, flush_timeout_ms: u64) -> String {
    format!(
        "[gallery]\npath = \"{gallery}\"\n\n[publish]\nsink = \"kafka\"\nflush_timeout_ms = {flush_timeout_ms}\n\n\
         [publish.kafka]\nbrokers = \"{brokers}\"\ntopic = \"detections\"\n\n\
         [[streams]]\nid = \"scene\"\nuri = \"{uri}\"\n"
    )
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

#[test]
fn broker_started_after_the_service_loses_nothing() {
    let (dir, gallery, video) = scene_fixture();
    let port = free_port();
    let service =
        RunningService::start(dir.path(), &config(&gallery, &format!("127.0.0.1:{port}"), &video, 20_000));
    // The whole 40 s scene is processed (faster than real time) while nothing listens on the port.
    service.wait_for_log("product.disappeared", 2, Duration::from_secs(120));
    let broker_up = rfc3339(SystemTime::now());
    let broker = Broker::start_on(port, &[("detections", 3)]);

    let got = broker.consume("detections", "platform", 4, Duration::from_secs(60), Duration::from_secs(3));
    let events: Vec<Value> = got.iter().map(|m| serde_json::from_slice(&m.payload).unwrap()).collect();
    let schema = validator();
    for (m, e) in got.iter().zip(&events) {
        assert_eq!(m.key.as_deref(), Some("scene"));
        assert!(schema.is_valid(e), "not schema-valid: {e}");
    }
    assert_eq!(story(&events), expected_story(), "{events:#?}");
    assert_no_duplicates(&events);
    // Same format, so the strings compare as times: the events were made while the broker was down.
    assert!(events.iter().all(|e| e["emitted_at"].as_str().unwrap() < broker_up.as_str()), "{events:#?}");

    let (status, log, _) = service.terminate(Duration::from_secs(30));
    assert!(status.success(), "{log}");
    assert!(!log.contains("not delivered"), "{log}");
}

#[test]
fn sigterm_closes_open_episodes_and_flushes_them() {
    let dir = tempfile::tempdir().unwrap();
    let gallery = demo_gallery(dir.path());
    let video = dir.path().join("scene.mp4");
    render_silent_scene(&video, &[("coffee.png", 0, 30)], 30);
    let servers = Servers::start();
    let broker = Broker::start(&[("detections", 3)]);
    let url = servers.rtmp_url("scene");
    let _publisher = publish_file_rtmp(&video, &url);
    let service = RunningService::start(dir.path(), &config(&gallery, &broker.brokers(), &url, 10_000));

    // The espresso set is on screen: wait until a platform has seen it appear, then stop the service.
    let got = broker.consume("detections", "platform-1", 1, Duration::from_secs(60), Duration::ZERO);
    let first: Value = serde_json::from_slice(&got[0].payload).unwrap();
    assert_eq!(
        (first["type"].as_str(), first["product_id"].as_str()),
        (Some("product.appeared"), Some("sku-espresso-set"))
    );
    let (status, log, took) = service.terminate(Duration::from_secs(20));
    assert!(status.success(), "{log}");
    assert!(took < Duration::from_secs(10), "shutdown took {took:?}");

    // The open episode was closed at shutdown and its end delivered before the process exited.
    let got = broker.consume("detections", "platform-2", 2, Duration::from_secs(10), Duration::from_secs(2));
    let events: Vec<Value> = got.iter().map(|m| serde_json::from_slice(&m.payload).unwrap()).collect();
    assert_eq!(
        story(&events),
        [("product.appeared", "sku-espresso-set"), ("product.disappeared", "sku-espresso-set")]
            .map(|(a, b)| (a.to_string(), b.to_string())),
        "{events:#?}"
    );
}

#[test]
fn broker_never_up_costs_the_flush_timeout_and_reports_the_loss() {
    let (dir, gallery, video) = scene_fixture();
    let service = RunningService::start(
        dir.path(),
        &config(&gallery, &format!("127.0.0.1:{}", free_port()), &video, 2_000),
    );
    service.wait_for_log("product.disappeared", 2, Duration::from_secs(120));
    let (status, log, took) = service.terminate(Duration::from_secs(30));
    assert!(took < Duration::from_secs(10), "shutdown took {took:?}:\n{log}");
    assert!(status.success(), "{log}");
    // Every accepted event is reported as lost, none delivered.
    assert!(log.contains("events not delivered before the flush timeout"), "{log}");
    assert!(log.contains("delivered: 0,") && !log.contains("accepted: 0,"), "{log}");
}
