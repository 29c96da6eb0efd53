//! Routes keyframes from the shared ingest channel into the encoder's per-stream queues (the batcher
//! serves them round-robin, so a busy stream cannot starve a quiet one). A stream's `End` marker drops its
//! queue: the batcher serves what is left in it and then forgets the stream.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crossbeam_channel::{Receiver, TrySendError};

use crate::encode::{Batcher, EncodeRequest, StreamSender};
use crate::messages::{Keyframe, VideoMsg};

/// Runs until every ingest sender is gone, then closes the queues and waits for the encoder to drain.
/// A live stream's full queue drops the frame (counted in `dropped`): the encoder is the bottleneck and
/// old frames are worth less than new ones. Files (`seq`-complete evaluation input) wait instead.
/// `tag` gives the (cleaned) speech heard on a stream before a keyframe's pts, fused by the text tower.
/// `seen` gets every keyframe before it is queued (the dashboard shows what the camera shows now, even
/// when the encoder is behind).
pub fn run(
    keyframes: Receiver<VideoMsg>,
    batcher: Batcher,
    dropped: Arc<AtomicU64>,
    live: impl Fn(&str) -> bool,
    live_max_age: Option<Duration>,
    tag: impl Fn(&str, u64) -> Option<String>,
    seen: impl Fn(&Keyframe),
) {
    let mut queues: HashMap<Arc<str>, StreamSender> = HashMap::new();
    for msg in keyframes {
        let frame = match msg {
            VideoMsg::Keyframe(frame) => frame,
            VideoMsg::End(id) => {
                if queues.remove(&id).is_some() {
                    tracing::debug!(stream = %id, "stream ended: encoder queue closed");
                }
                continue;
            }
        };
        let queue = match queues.get(&frame.stream_id) {
            Some(q) => q,
            None => match open_queue(&batcher, frame.stream_id.clone(), live(&frame.stream_id), live_max_age)
            {
                Ok(q) => queues.entry(frame.stream_id.clone()).or_insert(q),
                Err(e) => {
                    tracing::error!("encoder stopped: {e}");
                    break;
                }
            },
        };
        seen(&frame);
        let text = tag(&frame.stream_id, frame.pts_ms);
        let request = EncodeRequest { frame, text };
        if live(queue.stream_id()) {
            if let Err(TrySendError::Full(_)) = queue.try_send(request) {
                dropped.fetch_add(1, Relaxed);
            }
        } else if queue.send(request).is_err() {
            break;
        }
    }
    drop(queues);
    batcher.finish();
}

/// Live streams' frames expire in the encoder queue after `live_max_age`; files wait for their turn.
fn open_queue(
    batcher: &Batcher,
    id: Arc<str>,
    live: bool,
    live_max_age: Option<Duration>,
) -> Result<StreamSender, crate::encode::EncodeError> {
    match live_max_age {
        Some(age) if live => batcher.live_stream(id, age),
        _ => batcher.stream(id),
    }
}
