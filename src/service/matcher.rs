//! Match stage: embeddings are searched in the gallery, the top-k hits become an [`Observation`] for the
//! tracker, and the tracker's decisions become events.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crossbeam_channel::{Receiver, select};
use parking_lot::RwLock;

use super::background::Background;
use super::board::Board;
use super::metrics::ServiceMetrics;
use crate::encode::Embedded;
use crate::event::{DetectionEvent, EventContext};
use crate::gallery::Searcher;
use crate::messages::StreamId;
use crate::track::{Decision, DecisionKind, Match, Observation, Tracker};

/// Cosine between a stream's speech tag and a product's page text from which the speech counts as being
/// about that product, so the event carries it. On the demo, a line naming a product scores about 0.6
/// against its page and at most 0.06 against the others.
const SPEECH_SUPPORT: f32 = 0.3;

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
    /// Per stream: the unit text part of the latest keyframe that had a speech tag.
    pub speech: HashMap<StreamId, Vec<f32>>,
}

impl Matcher {
    /// Runs until the encoder output closes, then ends every open episode. `emit` gets each event.
    /// `ended` names a stream once all its embeddings are in `embedded` (see [`crate::encode::Batcher::ended`]):
    /// they are matched first, then the stream's open episodes are closed.
    pub fn run(
        mut self,
        embedded: Receiver<Embedded>,
        ended: Receiver<StreamId>,
        mut emit: impl FnMut(DetectionEvent),
    ) {
        let mut ended = ended;
        loop {
            select! {
                recv(embedded) -> msg => match msg {
                    Ok(e) => self.match_frame(e, &mut emit),
                    Err(_) => break,
                },
                recv(ended) -> msg => match msg {
                    Ok(id) => {
                        while let Ok(e) = embedded.try_recv() {
                            self.match_frame(e, &mut emit);
                        }
                        let decisions = self.tracker.end_stream(&id);
                        self.publish(decisions, None, &mut emit);
                        self.speech.remove(&id);
                    }
                    Err(_) => ended = crossbeam_channel::never(),
                },
            }
        }
        let decisions = self.tracker.finish();
        self.publish(decisions, None, &mut emit);
    }

    fn match_frame(&mut self, e: Embedded, emit: &mut impl FnMut(DetectionEvent)) {
        let decisions = self.tracker.observe(&self.observation(&e));
        self.publish(decisions, Some(e.frame.captured_at), emit);
        if let Some(text) = e.text.as_deref() {
            self.board.asr_text(&e.frame.stream_id, text);
            let part = e.embedding.get(self.visual_dim..).unwrap_or_default();
            let norm = dot(part, part).sqrt();
            if norm > 0.0 {
                self.speech.insert(e.frame.stream_id.clone(), part.iter().map(|x| x / norm).collect());
            }
        }
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
    fn publish(
        &self,
        decisions: Vec<Decision>,
        trigger: Option<SystemTime>,
        emit: &mut impl FnMut(DetectionEvent),
    ) {
        if decisions.is_empty() {
            return;
        }
        let searcher = self.searcher.read();
        let gallery = &searcher.gallery;
        for d in decisions {
            let row = gallery.row_of(&d.product_id);
            let product = row.map(|r| gallery.product(r));
            let mut event =
                DetectionEvent::from_decision(&d, product.map(|p| p.title.as_str()), &self.context);
            // The stream's latest speech goes out only when it is about this product: right after a
            // product change it is usually still the host's line about the previous one.
            let about = |r: usize| {
                let page_text = gallery.vector(r).get(self.visual_dim..).unwrap_or_default();
                self.speech.get(&d.stream_id).is_some_and(|s| dot(s, page_text) >= SPEECH_SUPPORT)
            };
            if event.asr_text.is_some() && !row.is_some_and(about) {
                event.asr_text = None;
            }
            let image = product.and_then(super::board::product_image_url);
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
