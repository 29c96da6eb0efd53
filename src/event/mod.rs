//! Detection events as published: JSON, schema `schemas/detection-event.v1.json` ([`SCHEMA`]).
//!
//! `event_id` is deterministic: a hash of stream id, product id, episode start PTS, event type and update
//! number, so a replay of the same stream yields the same ids and consumers can dedupe on it.
//! `episode_id` (stream, product, episode start) groups an episode's appeared/updated/disappeared events.

mod id;
mod model;

pub use id::{episode_id, event_id, restart_end_id};
pub use model::{DetectionEvent, EventContext, EvidenceJson, KeyframeRef, RunnerUp, Seen, utc_now};

/// Value of `schema_version` and of the Kafka `schema-version` header.
pub const SCHEMA_VERSION: u32 = 1;
/// The JSON Schema (draft 2020-12) every event satisfies.
pub const SCHEMA: &str = include_str!("../../schemas/detection-event.v1.json");
/// Kafka `content-type` header value.
pub const CONTENT_TYPE: &str = "application/json";

#[cfg(test)]
mod tests;
