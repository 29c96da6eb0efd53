//! Deterministic ids: truncated SHA-256 over NUL-separated fields, as 32 hex characters.

use sha2::{Digest, Sha256};

fn digest(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
        h.update([0u8]);
    }
    hex::encode(&h.finalize()[..16])
}

/// The stream part of an id: a stream added again under the same id (generation > 0) restarts its clock at
/// 0, so its episodes must not collide with the first session's. Generation 0 adds nothing, which keeps
/// the ids of a first session as they always were.
fn stream_part(stream_id: &str, generation: u64) -> String {
    match generation {
        0 => stream_id.to_string(),
        g => format!("{stream_id}\u{0}gen{g}"),
    }
}

/// Identifies one on-screen episode of a product in a stream session.
pub fn episode_id(stream_id: &str, generation: u64, product_id: &str, episode_start_pts_ms: u64) -> String {
    digest(&[
        b"livesku.episode.v1",
        stream_part(stream_id, generation).as_bytes(),
        product_id.as_bytes(),
        &episode_start_pts_ms.to_be_bytes(),
    ])
}

/// Identifies one event: same episode, type and update number = same id.
pub fn event_id(
    stream_id: &str,
    generation: u64,
    product_id: &str,
    episode_start_pts_ms: u64,
    event_type: &str,
    update_seq: u32,
) -> String {
    digest(&[
        b"livesku.event.v1",
        stream_part(stream_id, generation).as_bytes(),
        product_id.as_bytes(),
        &episode_start_pts_ms.to_be_bytes(),
        event_type.as_bytes(),
        &update_seq.to_be_bytes(),
    ])
}

/// The id of the `product.disappeared` that a restart emits for an episode a killed run left open (its
/// regular end, which needs the tracker's episode start, was never emitted).
pub fn restart_end_id(episode_id: &str) -> String {
    digest(&[b"livesku.event.v1.restart-end", episode_id.as_bytes()])
}
