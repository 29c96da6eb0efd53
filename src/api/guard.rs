//! What wraps every request before a handler sees it, and the accept loop: the `Host` check against DNS
//! rebinding, a global bound on requests in flight (503 past it, never a queue), a request timeout (408),
//! a body size limit (413), security headers on every answer, and hyper's header-read timeout for slow
//! clients. All of it is set under `[api]` (config/README.md).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{Request, State};
use axum::http::header::{CONTENT_SECURITY_POLICY, HOST, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;

use super::ApiError;
use crate::service::ApiConfig;

/// The dashboard loads its script, style, keyframes and thumbnails from this origin only (no inline
/// code, no catalogue pictures from other hosts), and no other site may frame it.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; \
                   connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Request heads (request line and headers) larger than this answer 431.
const MAX_HEAD_BYTES: usize = 64 * 1024;

/// The `[api]` settings the guard applies.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The listener's address: its IP (and `localhost` on loopback) is always an allowed `Host`.
    pub listen: SocketAddr,
    /// `api.allowed_hosts`, lower-cased.
    pub hosts: Vec<String>,
    pub request_timeout: Duration,
    pub max_body_bytes: usize,
    pub max_concurrent_requests: usize,
}

impl Settings {
    pub fn new(cfg: &ApiConfig, listen: SocketAddr) -> Self {
        Settings {
            listen,
            hosts: cfg.allowed_hosts.iter().map(|h| h.trim().trim_end_matches('.').to_ascii_lowercase()).collect(),
            request_timeout: cfg.request_timeout,
            max_body_bytes: cfg.max_body_bytes,
            max_concurrent_requests: cfg.max_concurrent_requests,
        }
    }

    /// A `Host` header value (`name`, `name:port`, `[v6]:port`) we answer to. Browsers always send the
    /// name they resolved, so a rebinding attacker's page arrives with the attacker's name.
    fn allows(&self, host: &str) -> bool {
        let host = host.trim();
        let name = match host.strip_prefix('[') {
            Some(rest) => rest.split(']').next().unwrap_or_default(),
            None => host.rsplit_once(':').filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit())).map_or(host, |(n, _)| n),
        };
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let ip = self.listen.ip();
        if let Ok(given) = name.parse::<IpAddr>() {
            return ip.is_unspecified() || given == ip || self.hosts.contains(&name);
        }
        let local = ip.is_loopback() || ip.is_unspecified();
        (local && name == "localhost")
            || self.hosts.iter().any(|h| match h.strip_prefix("*.") {
                Some(domain) => name == domain || name.ends_with(&format!(".{domain}")),
                None => *h == name,
            })
    }
}

/// Applies the layers to every route (the concurrency bound is one semaphore for all of them).
pub fn wrap(routes: Router, s: &Settings) -> Router {
    let overloaded = |_: tower::BoxError| async {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "too many requests at once (api.max_concurrent_requests): retry")
    };
    routes
        .layer(RequestBodyLimitLayer::new(s.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, s.request_timeout))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(overloaded))
                .load_shed()
                .layer(GlobalConcurrencyLimitLayer::new(s.max_concurrent_requests)),
        )
        .layer(axum::middleware::from_fn_with_state(s.clone(), check_host))
        .layer(SetResponseHeaderLayer::overriding(CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)))
        .layer(SetResponseHeaderLayer::overriding(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .layer(SetResponseHeaderLayer::overriding(X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
        .layer(SetResponseHeaderLayer::overriding(REFERRER_POLICY, HeaderValue::from_static("no-referrer")))
}

/// A request without `Host` (not from a browser: HTTP/1.0, in-process calls) cannot be rebound.
async fn check_host(State(s): State<Settings>, req: Request, next: Next) -> Response {
    let host = req.headers().get(HOST).map(|h| h.to_str().map(str::to_string));
    match host {
        Some(Ok(h)) if !s.allows(&h) => {
            let shown: String = h.chars().filter(|c| c.is_ascii_graphic()).take(64).collect();
            ApiError::new(
                StatusCode::MISDIRECTED_REQUEST,
                format!("Host '{shown}' is not served here: add it to api.allowed_hosts"),
            )
            .into_response()
        }
        Some(Err(_)) => ApiError::bad_request("the Host header is not text").into_response(),
        _ => next.run(req).await,
    }
}

/// Accepts connections until `stopping`, then waits for requests in flight (SSE streams end on
/// `stopping` too). Each connection gets hyper's header-read timeout.
pub async fn serve(listener: tokio::net::TcpListener, app: Router, header_timeout: Duration, stopping: CancellationToken) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    // With hyper's default buffer limit a 0.9 MB header was served: cap what one connection can pin.
    http.timer(TokioTimer::new()).header_read_timeout(header_timeout).max_buf_size(MAX_HEAD_BYTES).max_headers(64);
    loop {
        let (tcp, _) = tokio::select! {
            _ = stopping.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors, usually: back off instead of spinning.
                    tracing::warn!(error = %e, "API accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let conn = http.serve_connection(TokioIo::new(tcp), TowerToHyperService::new(app.clone()));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "API connection ended with an error");
            }
        });
    }
    graceful.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(listen: &str, hosts: &[&str]) -> Settings {
        let cfg = ApiConfig { allowed_hosts: hosts.iter().map(|h| h.to_string()).collect(), ..Default::default() };
        Settings::new(&cfg, listen.parse().unwrap())
    }

    #[test]
    fn host_check_admits_the_listener_and_configured_names() {
        let s = settings("127.0.0.1:8080", &["Dash.Example.com", "*.corp.internal"]);
        for ok in ["127.0.0.1:8080", "127.0.0.1", "localhost:8080", "LOCALHOST", "dash.example.com", "a.corp.internal:80", "corp.internal."] {
            assert!(s.allows(ok), "{ok}");
        }
        for bad in ["evil.com", "evil.com:8080", "127.0.0.1.evil.com", "10.0.0.1:8080", "[::1]:8080", "xcorp.internal", ""] {
            assert!(!s.allows(bad), "{bad}");
        }
        let any = settings("0.0.0.0:8080", &[]);
        assert!(any.allows("10.1.2.3:8080") && any.allows("[fd00::1]:8080") && any.allows("localhost"));
        assert!(!any.allows("rebind.attacker.net:8080"));
        let v6 = settings("[::1]:8080", &[]);
        assert!(v6.allows("[::1]:8080") && !v6.allows("127.0.0.1:8080"));
    }
}
