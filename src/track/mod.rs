//! Decide stage: turns per-keyframe top-k gallery matches into product episodes with hysteresis.
//!
//! Per stream and product, evidence is kept over a sliding window of the last `track.window` sampled
//! keyframes. A product turns **on** after `track.min_hits` strong hits in the window (top-1, score >=
//! `track.enter_threshold`, margin over the runner-up >= `track.min_margin`) and turns **off** when it has
//! not been *seen* (anywhere in the top-k, score >= `track.exit_threshold`) for `track.off_after_keyframes`
//! keyframes, or for `track.off_after_secs` of stream time (with at least two missed keyframes, so one
//! keyframe after a long de-duplicated static shot cannot end an episode). Entering is strict and staying is
//! lenient, so single noisy frames never make an event and a product on screen never flaps.
//!
//! A keyframe is one or more *views*: the whole frame and the salient regions the encoder cropped
//! (`Observation::regions`). Each view's top-1 can be a strong hit, so two products side by side are both
//! found; a product's score in a keyframe is its best over the views, and decisions carry the box of the
//! view it was last seen best in.
//!
//! Usage: one [`Tracker`] for all streams; call [`Tracker::observe`] per keyframe, [`Tracker::end_stream`]
//! when a stream ends and [`Tracker::finish`] at shutdown. Each returns [`Decision`]s in emission order
//! (within one keyframe: disappearances, then appearances, then updates, each sorted by product id).

mod config;
mod decision;
mod observation;
mod stream;
mod tracker;

pub use config::TrackConfig;
pub use decision::{Decision, DecisionKind, Evidence, EvidenceFrame, SeenAt};
pub use observation::{Match, Observation, RegionMatches};
pub use tracker::Tracker;

#[cfg(test)]
mod tests;
