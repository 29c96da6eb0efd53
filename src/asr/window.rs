//! Per-stream transcript windows: a narrow handle written by the ASR workers and read by the encoder's
//! tagger (src/service builds both ends). A keyframe at `pts` is tagged with the cleaned text of the
//! utterances overlapping `[pts - window, pts]` of the same stream session.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::RwLock;

use super::Transcript;
use super::clean::clean;
use crate::messages::StreamKey;

/// Transcripts older than this behind a stream's newest one are forgotten.
const KEEP_MS: u64 = 120_000;
/// A keyframe also takes speech that started this shortly after it (the VAD pre-roll, clock jitter).
const LEAD_MS: u64 = 250;

#[derive(Clone, Default)]
pub struct Transcripts {
    inner: Arc<RwLock<HashMap<StreamKey, VecDeque<Transcript>>>>,
}

impl Transcripts {
    /// Adds a transcript (kept in start order; workers may finish out of order).
    pub fn push(&self, t: Transcript) {
        let mut map = self.inner.write();
        let q = map.entry(StreamKey { id: t.stream_id.clone(), generation: t.generation }).or_default();
        let at = q.iter().rposition(|o| o.start_ms <= t.start_ms).map_or(0, |i| i + 1);
        q.insert(at, t);
        let newest = q.iter().map(|t| t.end_ms).max().unwrap_or(0);
        while q.front().is_some_and(|o| o.end_ms + KEEP_MS < newest) {
            q.pop_front();
        }
    }

    pub fn remove(&self, stream: &StreamKey) {
        self.inner.write().remove(stream);
    }

    /// Cleaned speech heard in `[pts_ms - window_ms, pts_ms]` on `stream`; `None` when there is none.
    pub fn tag(&self, stream: &StreamKey, pts_ms: u64, window_ms: u64) -> Option<String> {
        let map = self.inner.read();
        let q = map.get(stream)?;
        let from = pts_ms.saturating_sub(window_ms);
        let text: Vec<&str> = q
            .iter()
            .filter(|t| t.end_ms > from && t.start_ms <= pts_ms + LEAD_MS)
            .map(|t| t.text.as_str())
            .collect();
        if text.is_empty() {
            return None;
        }
        clean(&text.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(start_ms: u64, end_ms: u64, text: &str) -> Transcript {
        Transcript {
            stream_id: "s".into(),
            generation: 0,
            start_ms,
            end_ms,
            text: text.into(),
            confidence: 0.9,
            mean_logprob: -0.1,
            truncated: false,
        }
    }

    #[test]
    fn tags_with_the_window_before_the_frame() {
        let w = Transcripts::default();
        w.push(t(20_000, 23_000, "and this is the kettle"));
        w.push(t(1_000, 3_000, "hello everyone"));
        w.push(t(12_000, 15_000, "um look look at this"));
        assert_eq!(w.tag(&"s".into(), 0, 10_000), None);
        assert_eq!(w.tag(&"s".into(), 4_000, 10_000).as_deref(), Some("hello everyone"));
        assert_eq!(w.tag(&"s".into(), 16_000, 10_000).as_deref(), Some("look at this"));
        assert_eq!(w.tag(&"s".into(), 24_000, 10_000).as_deref(), Some("look at this and this is the kettle"));
        assert_eq!(w.tag(&"s".into(), 24_000, 2_000).as_deref(), Some("and this is the kettle"));
        assert_eq!(w.tag(&"other".into(), 24_000, 10_000), None);
        // Another session of the same id hears nothing of this one.
        assert_eq!(w.tag(&StreamKey::new("s", 1), 24_000, 10_000), None);
        w.remove(&"s".into());
        assert_eq!(w.tag(&"s".into(), 24_000, 10_000), None);
    }

    #[test]
    fn filler_only_speech_is_no_tag() {
        let w = Transcripts::default();
        w.push(t(1_000, 2_000, "uh um"));
        assert_eq!(w.tag(&"s".into(), 2_500, 10_000), None);
    }

    #[test]
    fn old_transcripts_are_forgotten() {
        let w = Transcripts::default();
        w.push(t(0, 1_000, "old"));
        w.push(t(200_000, 201_000, "new"));
        assert_eq!(w.inner.read()[&StreamKey::from("s")].len(), 1);
    }
}
