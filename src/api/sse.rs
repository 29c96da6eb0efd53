//! `GET /api/events`: dashboard updates as server-sent events (JSON in `data:`). A client that falls
//! behind gets a `resync` event and reloads the snapshot instead of piling up memory here. At most
//! `api.max_sse_clients` subscribe at once; the next one answers 503.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::State as S;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use tokio::sync::broadcast::error::RecvError;

use super::{ApiError, State};

/// Subscribers now and their bound.
pub struct Slots {
    max: usize,
    used: Arc<AtomicUsize>,
}

/// One subscriber's slot, given back when its stream is dropped (client gone or server stopping).
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Slots {
    pub fn new(max: usize) -> Self {
        Slots { max, used: Arc::new(AtomicUsize::new(0)) }
    }

    fn take(&self) -> Option<Slot> {
        let max = self.max;
        self.used.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < max).then_some(n + 1)).ok()?;
        Some(Slot(self.used.clone()))
    }
}

pub async fn events(S(state): S<State>) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let slot = state.sse.take().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{} live-update clients already (api.max_sse_clients): retry later", state.sse.max),
        )
    })?;
    let rx = state.service.board.subscribe();
    let stopping = state.stopping.clone();
    let stream = futures::stream::unfold((rx, stopping, slot), |(mut rx, stopping, slot)| async move {
        let next = tokio::select! {
            _ = stopping.cancelled() => return None,
            r = rx.recv() => r,
        };
        let event = match next {
            Ok(u) => match serde_json::to_string(&u) {
                Ok(data) => Event::default().data(data),
                Err(_) => Event::default().comment("unserialisable update"),
            },
            Err(RecvError::Lagged(n)) => Event::default().event("resync").data(n.to_string()),
            Err(RecvError::Closed) => return None,
        };
        Some((Ok(event), (rx, stopping, slot)))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
