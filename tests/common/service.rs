//! `livesku run` as a test service: a config with the control API on a free loopback port, a token, the
//! given gallery and a file sink; helpers for its process figures (threads, RSS) and `/metrics`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::http::{self, Response};
use super::{Proc, free_port, livesku};

pub const TOKEN: &str = "test-token-0123456789abcdef";

pub struct Service {
    pub addr: String,
    pub pid: u32,
    pub dir: tempfile::TempDir,
    log: PathBuf,
    _proc: Proc,
}

impl Service {
    /// Starts `livesku run` and waits until `/readyz` answers 200 (models and gallery loaded).
    pub fn start(gallery: &str, extra_toml: &str) -> Service {
        Self::start_env(gallery, extra_toml, &[])
    }

    pub fn start_env(gallery: &str, extra_toml: &str, env: &[(&str, &str)]) -> Service {
        Self::launch(gallery, "", None, extra_toml, env)
    }

    /// `api_keys` go into the `[api]` table (`max_sse_clients = 4`).
    pub fn start_api(gallery: &str, api_keys: &str, extra_toml: &str, env: &[(&str, &str)]) -> Service {
        Self::launch(gallery, api_keys, None, extra_toml, env)
    }

    /// With `publish_toml` as the `[publish]` section's body (and its subsections) instead of the file sink.
    pub fn start_publishing(gallery: &str, publish_toml: &str, extra_toml: &str) -> Service {
        Self::launch(gallery, "", Some(publish_toml), extra_toml, &[])
    }

    fn launch(gallery: &str, api_keys: &str, publish_toml: Option<&str>, extra_toml: &str, env: &[(&str, &str)]) -> Service {
        let dir = tempfile::tempdir().unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let events = dir.path().join("events.jsonl");
        let publish = publish_toml.map_or_else(|| format!("sink = \"file\"\nfile = {events:?}"), str::to_string);
        // Top-level keys of `extra_toml` (before its first section) must come before any section.
        let (top, sections) = match extra_toml.find('[') {
            Some(i) => extra_toml.split_at(i),
            None => (extra_toml, ""),
        };
        let config = format!(
            "{top}\n[gallery]\npath = {gallery:?}\n[api]\nenabled = true\nlisten = {addr:?}\ntoken = {TOKEN:?}\n{api_keys}\n\
             [publish]\n{publish}\n{sections}\n"
        );
        let cfg_path = dir.path().join("livesku.toml");
        std::fs::write(&cfg_path, config).unwrap();
        let log = dir.path().join("livesku.log");
        let child = livesku()
            .args(["run", "--config", cfg_path.to_str().unwrap()])
            .env_remove("LIVESKU_API_TOKEN")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start livesku run");
        let pid = child.id();
        let mut svc = Service { addr, pid, dir, log, _proc: Proc(child) };
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            if let Some(status) = svc._proc.0.try_wait().unwrap() {
                panic!("livesku run exited ({status}) before it was ready:\n{}", svc.log());
            }
            if let Ok(r) = http::request(&svc.addr, "GET", "/readyz", &[], None)
                && r.status == 200
            {
                return svc;
            }
            assert!(Instant::now() < deadline, "livesku run not ready within 180 s:\n{}", svc.log());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Detection events written so far (complete lines of the file sink).
    pub fn events(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(self.events_file()).unwrap_or_default();
        text.split_inclusive('\n')
            .filter(|l| l.ends_with('\n'))
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("event line is not JSON ({e}): {l}")))
            .collect()
    }

    /// Polls until `ok` holds for the events so far.
    pub fn wait_events(&self, timeout: Duration, ok: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let events = self.events();
            if ok(&events) {
                return events;
            }
            assert!(Instant::now() < deadline, "events not as expected within {timeout:?}: {events:#?}\n{}", self.log());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.pid as i32, libc::SIGTERM) };
    }

    /// SIGKILL: no shutdown, no flush; returns once the process is gone.
    pub fn kill(&mut self) {
        self._proc.kill();
    }

    /// Waits for the process to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self._proc.0.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "livesku run still running after {timeout:?}:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process's exit status, once it has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self._proc.0.try_wait().unwrap()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn events_file(&self) -> PathBuf {
        self.dir.path().join("events.jsonl")
    }

    pub fn get(&self, path: &str) -> Response {
        http::get(&self.addr, path)
    }

    /// With the right token.
    pub fn send(&self, method: &str, path: &str, body: Option<&Value>) -> Response {
        http::send_json(&self.addr, method, path, Some(TOKEN), body)
    }

    pub fn add_stream(&self, id: &str, uri: &str) -> Value {
        let r = self.send("POST", "/streams", Some(&json!({"id": id, "uri": uri})));
        assert_eq!(r.status, 201, "add {id}: {}", r.text());
        r.json()
    }

    pub fn remove_stream(&self, id: &str) -> Value {
        let r = self.send("DELETE", &format!("/streams/{id}"), None);
        assert_eq!(r.status, 200, "remove {id}: {}", r.text());
        r.json()
    }

    pub fn stream(&self, id: &str) -> Option<Value> {
        let r = self.get(&format!("/streams/{id}"));
        (r.status == 200).then(|| r.json())
    }

    /// Polls until `ok` holds for the stream, or fails with its last state.
    pub fn wait_stream(&self, id: &str, timeout: Duration, ok: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.stream(id);
            if let Some(s) = &s
                && ok(s)
            {
                return s.clone();
            }
            assert!(Instant::now() < deadline, "stream {id} not as expected within {timeout:?}: {s:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The value of one series in `/metrics` (`name{labels}` exactly as exposed), if present.
    pub fn metric(&self, series: &str) -> Option<f64> {
        let text = self.get("/metrics").text();
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
    }

    pub fn threads(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/task", self.pid)).map(|d| d.count()).unwrap_or(0)
    }

    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// Threads by name (`/proc/PID/task/*/comm`), for a readable failure message.
    pub fn thread_names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(format!("/proc/{}/task", self.pid))
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
                    .map(|n| n.trim().to_string())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

