//! Per-stream state: the keyframe window and each product's on/off state.

use std::collections::{BTreeMap, VecDeque};
use std::time::SystemTime;

use super::config::TrackConfig;
use super::decision::{Decision, DecisionKind, Evidence, EvidenceFrame, SeenAt};
use super::observation::{Match, Observation, normalize};
use crate::messages::StreamKey;

const WHOLE_FRAME: [f32; 4] = [0.0, 0.0, 1.0, 1.0];

/// One view of a keyframe (the whole frame or a salient region) with normalized matches (best first,
/// one per product).
struct View {
    bbox: [f32; 4],
    matches: Vec<Match>,
}

impl View {
    fn score_of(&self, product: &str) -> Option<f32> {
        self.matches.iter().find(|m| m.product_id == product).map(|m| m.score)
    }

    /// The top-1 product if it meets the entry criteria. With a single match the margin is its score.
    fn strong_hit(&self, cfg: &TrackConfig) -> Option<&str> {
        let top = self.matches.first()?;
        let margin = top.score - self.matches.get(1).map_or(0.0, |m| m.score);
        (top.score >= cfg.enter() && margin >= cfg.margin()).then_some(top.product_id.as_str())
    }
}

/// One window keyframe: its views, the whole frame first.
struct Frame {
    seq: u64,
    pts_ms: u64,
    captured_at: SystemTime,
    views: Vec<View>,
}

impl Frame {
    fn at(&self) -> SeenAt {
        SeenAt { seq: self.seq, pts_ms: self.pts_ms, captured_at: self.captured_at }
    }

    /// The view the product scores best in, with that score.
    fn best_view(&self, product: &str) -> Option<(&View, f32)> {
        self.views
            .iter()
            .filter_map(|v| v.score_of(product).map(|s| (v, s)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
    }

    fn score_of(&self, product: &str) -> Option<f32> {
        self.best_view(product).map(|(_, s)| s)
    }

    /// Products that are a strong hit in some view, in view order, each once.
    fn strong_hits(&self, cfg: &TrackConfig) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for id in self.views.iter().filter_map(|v| v.strong_hit(cfg)) {
            if !out.contains(&id) {
                out.push(id);
            }
        }
        out
    }

    fn is_strong_hit(&self, cfg: &TrackConfig, product: &str) -> bool {
        self.views.iter().any(|v| v.strong_hit(cfg) == Some(product))
    }

    /// Best other product in the view the product was seen best in.
    fn runner_up_for(&self, product: &str) -> Option<Match> {
        let (view, _) = self.best_view(product)?;
        view.matches.iter().find(|m| m.product_id != product).cloned()
    }

    /// Where the product is: the smallest view that has it as top-1 (a region rather than the whole
    /// frame that also shows it), else the view it scores best in.
    fn region_of(&self, product: &str) -> Option<[f32; 4]> {
        let area = |b: &[f32; 4]| (b[2] - b[0]) * (b[3] - b[1]);
        self.views
            .iter()
            .filter(|v| v.matches.first().is_some_and(|m| m.product_id == product))
            .map(|v| v.bbox)
            .min_by(|a, b| area(a).total_cmp(&area(b)))
            .or_else(|| self.best_view(product).map(|(v, _)| v.bbox))
    }
}

struct Episode {
    start_pts_ms: u64,
    first_seen: SeenAt,
    last_seen: SeenAt,
    runner_up: Option<Match>,
    /// Box of the view it was last seen best in.
    region: [f32; 4],
    /// Consecutive keyframes without the product.
    misses: u32,
    updates: u32,
    last_event_pts_ms: u64,
    last_event_score: f32,
    last_event_hits: u32,
}

enum ProductState {
    On(Episode),
    /// Recently ended: window frames up to this seq no longer count, so leftover hits of the ended
    /// episode cannot turn the product back on with a single new frame.
    Off {
        cutoff_seq: u64,
    },
}

pub(crate) struct StreamState {
    key: StreamKey,
    window: VecDeque<Frame>,
    products: BTreeMap<String, ProductState>,
    asr_text: Option<String>,
}

impl StreamState {
    pub(crate) fn new(key: StreamKey) -> Self {
        StreamState { key, window: VecDeque::new(), products: BTreeMap::new(), asr_text: None }
    }

