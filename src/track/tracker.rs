//! All streams' tracking state behind one entry point.

use std::collections::HashMap;

use super::config::TrackConfig;
use super::decision::Decision;
use super::observation::Observation;
use super::stream::StreamState;
use crate::messages::StreamKey;

/// The decide stage for any number of streams. Not thread-safe by design: run it on one task that
/// receives observations in per-stream order (or one tracker per stream).
pub struct Tracker {
    cfg: TrackConfig,
    /// Per stream session: a stream added again under the same id starts from nothing.
    streams: HashMap<StreamKey, StreamState>,
}

impl Tracker {
    /// `cfg` should have passed [`TrackConfig::validate`].
    pub fn new(cfg: TrackConfig) -> Self {
        Tracker { cfg, streams: HashMap::new() }
    }

    pub fn config(&self) -> &TrackConfig {
        &self.cfg
    }

    /// Feeds one keyframe's matches; returns the events it causes, in emission order.
    pub fn observe(&mut self, obs: &Observation) -> Vec<Decision> {
        let cfg = &self.cfg;
        let key = StreamKey { id: obs.stream_id.clone(), generation: obs.generation };
        self.streams.entry(key).or_insert_with_key(|k| StreamState::new(k.clone())).observe(cfg, obs)
    }

    /// The stream ended: every product still on screen gets `disappeared`, and its state is dropped.
    pub fn end_stream(&mut self, stream: &StreamKey) -> Vec<Decision> {
        match self.streams.remove(stream) {
            Some(mut s) => s.finish(&self.cfg),
            None => Vec::new(),
        }
    }

    /// Shutdown: [`Tracker::end_stream`] for every stream, streams in sorted order.
    pub fn finish(&mut self) -> Vec<Decision> {
        let mut keys: Vec<StreamKey> = self.streams.keys().cloned().collect();
        keys.sort();
        keys.iter().flat_map(|k| self.end_stream(k)).collect()
    }

    /// Products currently on screen in a stream (sorted), for status and tests.
    pub fn on_screen(&self, stream: &StreamKey) -> Vec<&str> {
        self.streams.get(stream).map(|s| s.on_screen()).unwrap_or_default()
    }
}
