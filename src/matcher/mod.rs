//! The match stage: each embedding is searched in the gallery, the top-k hits become an [`Observation`]
//! for the tracker (or none, when the frame looks like the empty set: [`background`]), and the tracker's
//! decisions become events. A stream's `End` closes its open episodes; the end of the input closes all.

pub mod background;
mod metrics;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use crossbeam_channel::Receiver;
use parking_lot::RwLock;

pub use background::{Background, BackgroundError};
pub use metrics::MatchMetrics;

use crate::encode::Embedded;
use crate::encode::batcher::EncodedMsg;
use crate::event::{DetectionEvent, EventContext};
use crate::gallery::Searcher;
use crate::messages::{Flow, StreamKey};
use crate::track::{Decision, Match, Observation, RegionMatches, Tracker};

/// Cosine between a stream's speech tag and a product's page text from which the speech counts as being
/// about that product, so the event carries it. On the demo, a line naming a product scores about 0.6
/// against its page and at most 0.06 against the others.
const SPEECH_SUPPORT: f32 = 0.3;

/// The gallery the matcher searches. A narrow handle shared with gallery administration
/// (`crate::gallery::admin`), which swaps it on reload and edits it on product add/remove; the matcher
/// only reads it, one keyframe at a time.
pub type SharedSearcher = Arc<RwLock<Searcher>>;

#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// `gallery.background_margin`.
    pub background_margin: f32,
    /// Length of the visual part of `[visual | text]` embeddings: abstention looks at the image only.
    pub visual_dim: usize,
    /// `gallery.top_k`.
    pub top_k: usize,
}

/// What the stage sends on, in order.
#[derive(Debug, Clone)]
pub enum Output {
    /// A detection event, with the picture the dashboard shows for its product.
    Event { event: Box<DetectionEvent>, image_url: Option<String> },
    /// The speech a keyframe was tagged with (the dashboard's "heard" line).
    Heard { stream: StreamKey, text: String },
    /// Keyframe `seq` of the stream has been matched (after its events, if any).
    Matched { stream: StreamKey, seq: u64 },
    /// The stream's end: its episodes are closed (their events came before this).
    Ended { stream: StreamKey },
}

pub struct Matcher {
    pub settings: Settings,
    pub searcher: SharedSearcher,
    pub background: Background,
    pub tracker: Tracker,
    pub context: EventContext,
    pub metrics: Arc<MatchMetrics>,
    /// Per stream: the unit text part of the latest keyframe that had a speech tag.
    speech: HashMap<StreamKey, Vec<f32>>,
}

impl Matcher {
    pub fn new(
        settings: Settings,
        searcher: SharedSearcher,
        background: Background,
        tracker: Tracker,
        context: EventContext,
    ) -> Self {
        Matcher {
            settings,
            searcher,
            background,
            tracker,
            context,
            metrics: Arc::default(),
            speech: HashMap::new(),
        }
    }

    /// Runs until the encoder's output closes, then ends every open episode.
    pub fn run(mut self, input: Receiver<EncodedMsg>, mut out: impl FnMut(Output)) -> Result<(), String> {
        for msg in input {
            match msg {
                Flow::Item(e) => self.match_frame(e, &mut out),
                Flow::End(key) => {
                    let decisions = self.tracker.end_stream(&key);
                    self.publish(decisions, None, &mut out);
                    self.speech.remove(&key);
                    out(Output::Ended { stream: key });
                }
            }
        }
        let decisions = self.tracker.finish();
        self.publish(decisions, None, &mut out);
        Ok(())
    }