    pub(crate) fn observe(&mut self, cfg: &TrackConfig, obs: &Observation) -> Vec<Decision> {
        if obs.asr_text.is_some() {
            self.asr_text.clone_from(&obs.asr_text);
        }
        let whole = View { bbox: WHOLE_FRAME, matches: normalize(&obs.matches) };
        let regions = obs.regions.iter().map(|r| View { bbox: r.bbox, matches: normalize(&r.matches) });
        let frame = Frame {
            seq: obs.seq,
            pts_ms: obs.pts_ms,
            captured_at: obs.captured_at,
            views: std::iter::once(whole).chain(regions).collect(),
        };
        self.window.push_back(frame);
        while self.window.len() > cfg.window as usize {
            self.window.pop_front();
        }
        let mut gone = Vec::new();
        let mut updated = Vec::new();
        let frame = self.window.back().expect("just pushed");

        // Products already on: seen (lenient) or missed.
        for (id, state) in self.products.iter_mut() {
            let ProductState::On(ep) = state else { continue };
            if frame.score_of(id).is_some_and(|s| s >= cfg.exit()) {
                ep.misses = 0;
                ep.last_seen = frame.at();
                ep.runner_up = frame.runner_up_for(id);
                ep.region = frame.region_of(id).unwrap_or(WHOLE_FRAME);
                updated.push(id.clone());
            } else {
                ep.misses += 1;
                let unseen_ms = frame.pts_ms.saturating_sub(ep.last_seen.pts_ms);
                let by_time = ep.misses >= cfg.off_after_keyframes.min(2)
                    && unseen_ms as u128 >= cfg.off_after().as_millis();
                if ep.misses >= cfg.off_after_keyframes || by_time {
                    gone.push(id.clone());
                }
            }
        }
        let mut out = Vec::new();
        for id in gone {
            out.push(self.end_episode(cfg, &id));
        }

        // A product not on yet: a strong top-1 of a view of this frame, if the window holds enough strong
        // hits.
        let mut strong: Vec<String> =
            self.window.back().map(|f| f.strong_hits(cfg).into_iter().map(str::to_string).collect()).unwrap_or_default();
        strong.sort();
        for id in strong {
            let cutoff = match self.products.get(&id) {
                Some(ProductState::On(_)) => None,
                Some(ProductState::Off { cutoff_seq }) => Some(Some(*cutoff_seq)),
                None => Some(None),
            };
            if let Some(cutoff) = cutoff
                && let Some(d) = self.try_appear(cfg, &id, cutoff)
            {
                out.push(d);
            }
        }

        for id in updated {
            if let Some(d) = self.maybe_update(cfg, &id) {
                out.push(d);
            }
        }
        self.prune_off();
        out
    }

    /// `disappeared` for every product on screen (stream ended or shutdown).
    pub(crate) fn finish(&mut self, cfg: &TrackConfig) -> Vec<Decision> {
        let on: Vec<String> = self
            .products
            .iter()
            .filter(|(_, s)| matches!(s, ProductState::On(_)))
            .map(|(k, _)| k.clone())
            .collect();
        on.iter().map(|id| self.end_episode(cfg, id)).collect()
    }

    pub(crate) fn on_screen(&self) -> Vec<&str> {
        self.products
            .iter()
            .filter(|(_, s)| matches!(s, ProductState::On(_)))
            .map(|(k, _)| k.as_str())
            .collect()
    }

    fn frames_after(&self, cutoff: Option<u64>) -> impl Iterator<Item = &Frame> {
        self.window.iter().filter(move |f| cutoff.is_none_or(|c| f.seq > c))
    }

    fn try_appear(&mut self, cfg: &TrackConfig, id: &str, cutoff: Option<u64>) -> Option<Decision> {
        let hits: Vec<&Frame> = self.frames_after(cutoff).filter(|f| f.is_strong_hit(cfg, id)).collect();
        if (hits.len() as u32) < cfg.min_hits {
            return None;
        }
        let first = hits[0].at();
        let last = self.window.back()?;
        let ep = Episode {
            start_pts_ms: first.pts_ms,
            first_seen: first,
            last_seen: last.at(),
            runner_up: last.runner_up_for(id),
            region: last.region_of(id).unwrap_or(WHOLE_FRAME),
            misses: 0,
            updates: 0,
            last_event_pts_ms: last.pts_ms,
            last_event_score: 0.0,
            last_event_hits: 0,
        };
        self.products.insert(id.to_string(), ProductState::On(ep));
        let d = self.decision(cfg, id, DecisionKind::Appeared)?;
        if let Some(ProductState::On(ep)) = self.products.get_mut(id) {
            ep.last_event_score = d.score;
            ep.last_event_hits = d.evidence.hits;
        }
        Some(d)
    }

