//! Routes keyframes from the shared ingest channel into the encoder's per-stream queues (the batcher
//! serves them round-robin, so a busy stream cannot starve a quiet one).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crossbeam_channel::{Receiver, TrySendError};

use crate::encode::{Batcher, EncodeRequest, StreamSender};
use crate::messages::Keyframe;

/// Runs until every ingest sender is gone, then closes the queues and waits for the encoder to drain.
/// A live stream's full queue drops the frame (counted in `dropped`): the encoder is the bottleneck and
/// old frames are worth less than new ones. Files (`seq`-complete evaluation input) wait instead.
pub fn run(keyframes: Receiver<Keyframe>, batcher: Batcher, dropped: Arc<AtomicU64>, live: impl Fn(&str) -> bool) {
    let mut queues: HashMap<Arc<str>, StreamSender> = HashMap::new();
    for frame in keyframes {
        let queue = match queues.get(&frame.stream_id) {
            Some(q) => q,
            None => match batcher.stream(frame.stream_id.clone()) {
                Ok(q) => queues.entry(frame.stream_id.clone()).or_insert(q),
                Err(e) => {
                    tracing::error!("encoder stopped: {e}");
                    break;
                }
            },
        };
        let request = EncodeRequest { frame, text: None };
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
