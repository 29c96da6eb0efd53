//! The control API's handlers in process (`tower::ServiceExt::oneshot`, no socket) over a real service
//! (default model, demo gallery, speech off): typed JSON shapes, auth, validation, and readiness turning
//! red, naming the stage, when a stage fails.

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use livesku::api::{ApiState, router};
use livesku::service::{ApiConfig, Service, ServiceConfig};
use serde_json::{Value, json};
use tower::ServiceExt;

const TOKEN: &str = "in-process-token-0123456789";

async fn call(app: &axum::Router, method: &str, path: &str, token: Option<&str>, body: Option<Value>) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = match body {
        Some(b) => req.header("content-type", "application/json").body(Body::from(b.to_string())),
        None => req.body(Body::empty()),
    }
    .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24).await.unwrap();
    let value = serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, value)
}

#[test]
fn handlers_answer_typed_json_and_readiness_follows_stage_health() {
    let dir = tempfile::tempdir().unwrap();
    let gallery = common::scene::demo_gallery(dir.path());
    let mut cfg = ServiceConfig::default();
    cfg.gallery.path = Some(gallery.into());
    cfg.asr.enabled = false;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    let service = Arc::new(Service::start(&cfg, |_| {}).expect("service starts (run scripts/setup.sh)"));
    let api = ApiConfig { token: Some(TOKEN.into()), max_streams: 2, ..ApiConfig::default() };
    let state = Arc::new(ApiState::new(service.clone(), &api, None, None));
    let app = router(state);
    rt.block_on(async {
        let (s, v) = call(&app, "GET", "/readyz", None, None).await;
        assert_eq!((s, &v["status"]), (StatusCode::OK, &json!("ready")), "{v}");
        assert_eq!(v["products"], 4, "{v}");
        let worker = livesku::event::EventContext::default_worker();
        assert_eq!(call(&app, "GET", "/streams", None, None).await.1, json!({"worker": worker, "streams": []}));
        let (_, v) = call(&app, "GET", "/cluster", None, None).await;
        assert_eq!(v, json!({"worker": worker, "group": null, "partitions": [], "streams": []}));
        let (s, v) = call(&app, "GET", "/api/board", None, None).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["streams"], json!([]), "{v}");

        let add = json!({"id": "a", "uri": "rtmp://127.0.0.1:1/live/a"});
        assert_eq!(call(&app, "POST", "/streams", None, Some(add.clone())).await.0, StatusCode::UNAUTHORIZED);
        assert_eq!(call(&app, "POST", "/streams", Some("wrong-token-wrong-token"), Some(add.clone())).await.0, StatusCode::FORBIDDEN);
        let (s, v) = call(&app, "POST", "/streams", Some(TOKEN), Some(json!({"uri": "gopher://x/y"}))).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert!(v["error"]["message"].as_str().unwrap().contains("scheme"), "{v}");

        // One shape for a stream everywhere: the add answer, GET /streams/{id}, the list, the board.
        let (s, added) = call(&app, "POST", "/streams", Some(TOKEN), Some(add)).await;
        assert_eq!(s, StatusCode::CREATED, "{added}");
        for key in ["id", "generation", "uri", "live", "state", "last_error", "keyframes", "last_processed_seq", "on_screen", "board"] {
            assert!(added.get(key).is_some(), "{key} missing: {added}");
        }
        assert_eq!((added["id"].as_str(), added["generation"].as_u64()), (Some("a"), Some(0)));
        let (_, one) = call(&app, "GET", "/streams/a", None, None).await;
        let (_, list) = call(&app, "GET", "/streams", None, None).await;
        let (_, board) = call(&app, "GET", "/api/board", None, None).await;
        let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&one), keys(&added));
        assert_eq!(keys(&list["streams"][0]), keys(&added));
        assert_eq!(keys(&board["streams"][0]), keys(&added));
        let (s, v) = call(&app, "POST", "/streams", Some(TOKEN), Some(json!({"id": "a", "uri": "rtmp://127.0.0.1:1/live/a"}))).await;
        assert_eq!(s, StatusCode::CONFLICT, "{v}");

        // Removed, then added again: a new session of the same id.
        let (s, removed) = call(&app, "DELETE", "/streams/a", Some(TOKEN), None).await;
        assert_eq!((s, &removed["removed"]), (StatusCode::OK, &json!(true)), "{removed}");
        assert_eq!(removed["final"]["state"], "stopped", "{removed}");
        let (_, again) = call(&app, "POST", "/streams", Some(TOKEN), Some(json!({"id": "a", "uri": "rtmp://127.0.0.1:1/live/a"}))).await;
        assert_eq!(again["generation"], 1, "{again}");
        assert_eq!(call(&app, "DELETE", "/streams/nope", Some(TOKEN), None).await.0, StatusCode::NOT_FOUND);

        // Off loopback, reads need a token: the full one, the read token (which cannot change anything), or
        // the dashboard's cookie; probes and the page's static files stay open.
        let read = "read-only-token-0123456789";
        let remote = ApiConfig { listen: "0.0.0.0:8080".into(), read_token: Some(read.into()), ..api.clone() };
        let remote = router(Arc::new(ApiState::new(service.clone(), &remote, None, None)));
        for path in ["/streams", "/api/board", "/metrics", "/gallery", "/api/events"] {
            assert_eq!(call(&remote, "GET", path, None, None).await.0, StatusCode::UNAUTHORIZED, "{path}");
            assert_eq!(call(&remote, "GET", path, Some("wrong-token-wrong-token"), None).await.0, StatusCode::FORBIDDEN, "{path}");
        }
        for path in ["/healthz", "/readyz", "/", "/assets/dashboard.js"] {
            assert_eq!(call(&remote, "GET", path, None, None).await.0, StatusCode::OK, "{path}");
        }
        assert_eq!(call(&remote, "GET", "/streams", Some(read), None).await.0, StatusCode::OK);
        assert_eq!(call(&remote, "GET", "/streams", Some(TOKEN), None).await.0, StatusCode::OK);
        assert_eq!(call(&remote, "POST", "/gallery/reload", Some(read), None).await.0, StatusCode::FORBIDDEN);
        let with_cookie = |cookie: String| Request::get("/api/board").header("cookie", cookie).body(Body::empty()).unwrap();
        let r = remote.clone().oneshot(with_cookie(format!("x=1; livesku_token={read}"))).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let r = remote.clone().oneshot(with_cookie("livesku_token=nope".into())).await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        // Host names: the listener's address, localhost on loopback, or api.allowed_hosts (DNS rebinding).
        let host = |h: &str| Request::get("/healthz").header("host", h).body(Body::empty()).unwrap();
        assert_eq!(app.clone().oneshot(host("localhost:8080")).await.unwrap().status(), StatusCode::OK);
        assert_eq!(app.clone().oneshot(host("rebind.example:8080")).await.unwrap().status(), StatusCode::MISDIRECTED_REQUEST);

        // A failed stage turns readiness red and names it.
        service.health.fail("matcher", "test: simulated failure");
        let (s, v) = call(&app, "GET", "/readyz", None, None).await;
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!((v["status"].as_str(), v["stage"].as_str()), (Some("failed"), Some("matcher")), "{v}");
        assert_eq!(call(&app, "GET", "/healthz", None, None).await.0, StatusCode::OK);

        let stats = service.shutdown(tokio::time::Instant::now() + std::time::Duration::from_secs(10)).await;
        assert_eq!(stats.len(), 1);
        assert!(!service.accepting());
    });
}