    fn maybe_update(&mut self, cfg: &TrackConfig, id: &str) -> Option<Decision> {
        let Some(ProductState::On(ep)) = self.products.get(id) else { return None };
        let now = self.window.back()?.pts_ms;
        if (now.saturating_sub(ep.last_event_pts_ms) as u128) < cfg.update_interval().as_millis() {
            return None;
        }
        let (score, hits) = self.score_and_hits(cfg, id, ep);
        let moved = (score - ep.last_event_score).abs() >= cfg.update_min_score_delta
            || hits.abs_diff(ep.last_event_hits) >= cfg.update_min_hits_delta;
        if !moved {
            return None;
        }
        if let Some(ProductState::On(ep)) = self.products.get_mut(id) {
            ep.updates += 1;
            ep.last_event_pts_ms = now;
            ep.last_event_score = score;
            ep.last_event_hits = hits;
        }
        self.decision(cfg, id, DecisionKind::Updated)
    }

    fn end_episode(&mut self, cfg: &TrackConfig, id: &str) -> Decision {
        let d = self.decision(cfg, id, DecisionKind::Disappeared);
        let cutoff_seq = self.window.back().map_or(0, |f| f.seq);
        self.products.insert(id.to_string(), ProductState::Off { cutoff_seq });
        d.expect("end_episode is only called for products that are on")
    }

    /// Mean score over this episode's supporting window frames, and strong hits among them.
    fn score_and_hits(&self, cfg: &TrackConfig, id: &str, ep: &Episode) -> (f32, u32) {
        let frames = self.evidence_frames(cfg, id, ep);
        let score = if frames.is_empty() {
            0.0
        } else {
            frames.iter().map(|f| f.score).sum::<f32>() / frames.len() as f32
        };
        let hits = self
            .window
            .iter()
            .filter(|f| f.seq >= ep.first_seen.seq && f.is_strong_hit(cfg, id))
            .count() as u32;
        (score, hits)
    }

    fn evidence_frames(&self, cfg: &TrackConfig, id: &str, ep: &Episode) -> Vec<EvidenceFrame> {
        self.window
            .iter()
            .filter(|f| f.seq >= ep.first_seen.seq)
            .filter_map(|f| {
                let score = f.score_of(id).filter(|s| *s >= cfg.exit())?;
                Some(EvidenceFrame { seq: f.seq, pts_ms: f.pts_ms, score })
            })
            .collect()
    }

    fn decision(&self, cfg: &TrackConfig, id: &str, kind: DecisionKind) -> Option<Decision> {
        let Some(ProductState::On(ep)) = self.products.get(id) else { return None };
        let frames = self.evidence_frames(cfg, id, ep);
        let (mut score, hits) = self.score_and_hits(cfg, id, ep);
        if frames.is_empty() {
            // Long gone from the window (disappearing by time): report the last known level.
            score = ep.last_event_score;
        }
        Some(Decision {
            kind,
            stream_id: self.key.id.clone(),
            generation: self.key.generation,
            product_id: id.to_string(),
            episode_start_pts_ms: ep.start_pts_ms,
            update_seq: if kind == DecisionKind::Updated { ep.updates } else { 0 },
            score,
            runner_up: ep.runner_up.clone(),
            first_seen: ep.first_seen,
            last_seen: ep.last_seen,
            evidence: Evidence { window: cfg.window, hits, frames },
            asr_text: self.asr_text.clone(),
            region: ep.region,
        })
    }

    /// Forgets `Off` markers whose cutoff has left the window (keeps memory bounded per stream).
    fn prune_off(&mut self) {
        let oldest = self.window.front().map_or(0, |f| f.seq);
        self.products.retain(|_, s| match s {
            ProductState::On(_) => true,
            ProductState::Off { cutoff_seq } => *cutoff_seq >= oldest,
        });
    }
}
