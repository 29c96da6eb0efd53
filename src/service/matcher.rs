//! Match stage: embeddings are searched in the gallery, the top-k hits become an [`Observation`] for the
//! tracker, and the tracker's decisions become events.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, select};

use super::background::Background;
use crate::encode::Embedded;
use crate::event::{DetectionEvent, EventContext};
use crate::gallery::Searcher;
use crate::messages::{StatusChange, StreamId, StreamState};
use crate::track::{Decision, Match, Observation, Tracker};

/// How long after a stream ended to wait for its last frames to leave the encoder before closing its
/// open episodes (status changes and frames travel on different channels).
const END_GRACE: Duration = Duration::from_secs(3);

pub struct Matcher {
    pub searcher: Searcher,
    pub background: Background,
    pub background_margin: f32,
    pub tracker: Tracker,
    pub top_k: usize,
    pub context: EventContext,
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
                        self.publish(decisions, &mut emit);
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
                self.publish(decisions, &mut emit);
            }
        }
        let decisions = self.tracker.finish();
        self.publish(decisions, &mut emit);
    }

    fn observation(&self, e: &Embedded) -> Observation {
        let gallery = &self.searcher.gallery;
        let hits = self.searcher.search(&e.embedding, self.top_k).into_iter().next().unwrap_or_default();
        // Abstain when the frame looks at least as much like an empty set as like the best product.
        let best = hits.first().map_or(f32::NEG_INFINITY, |h| h.score);
        let matches = if best < self.background.score(&e.embedding) + self.background_margin {
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

    fn publish(&self, decisions: Vec<Decision>, emit: &mut impl FnMut(DetectionEvent)) {
        let gallery = &self.searcher.gallery;
        for d in decisions {
            let title = gallery.row_of(&d.product_id).map(|r| gallery.product(r).title.as_str());
            emit(DetectionEvent::from_decision(&d, title, &self.context));
        }
    }
}
