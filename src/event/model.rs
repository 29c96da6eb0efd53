//! The event document and its construction from a tracking [`Decision`].

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::{SCHEMA_VERSION, episode_id, event_id};
use crate::track::{Decision, SeenAt};

/// Constant per-process facts stamped on every event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventContext {
    /// Encoder model version (e.g. the manifest's name@version).
    pub model_version: String,
    /// Version of the gallery searched.
    pub gallery_version: String,
    /// Producing host/instance.
    pub worker: String,
}

impl EventContext {
    /// `HOST/PID`: hostname from the kernel (or $HOSTNAME), process id to tell instances apart.
    pub fn default_worker() -> String {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "unknown-host".into());
        format!("{host}/{}", std::process::id())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunnerUp {
    pub product_id: String,
    pub score: f32,
}

/// A point on the stream clock and the wall clock.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Seen {
    pub seq: u64,
    pub pts_ms: u64,
    /// UTC, RFC 3339 with milliseconds.
    pub utc: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyframeRef {
    pub seq: u64,
    pub pts_ms: u64,
    pub score: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvidenceJson {
    /// N: keyframes in the window.
    pub window: u32,
    /// K: strong hits in the window.
    pub hits: u32,
    pub keyframes: Vec<KeyframeRef>,
}

/// One published detection event (see `schemas/detection-event.v1.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DetectionEvent {
    pub schema_version: u32,
    pub event_id: String,
    pub episode_id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub stream_id: String,
    pub product_id: String,
    pub title: Option<String>,
    pub score: f32,
    pub runner_up: Option<RunnerUp>,
    /// 0 for appeared/disappeared, n for the episode's n-th update.
    pub update_seq: u32,
    pub first_seen: Seen,
    pub last_seen: Seen,
    /// Normalised `[x0, y0, x1, y1]` of the view the product was last seen best in (events from before
    /// the field read as the whole frame).
    #[serde(default = "whole_frame")]
    pub region: [f32; 4],
    pub evidence: EvidenceJson,
    pub asr_text: Option<String>,
    pub model_version: String,
    pub gallery_version: String,
    pub worker: String,
    /// When this event was built (UTC); not part of the id, so replays keep their ids.
    pub emitted_at: String,
    /// Only on a `product.disappeared` whose disappearance was not seen: `"restart"` when a restarted
    /// livesku ends an episode that its killed predecessor left open (src/publish/durable.rs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<String>,
    /// Only on a `product.appeared` on a worker that took the stream over while the product was on screen:
    /// `"handover"` (src/cluster/handover.rs); `continues` then names the episode it continues.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub continues: Option<String>,
}

pub(crate) fn utc(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Now, as events write their times.
pub fn utc_now() -> String {
    utc(SystemTime::now())
}

fn seen(s: &SeenAt) -> Seen {
    Seen { seq: s.seq, pts_ms: s.pts_ms, utc: utc(s.captured_at) }
}

fn whole_frame() -> [f32; 4] {
    [0.0, 0.0, 1.0, 1.0]
}

/// Scores (and box corners) are rounded to 4 decimals: f32 noise in the JSON helps nobody.
fn round(x: f32) -> f32 {
    ((x as f64 * 1e4).round() / 1e4) as f32
}

impl DetectionEvent {
    /// Builds the event for a decision; `title` is the product's catalogue title when known.
    pub fn from_decision(d: &Decision, title: Option<&str>, ctx: &EventContext) -> Self {
        let kind = d.kind.as_str();
        DetectionEvent {
            schema_version: SCHEMA_VERSION,
            event_id: event_id(&d.stream_id, d.generation, &d.product_id, d.episode_start_pts_ms, kind, d.update_seq),
            episode_id: episode_id(&d.stream_id, d.generation, &d.product_id, d.episode_start_pts_ms),
            event_type: kind.to_string(),
            stream_id: d.stream_id.to_string(),
            product_id: d.product_id.clone(),
            title: title.map(str::to_string),
            score: round(d.score),
            runner_up: d
                .runner_up
                .as_ref()
                .map(|m| RunnerUp { product_id: m.product_id.clone(), score: round(m.score) }),
            update_seq: d.update_seq,
            first_seen: seen(&d.first_seen),
            last_seen: seen(&d.last_seen),
            region: d.region.map(round),
            evidence: EvidenceJson {
                window: d.evidence.window,
                hits: d.evidence.hits,
                keyframes: d
                    .evidence
                    .frames
                    .iter()
                    .map(|f| KeyframeRef { seq: f.seq, pts_ms: f.pts_ms, score: round(f.score) })
                    .collect(),
            },
            asr_text: d.asr_text.clone(),
            model_version: ctx.model_version.clone(),
            gallery_version: ctx.gallery_version.clone(),
            worker: ctx.worker.clone(),
            emitted_at: utc(SystemTime::now()),
            end_reason: None,
            start_reason: None,
            continues: None,
        }
    }

    /// The JSON payload (one line, no trailing newline).
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing plain structs of strings and numbers cannot fail; NaN scores would become null,
        // which the tracker never produces (it drops non-finite scores).
        serde_json::to_vec(self).unwrap_or_default()
    }
}
