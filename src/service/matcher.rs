//! Match stage: embeddings are searched in the gallery, the top-k hits become an [`Observation`] for the
//! tracker, and the tracker's decisions become events.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, select};
use parking_lot::RwLock;

use super::background::Background;
use super::board::Board;
use super::metrics::ServiceMetrics;
use crate::encode::Embedded;
use crate::event::{DetectionEvent, EventContext};
use crate::gallery::Searcher;
use crate::messages::{StatusChange, StreamId, StreamState};
use crate::track::{Decision, DecisionKind, Match, Observation, Tracker};

/// How long after a stream ended to wait for its last frames to leave the encoder before closing its
/// open episodes (status changes and frames travel on different channels).
const END_GRACE: Duration = Duration::from_secs(3);

pub struct Matcher {
    /// Shared with the control API, which swaps or edits it (gallery reload, product add/remove).
    pub searcher: Arc<RwLock<Searcher>>,
    pub background: Background,
    pub background_margin: f32,
    /// Length of the visual part of `[visual | text]` embeddings: abstention looks at the image only.
    pub visual_dim: usize,
    pub tracker: Tracker,
    pub top_k: usize,
    pub context: EventContext,
    pub board: Arc<Board>,
    pub metrics: Arc<ServiceMetrics>,
}

impl Matcher {
    /// Runs until the encoder output closes, then ends every open episode. `emit` gets each event.
    pub fn run(
        mut self,
        embedded: Receiver<Embedded>,
        status: Receiver<StatusChange>,
        mut emit: impl FnMut(DetectionEvent),
    ) {
        let mut status = status;
        let mut ending: HashMap<StreamId, Instant> = HashMap::new();
        loop {
            select! {
                recv(embedded) -> msg => match msg {
                    Ok(e) => {
                        // Frames of an ended stream are still draining: postpone closing its episodes.
                        if let Some(at) = ending.get_mut(&e.frame.stream_id) {
                            *at = Instant::now();
                        }
                        let decisions = self.tracker.observe(&self.observation(&e));
                        self.publish(decisions, Some(e.frame.captured_at), &mut emit);
                        if let Some(text) = e.text.as_deref() {
                            self.board.asr_text(&e.frame.stream_id, text);
                        }
                        self.board.frame(e.frame);
                    }
                    Err(_) => break,
                },
                recv(status) -> msg => match msg {
                    Ok(s) if matches!(s.state, StreamState::Stopped | StreamState::Failed) => {
                        ending.insert(s.stream_id, Instant::now());
                    }
                    Ok(_) => {}
                    Err(_) => status = crossbeam_channel::never(),
                },
                default(Duration::from_millis(500)) => {}
            }
            let done: Vec<StreamId> =
                ending.iter().filter(|(_, at)| at.elapsed() >= END_GRACE).map(|(id, _)| id.clone()).collect();
            for id in done {
                ending.remove(&id);
                let decisions = self.tracker.end_stream(&id);
                self.publish(decisions, None, &mut emit);
            }
        }
        let decisions = self.tracker.finish();
        self.publish(decisions, None, &mut emit);
    }

    fn observation(&self, e: &Embedded) -> Observation {
        let searcher = self.searcher.read();
        let gallery = &searcher.gallery;
        let started = Instant::now();
        let hits = searcher.search(&e.embedding, self.top_k).into_iter().next().unwrap_or_default();
        self.metrics.search_seconds.observe(started.elapsed().as_secs_f64());
        // Abstain when the frame looks at least as much like an empty set as like the best product. This
        // is decided on the image alone: background references carry no text, so with speech fused in,
        // the text part would lift every product over them and a product that is only named, not shown,
        // would be detected. Speech re-ranks products the camera shows; it does not make them appear.
        let v = self.visual_dim.min(e.embedding.len());
        let visual = |row: usize| dot(&e.embedding[..v], gallery.vector(row));
        let best = hits.iter().map(|h| visual(h.row)).fold(f32::NEG_INFINITY, f32::max);
        let matches = if best < self.background.score(&e.embedding[..v]) + self.background_margin {
            Vec::new()
        } else {
            hits.iter()
                .map(|h| Match { product_id: gallery.product(h.row).product_id.clone(), score: h.score })
                .collect()
        };
        Observation {
            stream_id: e.frame.stream_id.clone(),
            seq: e.frame.seq,
            pts_ms: e.frame.pts_ms,
            captured_at: e.frame.captured_at,
            matches,
            asr_text: e.text.clone(),
        }
    }

    /// `trigger`: capture time of the keyframe that led to these decisions (none when a stream's end did).
    fn publish(&self, decisions: Vec<Decision>, trigger: Option<SystemTime>, emit: &mut impl FnMut(DetectionEvent)) {
        if decisions.is_empty() {
            return;
        }
        let searcher = self.searcher.read();
        let gallery = &searcher.gallery;
        for d in decisions {
            let product = gallery.row_of(&d.product_id).map(|r| gallery.product(r));
            let event = DetectionEvent::from_decision(&d, product.map(|p| p.title.as_str()), &self.context);
            let image = product.and_then(|p| {
                ["image_url", "image"].iter().find_map(|k| p.metadata.get(*k).and_then(|v| v.as_str()).map(String::from))
            });
            self.board.event(&event, image);
            let counter = match d.kind {
                DecisionKind::Appeared => &self.metrics.events_appeared,
                DecisionKind::Updated => &self.metrics.events_updated,
                DecisionKind::Disappeared => &self.metrics.events_disappeared,
            };
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if let Some(t) = trigger {
                self.metrics.observe_e2e(t);
            }
            emit(event);
        }
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
