//! The live view behind the moderator dashboard: per stream the latest keyframe, the products on screen
//! and the latest speech text, plus a ring of recent events. A narrow handle created by the service: each
//! stream's ingest writes its latest frame (preview tap), the matcher's output its events, speech and
//! progress (cheap, never blocks); the API reads snapshots and forwards [`Update`]s to browsers over SSE.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::broadcast;

use crate::event::DetectionEvent;
use crate::ingest::unix_ms;
use crate::messages::{Keyframe, StreamId};

/// Events kept for a dashboard that connects later.
const RECENT_EVENTS: usize = 200;
/// Keyframes/s is measured over this window.
const RATE_WINDOW: Duration = Duration::from_secs(10);
/// Updates buffered per SSE client; a slower client is told to resync from a snapshot.
const UPDATES_CAPACITY: usize = 1024;

/// A stream's latest keyframe; encoded to JPEG once, on the first request.
pub struct Frame {
    pub seq: u64,
    pub pts_ms: u64,
    pub captured_unix_ms: u64,
    image: image::RgbImage,
    jpeg: OnceLock<Vec<u8>>,
}

impl Frame {
    pub fn jpeg(&self) -> Result<&[u8], image::ImageError> {
        if let Some(j) = self.jpeg.get() {
            return Ok(j);
        }
        let mut out = Vec::with_capacity(16 * 1024);
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80).encode_image(&self.image)?;
        // Two racing requests may both encode; either result is the same picture.
        Ok(self.jpeg.get_or_init(|| out))
    }
}

/// A product on screen now.
#[derive(Debug, Clone, Serialize)]
pub struct OnScreen {
    pub product_id: String,
    pub title: Option<String>,
    pub score: f32,
    /// The product's thumbnail in the gallery (`/gallery/products/{id}/image`), when it has one.
    pub image_url: Option<String>,
    pub since_unix_ms: u64,
}

struct StreamView {
    /// When the stream was added (the rate's window starts no earlier).
    since: Instant,
    frame: Option<Arc<Frame>>,
    /// Arrival times of recent keyframes (rate estimate).
    recent: VecDeque<Instant>,
    on_screen: BTreeMap<String, OnScreen>,
    asr_text: Option<String>,
    /// Last keyframe the matcher has been through (`frame` is the latest out of the decoder).
    processed_seq: Option<u64>,
}

impl Default for StreamView {
    fn default() -> Self {
        StreamView {
            since: Instant::now(),
            frame: None,
            recent: VecDeque::new(),
            on_screen: BTreeMap::new(),
            asr_text: None,
            processed_seq: None,
        }
    }
}


/// One stream in a snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct StreamBoard {
    pub stream_id: String,
    pub latest_seq: Option<u64>,
    pub latest_unix_ms: Option<u64>,
    /// Last keyframe through the encoder and matcher.
    pub processed_seq: Option<u64>,
    pub keyframes_per_sec: f64,
    pub on_screen: Vec<OnScreen>,
    pub asr_text: Option<String>,
}

/// One of the board's recent events, with its product's picture.
#[derive(Debug, Clone, Serialize)]
pub struct RecentEvent {
    pub event: DetectionEvent,
    pub image_url: Option<String>,
}

/// What SSE clients receive (JSON, `type` says which).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Update {
    /// A new keyframe: fetch `/api/streams/{id}/frame.jpg?seq=N` when the tile is visible.
    Frame {
        stream_id: String,
        seq: u64,
        unix_ms: u64,
    },
    Event {
        event: Box<DetectionEvent>,
        image_url: Option<String>,
    },
    Asr {
        stream_id: String,
        text: String,
    },
    /// A stream was added or removed.
    Streams,
}

pub struct Board {
    streams: Mutex<HashMap<StreamId, StreamView>>,
    events: Mutex<VecDeque<(DetectionEvent, Option<String>)>>,
    updates: broadcast::Sender<Update>,
}

impl Default for Board {
    fn default() -> Self {
        Board {
            streams: Mutex::default(),
            events: Mutex::default(),
            updates: broadcast::channel(UPDATES_CAPACITY).0,
        }
    }
}

