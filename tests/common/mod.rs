//! Shared helpers for integration tests: real servers (nginx with the RTMP module, serving HLS over
//! HTTP) on free loopback ports, live publishers made with gst-launch-1.0, and a runner for the
//! `livesku` binary. Everything is killed and removed on drop. A missing tool fails the test loudly.
#![allow(dead_code)]

pub mod broker;
pub mod http;
pub mod proxy;
pub mod scene;
pub mod service;
pub mod webdriver;

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const NGINX_CONF: &str = include_str!("../../scripts/servers/nginx-rtmp.conf.in");

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind a loopback port").local_addr().unwrap().port()
}

fn require(tool: &str) -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':').chain(["/usr/sbin", "/sbin"]) {
        let p = Path::new(dir).join(tool);
        if p.is_file() {
            return p;
        }
    }
    panic!("`{tool}` is not installed: run scripts/setup.sh (this test needs the real component)");
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not start listening on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A child process killed on drop.
pub struct Proc(pub Child);

impl Proc {
    pub fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// nginx with the RTMP module on a free port, and an HTTP server for an HLS folder on another.
pub struct Servers {
    pub rtmp_port: u16,
    pub http_port: u16,
    pub hls_dir: PathBuf,
    _dir: tempfile::TempDir,
    _nginx: Proc,
}

impl Servers {
    pub fn start() -> Self {
        let nginx = require("nginx");
        assert!(
            Path::new("/usr/lib/nginx/modules/ngx_rtmp_module.so").is_file(),
            "the nginx RTMP module is not installed (libnginx-mod-rtmp): run scripts/setup.sh"
        );
        let dir = tempfile::tempdir().unwrap();
        let hls_dir = dir.path().join("hls");
        std::fs::create_dir_all(&hls_dir).unwrap();
        let (rtmp_port, http_port) = (free_port(), free_port());
        let conf = NGINX_CONF
            .replace("{prefix}", &dir.path().display().to_string())
            .replace("{rtmp_port}", &rtmp_port.to_string())
            .replace("{http_port}", &http_port.to_string())
            .replace("{hls_root}", &hls_dir.display().to_string());
        let conf_path = dir.path().join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(nginx)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start nginx");
        let nginx = Proc(child);
        wait_for_port(rtmp_port, "nginx (RTMP)");
        wait_for_port(http_port, "nginx (HTTP)");
        Self { rtmp_port, http_port, hls_dir, _dir: dir, _nginx: nginx }
    }

    pub fn rtmp_url(&self, key: &str) -> String {
        format!("rtmp://127.0.0.1:{}/live/{key}", self.rtmp_port)
    }

    pub fn hls_url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/{name}/live.m3u8", self.http_port)
    }
}

/// A generated test stream: moving video with a fixed GOP, plus a sine tone.
#[derive(Clone)]
pub struct StreamSpec {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// Frames per GOP.
    pub gop: u32,
    pub pattern: &'static str,
    pub audio: bool,
}

impl Default for StreamSpec {
    fn default() -> Self {
        Self { width: 320, height: 240, fps: 30, gop: 30, pattern: "ball", audio: true }
    }
}

impl StreamSpec {
    fn video(&self, live: bool, num_buffers: Option<u32>) -> String {
        let n = num_buffers.map(|n| format!(" num-buffers={n}")).unwrap_or_default();
        format!(
            "videotestsrc is-live={live} pattern={}{n} ! video/x-raw,width={},height={},framerate={}/1 \
             ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max={} bitrate=800 ! h264parse",
            self.pattern, self.width, self.height, self.fps, self.gop
        )
    }

    fn audio(&self, live: bool, seconds: Option<u32>) -> String {
        // 44.1 kHz stereo, 1024-sample buffers: the 16 kHz mono path must resample and downmix.
        let n = seconds.map(|s| format!(" num-buffers={}", s * 44100 / 1024)).unwrap_or_default();
        format!(
            "audiotestsrc is-live={live} wave=sine freq=440 samplesperbuffer=1024{n} \
             ! audio/x-raw,rate=44100,channels=2 ! voaacenc ! aacparse"
        )
    }
}

fn gst_launch(pipeline: &str) -> Proc {
    let gst = require("gst-launch-1.0");
    let args: Vec<&str> = pipeline.split_whitespace().collect();
    let child = Command::new(gst)
        .arg("-q")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start gst-launch-1.0");
    Proc(child)
}

/// Publishes a live stream to an RTMP URL until dropped.
pub fn publish_rtmp(url: &str, spec: &StreamSpec) -> Proc {
    let mut p =
        format!("{} ! flvmux name=mux streamable=true ! rtmp2sink location={url}", spec.video(true, None));
    if spec.audio {
        p.push_str(&format!(" {} ! mux.", spec.audio(true, None)));
    }
    gst_launch(&p)
}

