//! Bearer-token checks. Mutating endpoints, as an extractor: a handler that takes [`Authorized`] runs
//! only for a request carrying `Authorization: Bearer <token>`. Missing credentials: 401; a wrong token,
//! or no token configured at all: 403. Reads ([`reads`], a middleware): open on a loopback listener;
//! otherwise they need `token` or `read_token`, as a bearer header or as the dashboard's
//! `livesku_token` cookie (EventSource and `<img>` cannot send headers; the cookie is `SameSite=Strict`
//! and never authorises a change).

use axum::extract::{FromRequestParts, Request, State as S};
use axum::http::header::{AUTHORIZATION, COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, State};

pub struct Authorized;

impl FromRequestParts<State> for Authorized {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &State) -> Result<Self, Self::Rejection> {
        let Some(expected) = state.token.as_deref() else {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "mutating endpoints are disabled: set api.token or LIVESKU_API_TOKEN",
            ));
        };
        match bearer(&parts.headers) {
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing bearer token (Authorization: Bearer ...)",
            )),
            Some(t) if constant_time_eq(t.as_bytes(), expected.as_bytes()) => Ok(Authorized),
            Some(_) => Err(ApiError::new(StatusCode::FORBIDDEN, "invalid token")),
        }
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix("livesku_token="))
        .map(|t| percent_encoding::percent_decode_str(t).decode_utf8_lossy().trim().to_string())
}

/// Needed by nobody: probes and the dashboard's static files (they hold no data).
fn open_path(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/") || path.starts_with("/assets/")
}

/// Read access when the listener is not loopback; changes are left to [`Authorized`].
pub async fn reads(S(state): S<State>, req: Request, next: Next) -> Response {
    let read = matches!(*req.method(), Method::GET | Method::HEAD);
    if !state.reads_need_token || !read || open_path(req.uri().path()) {
        return next.run(req).await;
    }
    let given = bearer(req.headers()).map(str::to_string).or_else(|| cookie_token(req.headers()));
    let Some(given) = given else {
        let msg = "reads need a token on this listener: Authorization: Bearer <api.token or api.read_token> \
                   (the dashboard: open it as /#token=...)";
        return ApiError::new(StatusCode::UNAUTHORIZED, msg).into_response();
    };
    let fits = |t: &Option<String>| t.as_deref().is_some_and(|t| constant_time_eq(given.as_bytes(), t.as_bytes()));
    if fits(&state.token) || fits(&state.read_token) {
        next.run(req).await
    } else {
        ApiError::new(StatusCode::FORBIDDEN, "invalid token").into_response()
    }
}

/// Compares without an early exit, so response timing does not reveal how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn constant_time_eq_compares_bytes() {
        assert!(super::constant_time_eq(b"abc", b"abc"));
        assert!(!super::constant_time_eq(b"abc", b"abd"));
        assert!(!super::constant_time_eq(b"abc", b"abcd"));
    }

    #[test]
    fn tokens_from_header_or_cookie() {
        let mut h = axum::http::HeaderMap::new();
        h.insert("authorization", "Bearer  tok-1 ".parse().unwrap());
        h.insert("cookie", "a=b; livesku_token=tok%2D2; c=d".parse().unwrap());
        assert_eq!(super::bearer(&h), Some("tok-1"));
        assert_eq!(super::cookie_token(&h).as_deref(), Some("tok-2"));
        assert!(super::open_path("/assets/dashboard.js") && !super::open_path("/metrics"));
    }
}
