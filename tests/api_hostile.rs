//! The control API under 10,000 malformed or hostile requests against a real `livesku run` (real models,
//! the demo gallery), generated from a seeded RNG and fired from 8 client threads: bad JSON, huge bodies,
//! unknown fields, path tricks, wrong or missing tokens, forbidden sources, bad `Host` headers, broken
//! HTTP; then bounded SSE subscribers and slow clients that trickle their headers. Only 4xx answers (503
//! for bounded resources), the service healthy afterwards, no mutation without the token, and no secret
//! or server path in any answer or in the log. The figures go to BENCHMARKS.md.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::service::{Service, TOKEN};
use serde_json::json;

const REQUESTS: usize = 10_000;
const THREADS: usize = 8;
const SEED: u64 = 13;
const MAX_BODY: usize = 64 * 1024;
const SSE_CLIENTS: usize = 4;

/// Secrets inside stream URIs: none may come back in an answer or reach the log.
const SECRETS: &[&str] = &["sk_live_h0stile0001", "hunter2-h0stile", "srt-pass-h0stile-9", "tok-h0stile-77"];

/// One request's answer: the status, or `None` when the server closed without one.
struct Answer {
    status: Option<u16>,
    text: String,
    /// The request's start, for failure messages.
    request: String,
}

/// Sends raw bytes on a fresh connection and reads until the server closes it.
fn exchange(addr: &str, bytes: &[u8]) -> Answer {
    let mut s = TcpStream::connect(addr).expect("connect to the API");
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    // A server refusing a huge body may close before taking it all: what it answered is still readable.
    let _ = s.write_all(bytes);
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if raw.is_empty() && e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(_) => break,
        }
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.strip_prefix("HTTP/1.1 ").and_then(|r| r.get(..3)).and_then(|c| c.parse().ok());
    Answer { status, text, request: String::new() }
}

fn request(method: &str, path: &str, host: &str, headers: &[String], body: &[u8]) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    if !body.is_empty() || method == "POST" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    out
}

/// The request kinds; `malformed` ones may also be closed without an answer (broken HTTP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    BadJson,
    UnknownFields,
    WrongTypes,
    ForbiddenSource,
    NoToken,
    WrongToken,
    PathTrick,
    HugeBody,
    BadHost,
    BadMethod,
    WrongContentType,
    BrokenHttp,
}

const KINDS: &[Kind] = &[
    Kind::BadJson,
    Kind::UnknownFields,
    Kind::WrongTypes,
    Kind::ForbiddenSource,
    Kind::NoToken,
    Kind::WrongToken,
    Kind::PathTrick,
    Kind::HugeBody,
    Kind::BadHost,
    Kind::BadMethod,
    Kind::WrongContentType,
    Kind::BrokenHttp,
];

fn pick<'a>(rng: &mut fastrand::Rng, items: &[&'a str]) -> &'a str {
    items[rng.usize(..items.len())]
}

fn secret_uri(rng: &mut fastrand::Rng) -> String {
    let s = pick(rng, SECRETS);
    match rng.u8(..4) {
        0 => format!("rtmp://127.0.0.1:1/live/{s}"),
        1 => format!("rtsp://cam:{s}@127.0.0.1:1/s1"),
        2 => format!("srt://127.0.0.1:1?passphrase={s}"),
        _ => format!("https://cdn.example.com/x/index.m3u8?token={s}"),
    }
}