impl Board {
    pub fn subscribe(&self) -> broadcast::Receiver<Update> {
        self.updates.subscribe()
    }

    fn send(&self, u: Update) {
        // No subscriber is fine: nobody is watching.
        let _ = self.updates.send(u);
    }

    /// The camera now: the stream's latest keyframe out of the decoder (ingest's preview tap, before the
    /// encoder's queue, so the tile does not lag behind a busy encoder).
    pub fn frame(&self, frame: Keyframe) {
        let now = Instant::now();
        let f = Arc::new(Frame {
            seq: frame.seq,
            pts_ms: frame.pts_ms,
            captured_unix_ms: unix_ms(frame.captured_at),
            image: frame.image,
            jpeg: OnceLock::new(),
        });
        let update =
            Update::Frame { stream_id: frame.stream_id.to_string(), seq: f.seq, unix_ms: f.captured_unix_ms };
        {
            let mut streams = self.streams.lock();
            // A removed stream's last frames may still be on their way: they must not bring
            // its view back.
            let Some(view) = streams.get_mut(&frame.stream_id) else { return };
            view.frame = Some(f);
            view.recent.push_back(now);
            while view.recent.front().is_some_and(|t| now.duration_since(*t) > RATE_WINDOW) {
                view.recent.pop_front();
            }
        }
        self.send(update);
    }

    /// The matcher has been through keyframe `seq` of the stream.
    pub fn processed(&self, stream_id: &StreamId, seq: u64) {
        if let Some(view) = self.streams.lock().get_mut(stream_id) {
            view.processed_seq = Some(seq);
        }
    }

    pub fn asr_text(&self, stream_id: &StreamId, text: &str) {
        let mut streams = self.streams.lock();
        let Some(view) = streams.get_mut(stream_id) else { return };
        if view.asr_text.as_deref() == Some(text) {
            return;
        }
        view.asr_text = Some(text.to_string());
        drop(streams);
        self.send(Update::Asr { stream_id: stream_id.to_string(), text: text.to_string() });
    }

    pub fn event(&self, ev: &DetectionEvent, image_url: Option<String>) {
        if let Some(view) = self.streams.lock().get_mut(ev.stream_id.as_str()) {
            if ev.event_type == "product.disappeared" {
                view.on_screen.remove(&ev.product_id);
            } else {
                let since = view.on_screen.get(&ev.product_id).map(|p| p.since_unix_ms);
                view.on_screen.insert(
                    ev.product_id.clone(),
                    OnScreen {
                        product_id: ev.product_id.clone(),
                        title: ev.title.clone(),
                        score: ev.score,
                        image_url: image_url.clone(),
                        since_unix_ms: since.unwrap_or_else(|| unix_ms(SystemTime::now())),
                    },
                );
            }
        }
        let mut events = self.events.lock();
        if events.len() == RECENT_EVENTS {
            events.pop_front();
        }
        events.push_back((ev.clone(), image_url.clone()));
        drop(events);
        self.send(Update::Event { event: Box::new(ev.clone()), image_url });
    }

    /// Views exist only for added streams (see [`Board::frame`]).
    pub fn add_stream(&self, id: &StreamId) {
        self.streams.lock().entry(id.clone()).or_default();
        self.send(Update::Streams);
    }

    /// Forgets a removed stream (its frame, products and text).
    pub fn remove_stream(&self, id: &str) {
        self.streams.lock().remove(id);
        self.send(Update::Streams);
    }

    pub fn latest_frame(&self, id: &str) -> Option<Arc<Frame>> {
        self.streams.lock().get(id).and_then(|v| v.frame.clone())
    }

    pub fn stream(&self, id: &str) -> Option<StreamBoard> {
        self.streams.lock().get(id).map(|v| view_snapshot(id, v))
    }

    pub fn recent_events(&self) -> Vec<RecentEvent> {
        self.events.lock().iter().map(|(e, img)| RecentEvent { event: e.clone(), image_url: img.clone() }).collect()
    }