/// Writes a live HLS stream (1 s segments) into `dir` until dropped.
pub fn publish_hls(dir: &Path, spec: &StreamSpec) -> Proc {
    std::fs::create_dir_all(dir).unwrap();
    let mut p = format!(
        "{} ! hlssink2 name=hls target-duration=1 max-files=20 playlist-length=6 \
         location={}/seg%05d.ts playlist-location={}/live.m3u8",
        spec.video(true, None),
        dir.display(),
        dir.display()
    );
    if spec.audio {
        p.push_str(&format!(" {} ! hls.audio", spec.audio(true, None)));
    }
    gst_launch(&p)
}

/// Writes an MP4 file of `seconds` seconds and waits for it to be complete.
pub fn make_file(path: &Path, spec: &StreamSpec, seconds: u32) {
    make_file_muxed(path, spec, seconds, "mp4mux");
}

/// [`make_file`] with another muxer (`flvmux`, `mpegtsmux`, ...).
pub fn make_file_muxed(path: &Path, spec: &StreamSpec, seconds: u32, muxer: &str) {
    let mut p = format!(
        "{} ! {muxer} name=mux ! filesink location={}",
        spec.video(false, Some(seconds * spec.fps)),
        path.display()
    );
    if spec.audio {
        p.push_str(&format!(" {} ! mux.", spec.audio(false, Some(seconds))));
    }
    let gst = require("gst-launch-1.0");
    let status = Command::new(gst)
        .arg("-q")
        .args(p.split_whitespace())
        .stdout(Stdio::null())
        .status()
        .expect("run gst-launch-1.0");
    assert!(status.success(), "gst-launch-1.0 could not write {}", path.display());
}

/// Waits until the publisher's stream is actually playable (an RTMP app accepts a play), by polling
/// with a short `livesku ingest`. Cheaper: wait for the first HLS playlist to appear.
pub fn wait_for_file(path: &Path, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !path.is_file() {
        assert!(Instant::now() < deadline, "{} did not appear within {timeout:?}", path.display());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Output of one `livesku` run.
pub struct Run {
    pub lines: Vec<Value>,
    pub stderr: String,
    pub success: bool,
    pub elapsed: Duration,
}

impl Run {
    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
        self.lines.iter().filter(move |l| l["kind"] == kind)
    }

    pub fn keyframes(&self, stream: &str) -> Vec<&Value> {
        self.of_kind("keyframe").filter(|l| l["stream_id"] == stream).collect()
    }

    pub fn audio_seconds(&self, stream: &str) -> f64 {
        self.of_kind("audio")
            .filter(|l| l["stream_id"] == stream)
            .map(|l| l["seconds"].as_f64().unwrap())
            .sum()
    }

    pub fn stats(&self, stream: &str) -> &Value {
        self.of_kind("stats")
            .find(|l| l["stream_id"] == stream)
            .unwrap_or_else(|| panic!("no stats for {stream}"))
    }

    pub fn states(&self, stream: &str) -> Vec<String> {
        self.of_kind("status")
            .filter(|l| l["stream_id"] == stream)
            .map(|l| l["state"].as_str().unwrap().to_string())
            .collect()
    }
}

pub fn livesku() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_livesku"));
    c.env("RUST_LOG", "warn,livesku=info");
    c
}

/// Runs `livesku <args>`, collecting its JSON lines; fails the test if it outlives `timeout`.
pub fn run_livesku(args: &[&str], timeout: Duration) -> Run {
    let start = Instant::now();
    let mut child =
        livesku().args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start livesku");
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        s
    });
    let out_reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .map(|l| serde_json::from_str::<Value>(&l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect::<Vec<_>>()
    });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            panic!("livesku {args:?} did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let lines = out_reader.join().unwrap();
    let stderr = err_reader.join().unwrap();
    assert!(!stderr.contains("panicked"), "livesku panicked:\n{stderr}");
    Run { lines, stderr, success: status.success(), elapsed: start.elapsed() }
}

/// Publishes an MP4 (H.264 + AAC) file to an RTMP URL in real time, without re-encoding.
pub fn publish_file_rtmp(file: &Path, url: &str) -> Proc {
    gst_launch(&format!(
        "filesrc location={} ! qtdemux name=d d.video_0 ! queue ! h264parse ! flvmux name=m streamable=true \
         ! rtmp2sink location={url} sync=true d.audio_0 ! queue ! aacparse ! m.",
        file.display()
    ))
}