/// A hostile request of `kind`; every one must be refused.
fn generate(rng: &mut fastrand::Rng, kind: Kind, addr: &str) -> Vec<u8> {
    let auth = format!("Authorization: Bearer {TOKEN}");
    let json = "Content-Type: application/json".to_string();
    let ok_uri = "rtmp://127.0.0.1:1/live/cam";
    match kind {
        Kind::BadJson => {
            let valid = json!({"id": "x", "uri": secret_uri(rng)}).to_string();
            let body: Vec<u8> = match rng.u8(..4) {
                0 => valid.as_bytes()[..rng.usize(..valid.len())].to_vec(),
                1 => (0..rng.usize(1..512)).map(|_| rng.u8(..)).collect(),
                2 => format!("{{{}}}", "[".repeat(rng.usize(1..300))).into_bytes(),
                _ => valid.replace(':', if rng.bool() { ";" } else { "::" }).into_bytes(),
            };
            request("POST", "/streams", addr, &[auth, json], &body)
        }
        Kind::UnknownFields => {
            let field = pick(rng, &["bogus", "pipeline", "exec", "__proto__", "location"]).to_string();
            let extra: serde_json::Map<String, serde_json::Value> = [(field, json!(1))].into_iter().collect();
            let body = match rng.u8(..3) {
                0 => json!({"id": "x", "uri": ok_uri}).as_object().unwrap().clone().into_iter().chain(extra).collect(),
                1 => json!({"uri": ok_uri, "options": extra}),
                _ => json!({"catalog": "/tmp/c.jsonl", "extra": true}),
            };
            let path = if body.get("catalog").is_some() { "/gallery/products" } else { "/streams" };
            request("POST", path, addr, &[auth, json], body.to_string().as_bytes())
        }
        Kind::WrongTypes => {
            let body = pick(rng, &[
                r#"{"uri": 5}"#,
                r#"{"uri": null}"#,
                r#"{"uri": ["rtmp://h/a/b"]}"#,
                r#"{"id": 7, "uri": "rtmp://h/a/b"}"#,
                r#"{"uri": "rtmp://h/a/b", "options": {"max_rate_hz": "fast"}}"#,
                r#"{"uri": "rtmp://h/a/b", "options": {"max_rate_hz": -1}}"#,
                r#"{"uri": "rtmp://h/a/b", "options": {"stall_timeout_secs": 1e309}}"#,
                r#"[]"#,
                r#""rtmp://h/a/b""#,
                r#"{"id": "../../etc", "uri": "rtmp://h/a/b"}"#,
                r#"{"id": "a b", "uri": "rtmp://h/a/b"}"#,
                r#"{"id": "", "uri": "rtmp://h/a/b"}"#,
                r#"{"uri": ""}"#,
            ]);
            request("POST", "/streams", addr, &[auth, json], body.as_bytes())
        }
        Kind::ForbiddenSource => {
            let s = pick(rng, SECRETS);
            let uri = match rng.u8(..12) {
                0 => "file:///etc/passwd".to_string(),
                1 => "/etc/passwd".to_string(),
                2 => "../../../../etc/shadow".to_string(),
                3 => format!("srt://127.0.0.1:9000?mode=listener&passphrase={s}"),
                4 => "srt://0.0.0.0:9000".to_string(),
                5 => format!("http://127.0.0.1:8080/x.m3u8?token={s}"),
                6 => "http://169.254.169.254/latest/meta-data/x.m3u8".to_string(),
                7 => "http://[::1]:9092/x.m3u8".to_string(),
                8 => format!("https://cdn.example.com/video.mp4?token={s}"),
                9 => format!("rtmp://127.0.0.1:1/live/{s} swfUrl=http://10.0.0.1/x swfVfy=1"),
                10 => format!("gopher://u:{s}@h/x"),
                _ => format!("FILE:///proc/self/environ#{s}"),
            };
            request("POST", "/streams", addr, &[auth, json], json!({"uri": uri}).to_string().as_bytes())
        }
        Kind::NoToken | Kind::WrongToken => {
            let token = match (kind, rng.u8(..5)) {
                (Kind::NoToken, _) => None,
                (_, 0) => Some(format!("Authorization: Bearer {}", &TOKEN[..TOKEN.len() - 1])),
                (_, 1) => Some(format!("Authorization: Basic {TOKEN}")),
                (_, 2) => Some(format!("Authorization: Bearer {TOKEN}x")),
                (_, 3) => Some("Authorization: Bearer".to_string()),
                _ => Some(format!("Authorization: Bearer {}", rng.u64(..))),
            };
            let headers: Vec<String> = token.into_iter().chain([json]).collect();
            let (method, path, body) = match rng.u8(..5) {
                0 => ("POST", "/streams".to_string(), json!({"id": "x", "uri": secret_uri(rng)}).to_string()),
                1 => ("DELETE", format!("/streams/{}", pick(rng, &["kept", "x", "cam"])), String::new()),
                2 => ("POST", "/gallery/reload".to_string(), String::new()),
                3 => ("POST", "/gallery/products".to_string(), json!({"catalog": "/tmp/c.jsonl"}).to_string()),
                _ => ("DELETE", "/gallery/products/sku-espresso-set".to_string(), String::new()),
            };
            request(method, &path, addr, &headers, body.as_bytes())
        }
        Kind::PathTrick => {
            let path = pick(rng, &[
                "/gallery/products/..%2F..%2F..%2Fetc%2Fpasswd/image",
                "/gallery/products/%2e%2e%2f%2e%2e%2fetc%2fpasswd/image",
                "/gallery/products/..%252F..%252Fetc%252Fpasswd/image",
                "/gallery/products/%00/image",
                "/gallery/products/nope/image",
                "/gallery/products/sku-espresso-set/image/../../../../etc/passwd",
                "/streams/..%2F..%2Fetc%2Fpasswd",
                "/streams/%2e%2e/frame.jpg",
                "/streams/nope/frame.jpg",
                "/assets/../../../../etc/passwd",
                "/assets/%2e%2e/%2e%2e/Cargo.toml",
                "/../../etc/passwd",
                "//etc/passwd",
                "/streams/x%00y",
                "/.git/config",
                "/api/events/../../metrics2",
            ]);
            let path = if rng.u8(..20) == 0 { format!("/streams/{}", "a".repeat(rng.usize(1000..20000))) } else { path.to_string() };
            let method = if path.contains("streams/") && rng.bool() { "DELETE" } else { "GET" };
            let headers = if method == "DELETE" { vec![auth] } else { vec![] };
            request(method, &path, addr, &headers, b"")
        }
        Kind::HugeBody => {
            let size = MAX_BODY + rng.usize(1..4 * MAX_BODY);
            let mut body = br#"{"uri": ""#.to_vec();
            body.resize(size, b'a');
            request("POST", pick(rng, &["/streams", "/gallery/products"]), addr, &[auth, json], &body)
        }
        Kind::BadHost => {
            let host = pick(rng, &["evil.example", "evil.example:80", "127.0.0.1.nip.io", "localhost.evil", "[::2]:1", "10.0.0.1"]);
            let (method, path) = *[("GET", "/streams"), ("GET", "/api/board"), ("POST", "/gallery/reload"), ("GET", "/metrics")]
                .get(rng.usize(..4))
                .unwrap();
            request(method, path, host, &[auth], b"")
        }
        Kind::BadMethod => {
            let method = pick(rng, &["PUT", "PATCH", "TRACE", "CONNECTX", "DELETE"]);
            let path = pick(rng, &["/streams", "/metrics", "/gallery", "/healthz", "/api/board"]);
            request(method, path, addr, &[auth], b"")
        }
        Kind::WrongContentType => {
            let ct = pick(rng, &["Content-Type: text/plain", "Content-Type: application/x-www-form-urlencoded", "Content-Type: application/jsonx"]);
            let body = json!({"uri": secret_uri(rng)}).to_string();
            request("POST", "/streams", addr, &[auth, ct.to_string()], body.as_bytes())
        }
        Kind::BrokenHttp => match rng.u8(..6) {
            0 => (0..rng.usize(1..2048)).map(|_| rng.u8(..)).chain(*b"\r\n\r\n").collect(),
            1 => format!("GET /streams HTTP/1.1\r\nHost: {addr}\r\nContent-Length: -5\r\n\r\n").into_bytes(),
            2 => format!("POST /streams HTTP/1.1\r\nHost: {addr}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").into_bytes(),
            3 => format!("GET /streams HTTP/1.1\r\nHost: {addr}\r\nX-Big: {}\r\n\r\n", "b".repeat(rng.usize(500_000..900_000))).into_bytes(),
            4 => format!("GET /streams HTTP/1.1\r\nHost: {addr}\r\nNo colon here\r\n\r\n").into_bytes(),
            _ => format!("POST /streams HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\n{{}}").into_bytes(),
        },
    }
}