    fn match_frame(&mut self, e: Embedded, out: &mut impl FnMut(Output)) {
        let decisions = self.tracker.observe(&self.observation(&e));
        self.publish(decisions, Some(e.frame.captured_at), out);
        let key = e.frame.key();
        out(Output::Matched { stream: key.clone(), seq: e.frame.seq });
        if let Some(text) = e.text {
            let part = e.embedding.get(self.settings.visual_dim..).unwrap_or_default();
            let norm = dot(part, part).sqrt();
            if norm > 0.0 {
                self.speech.insert(key.clone(), part.iter().map(|x| x / norm).collect());
            }
            out(Output::Heard { stream: key, text });
        }
    }

    fn observation(&self, e: &Embedded) -> Observation {
        let searcher = self.searcher.read();
        let started = Instant::now();
        let matches = self.view_matches(&searcher, e, &e.embedding, None);
        let regions = e
            .regions
            .iter()
            .map(|r| RegionMatches { bbox: r.bbox, matches: self.view_matches(&searcher, e, &r.vector, Some(r.bbox)) })
            .collect();
        self.metrics.search_seconds.observe(started.elapsed().as_secs_f64());
        Observation {
            stream_id: e.frame.stream_id.clone(),
            generation: e.frame.generation,
            seq: e.frame.seq,
            pts_ms: e.frame.pts_ms,
            captured_at: e.frame.captured_at,
            matches,
            regions,
            asr_text: e.text.clone(),
        }
    }

    /// The top-k of one view of a keyframe (the whole frame, or a region's crop), or none when the view
    /// looks like the empty set.
    fn view_matches(&self, searcher: &Searcher, e: &Embedded, query: &[f32], bbox: Option<[f32; 4]>) -> Vec<Match> {
        let gallery = &searcher.gallery;
        let hits = searcher.search(query, self.settings.top_k).into_iter().next().unwrap_or_default();
        // Abstain when the view looks at least as much like an empty set as like the best product. This
        // is decided on the image alone: background references carry no text, so with speech fused in,
        // the text part would lift every product over them and a product that is only named, not shown,
        // would be detected. Speech re-ranks products the camera shows; it does not make them appear.
        let v = self.settings.visual_dim.min(query.len());
        let visual = |row: usize| dot(&query[..v], gallery.vector(row));
        let best = hits.iter().map(|h| visual(h.row)).fold(f32::NEG_INFINITY, f32::max);
        // What a threshold calibration needs to see (RUST_LOG=livesku::matcher=debug).
        tracing::debug!(stream = %e.frame.stream_id, seq = e.frame.seq, pts_ms = e.frame.pts_ms, region = ?bbox,
            top1 = hits.first().map_or("", |h| gallery.product(h.row).product_id.as_str()),
            score1 = hits.first().map_or(0.0, |h| h.score), score2 = hits.get(1).map_or(0.0, |h| h.score),
            visual_best = best, background = self.background.score(&query[..v]), "keyframe matched");
        if self.background.abstains(best, &query[..v], self.settings.background_margin) {
            if bbox.is_none() {
                self.metrics.abstained.inc();
            }
            return Vec::new();
        }
        hits.iter().map(|h| Match { product_id: gallery.product(h.row).product_id.clone(), score: h.score }).collect()
    }

    /// `trigger`: capture time of the keyframe that led to these decisions (none when a stream's end did).
    fn publish(&self, decisions: Vec<Decision>, trigger: Option<SystemTime>, out: &mut impl FnMut(Output)) {
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
            let key = StreamKey { id: d.stream_id.clone(), generation: d.generation };
            let about = |r: usize| {
                let page_text = gallery.vector(r).get(self.settings.visual_dim..).unwrap_or_default();
                self.speech.get(&key).is_some_and(|s| dot(s, page_text) >= SPEECH_SUPPORT)
            };
            if event.asr_text.is_some() && !row.is_some_and(about) {
                event.asr_text = None;
            }
            self.metrics.event(d.kind);
            if let Some(t) = trigger {
                self.metrics.observe_e2e(t);
            }
            let image_url = product.and_then(crate::gallery::admin::product_image_url);
            out(Output::Event { event: Box::new(event), image_url });
        }
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
