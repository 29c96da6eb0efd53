//! `GET /api/events`: dashboard updates as server-sent events (JSON in `data:`). A client that falls
//! behind gets a `resync` event and reloads the snapshot instead of piling up memory here.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State as S;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use tokio::sync::broadcast::error::RecvError;

use super::State;

pub async fn events(S(state): S<State>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = state.service.board.subscribe();
    let stopping = state.stopping.clone();
    let stream = futures::stream::unfold((rx, stopping), |(mut rx, stopping)| async move {
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
        Some((Ok(event), (rx, stopping)))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