#[test]
fn ten_thousand_hostile_requests_get_refused() {
    let dir = tempfile::tempdir().unwrap();
    let gallery = common::scene::demo_gallery(dir.path());
    let api = format!(
        "max_sse_clients = {SSE_CLIENTS}\nmax_body_bytes = {MAX_BODY}\nheader_read_timeout = \"2s\"\n\
         request_timeout = \"30s\"\nmax_concurrent_requests = 64\nallowed_hosts = [\"dash.example.com\"]"
    );
    let svc = Service::start_api(&gallery, &api, "", &[]);
    let addr = svc.addr.clone();

    // Streams whose URIs carry secrets (their sources are down, so they fail and report errors).
    for (id, uri) in [
        (Some("kept"), format!("rtmp://127.0.0.1:1/live/{}", SECRETS[0])),
        (None, format!("rtsp://cam:{}@127.0.0.1:1/s1", SECRETS[1])),
        (None, format!("srt://127.0.0.1:1?passphrase={}", SECRETS[2])),
    ] {
        let body = json!({"id": id, "uri": uri, "options": {"max_reconnects": 1}});
        let r = svc.send("POST", "/streams", Some(&body));
        assert_eq!(r.status, 201, "{uri}: {}", r.text());
        let shown = r.text();
        assert!(SECRETS.iter().all(|s| !shown.contains(s)), "a secret in the answer: {shown}");
    }
    let streams_before = svc.get("/streams").json()["streams"].as_array().unwrap().len();
    let products_before = svc.get("/gallery").json()["products"].clone();

    // The hostile requests, each thread with its own seeded generator.
    let started = Instant::now();
    let results: Vec<(Kind, Answer)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let addr = addr.clone();
                scope.spawn(move || {
                    let mut rng = fastrand::Rng::with_seed(SEED + t as u64);
                    (0..REQUESTS / THREADS)
                        .map(|_| {
                            let kind = KINDS[rng.usize(..KINDS.len())];
                            let req = generate(&mut rng, kind, &addr);
                            let mut answer = exchange(&addr, &req);
                            answer.request = String::from_utf8_lossy(&req[..req.len().min(160)]).into_owned();
                            (kind, answer)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
    });
    let wall = started.elapsed();

    let server_paths = [dir.path().to_str().unwrap(), gallery.as_str(), svc.dir.path().to_str().unwrap(), env!("CARGO_MANIFEST_DIR")];
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_kind: BTreeMap<(Kind, String), usize> = BTreeMap::new();
    for (kind, a) in &results {
        let status = a.status.map_or("closed".to_string(), |s| s.to_string());
        *by_status.entry(status.clone()).or_default() += 1;
        *by_kind.entry((*kind, status)).or_default() += 1;
        // Where the refusal is certain, it must be that one (a token check can never be skipped).
        let exact: &[u16] = match kind {
            Kind::NoToken => &[401],
            Kind::WrongToken => &[401, 403],
            Kind::ForbiddenSource => &[400, 403],
            Kind::HugeBody => &[413],
            Kind::BadHost => &[421],
            Kind::BadMethod => &[405],
            Kind::WrongContentType => &[415],
            _ => &[],
        };
        if let Some(s) = a.status {
            assert!(exact.is_empty() || exact.contains(&s) || s == 503, "{kind:?} answered {s} to {:?}", a.request);
        }
        match a.status {
            Some(s) => assert!(
                (400..500).contains(&s) || s == 503,
                "{kind:?} answered {s} to {:?}: {}",
                a.request,
                &a.text[..a.text.len().min(600)]
            ),
            None => assert_eq!(*kind, Kind::BrokenHttp, "{kind:?} closed without an answer"),
        }
        for s in SECRETS.iter().chain(&server_paths) {
            assert!(!a.text.contains(s), "{kind:?}: answer shows {s:?}: {}", &a.text[..a.text.len().min(600)]);
        }
        // hyper answers broken HTTP itself, before any layer.
        if a.status.is_some() && *kind != Kind::BrokenHttp {
            assert!(a.text.contains("x-content-type-options: nosniff"), "{kind:?}: no nosniff: {}", &a.text[..a.text.len().min(400)]);
        }
    }
    assert_eq!(results.len(), REQUESTS);
    eprintln!("{REQUESTS} hostile requests from {THREADS} threads in {:.1} s: {by_status:?}", wall.as_secs_f64());
    for ((kind, status), n) in &by_kind {
        eprintln!("  {kind:?} {status}: {n}");
    }

    // Bounded live-update subscribers: the next one past the bound answers 503.
    let mut held = Vec::new();
    for _ in 0..SSE_CLIENTS {
        let mut s = TcpStream::connect(&addr).unwrap();
        s.write_all(format!("GET /api/events HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut head = [0u8; 12];
        s.read_exact(&mut head).unwrap();
        assert_eq!(&head, b"HTTP/1.1 200", "SSE subscriber within the bound");
        held.push(s);
    }
    let over = exchange(&addr, &request("GET", "/api/events", &addr, &[], b""));
    assert_eq!(over.status, Some(503), "{}", over.text);
    assert!(over.text.contains("api.max_sse_clients"), "{}", over.text);
    drop(held);

    // Slow clients trickling a request head are cut off by the header-read timeout.
    let slow: Vec<_> = (0..3)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(&addr).unwrap();
                s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
                let _ = s.write_all(format!("GET /streams HTTP/1.1\r\nHost: {addr}\r\nX-Slow: ").as_bytes());
                let deadline = Instant::now() + Duration::from_secs(60);
                let mut buf = [0u8; 512];
                loop {
                    assert!(Instant::now() < deadline, "a slow client was never cut off");
                    if s.write_all(b"a").is_err() {
                        return;
                    }
                    match s.read(&mut buf) {
                        Ok(0) => return,
                        Ok(n) => {
                            let text = String::from_utf8_lossy(&buf[..n]).to_string();
                            assert!(text.starts_with("HTTP/1.1 4"), "slow client answered: {text}");
                            return;
                        }
                        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();
    slow.into_iter().for_each(|t| t.join().unwrap());

    // Still healthy; nothing was changed without the token; no secret anywhere.
    assert_eq!(svc.get("/healthz").status, 200);
    assert_eq!(svc.get("/readyz").json()["status"], "ready");
    let streams = svc.get("/streams");
    assert_eq!(streams.json()["streams"].as_array().unwrap().len(), streams_before, "{}", streams.text());
    assert!(svc.stream("kept").is_some(), "a stream was removed without the token");
    assert_eq!(svc.get("/gallery").json()["products"], products_before);
    for path in ["/streams", "/api/board", "/metrics"] {
        let text = svc.get(path).text();
        assert!(SECRETS.iter().all(|s| !text.contains(s)), "{path} shows a secret: {text}");
    }
    // The failing streams' errors (and their URIs) have been logged by now.
    svc.wait_stream("kept", Duration::from_secs(60), |s| s["state"] == "failed");
    let log = svc.log();
    assert!(!log.contains("panicked"), "{log}");
    for s in SECRETS {
        assert!(!log.contains(s), "the log shows {s:?}:\n{log}");
    }
}