    /// Number of streams with a view (a removed stream has none).
    pub fn len(&self) -> usize {
        self.streams.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn view_snapshot(id: &str, v: &StreamView) -> StreamBoard {
    let now = Instant::now();
    let n = v.recent.iter().filter(|t| now.duration_since(**t) <= RATE_WINDOW).count();
    // Over the window, or the time since the stream was added when that is shorter.
    let span = now.duration_since(v.since).clamp(Duration::from_secs(1), RATE_WINDOW);
    StreamBoard {
        stream_id: id.to_string(),
        latest_seq: v.frame.as_ref().map(|f| f.seq),
        latest_unix_ms: v.frame.as_ref().map(|f| f.captured_unix_ms),
        processed_seq: v.processed_seq,
        keyframes_per_sec: n as f64 / span.as_secs_f64(),
        on_screen: v.on_screen.values().cloned().collect(),
        asr_text: v.asr_text.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::event::EventContext;
    use crate::track::{Match, Observation, TrackConfig, Tracker};

    fn keyframe(stream: &str, seq: u64) -> Keyframe {
        Keyframe {
            stream_id: stream.into(),
            generation: 0,
            seq,
            pts_ms: seq * 1000,
            captured_at: SystemTime::now(),
            image: image::RgbImage::new(2, 2),
            phash: 0,
        }
    }

    /// `product.appeared` of "p" on `stream`, then its `product.disappeared`.
    fn episode(stream: &str) -> (DetectionEvent, DetectionEvent) {
        let ctx = EventContext { model_version: "m".into(), gallery_version: "g".into(), worker: "w".into() };
        let mut t = Tracker::new(TrackConfig::default());
        let mut decisions = Vec::new();
        for seq in 0..4 {
            decisions.extend(t.observe(&Observation {
                stream_id: stream.into(),
                generation: 0,
                seq,
                pts_ms: seq * 1000,
                captured_at: SystemTime::UNIX_EPOCH + Duration::from_secs(seq),
                matches: vec![Match::new("p", 0.9), Match::new("q", 0.3)],
                regions: Vec::new(),
                asr_text: None,
            }));
        }
        decisions.extend(t.finish());
        let mut ev = decisions.iter().map(|d| DetectionEvent::from_decision(d, Some("P"), &ctx));
        (ev.next().unwrap(), ev.next_back().unwrap())
    }

    #[test]
    fn views_follow_frames_events_and_progress_of_added_streams_only() {
        let board = Board::default();
        let mut updates = board.subscribe();
        board.add_stream(&"s".into());
        board.frame(keyframe("s", 3));
        board.processed(&"s".into(), 2);
        board.asr_text(&"s".into(), "look at this");
        let (on, off) = episode("s");
        board.event(&on, Some("/img".into()));
        let view = board.stream("s").unwrap();
        assert_eq!((view.latest_seq, view.processed_seq), (Some(3), Some(2)));
        assert_eq!(view.asr_text.as_deref(), Some("look at this"));
        assert_eq!(view.on_screen.len(), 1);
        assert_eq!(view.on_screen[0].image_url.as_deref(), Some("/img"));
        assert!(board.latest_frame("s").unwrap().jpeg().unwrap().starts_with(&[0xFF, 0xD8]));
        board.event(&off, None);
        assert!(board.stream("s").unwrap().on_screen.is_empty());
        assert_eq!(board.recent_events().len(), 2);
        // Subscribers got every change, in order.
        let kinds: Vec<&str> = std::iter::from_fn(|| updates.try_recv().ok())
            .map(|u| match u {
                Update::Streams => "streams",
                Update::Frame { .. } => "frame",
                Update::Asr { .. } => "asr",
                Update::Event { .. } => "event",
            })
            .collect();
        assert_eq!(kinds, ["streams", "frame", "asr", "event", "event"]);

        // A removed stream's late frames and events do not bring its view back.
        board.remove_stream("s");
        board.frame(keyframe("s", 4));
        board.processed(&"s".into(), 4);
        board.event(&on, None);
        assert!(board.stream("s").is_none() && board.is_empty());
        // Frames of streams never added are ignored too.
        board.frame(keyframe("other", 0));
        assert!(board.latest_frame("other").is_none());
    }
}
