//! Cheap keyframe sampling: a per-stream rate limit (applied before decoding) and a perceptual-hash
//! near-duplicate filter (applied after scaling), so static shots don't cost the encoder every keyframe.

mod dedup;
mod phash;
mod rate;

pub use dedup::NearDuplicateFilter;
pub use phash::{hamming, phash};
pub use rate::RateLimiter;
