//! Keeps one stream alive: builds its pipeline, watches the bus and the heartbeat, and rebuilds the
//! pipeline with backoff when a live source ends, errors or stalls. One task per stream; a failing
//! stream never touches another's pipeline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use futures::StreamExt;
use gstreamer as gst;
use gstreamer::prelude::*;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::backoff::Backoff;
use super::session::{Outputs, Session};
use super::stats::{Heartbeat, StreamStats};
use super::{Source, pipeline};
use crate::config::IngestConfig;
use crate::messages::{StatusChange, StreamId, StreamKey, StreamState};

/// A running stream. Dropping the handle does not stop it; call [`StreamHandle::stop`].
pub struct StreamHandle {
    pub id: StreamId,
    pub key: StreamKey,
    pub stats: Arc<StreamStats>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl StreamHandle {
    /// Asks the stream to stop; its pipeline is torn down and its state becomes `stopped`.
    pub fn stop(&self) {
        self.cancel.cancel();
    }

    /// Waits until the stream has ended (stopped, failed, or end of file).
    pub async fn wait(self) {
        let _ = self.task.await;
    }

    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

/// Starts supervising a stream on the current tokio runtime. When the stream has ended for good, every
/// sender of `outputs` this stream held is dropped (see [`Outputs`]): that is its end.
pub fn spawn(
    key: StreamKey,
    source: Source,
    cfg: Arc<IngestConfig>,
    outputs: Outputs,
    status: Sender<StatusChange>,
) -> StreamHandle {
    let stats = Arc::new(StreamStats::default());
    let cancel = CancellationToken::new();
    let id = key.id.clone();
    let sup = Supervisor {
        key: key.clone(),
        source,
        cfg,
        outputs,
        status,
        stats: stats.clone(),
        cancel: cancel.clone(),
    };
    let span = tracing::info_span!("stream", id = %id);
    let task = tokio::spawn(sup.run().instrument(span));
    StreamHandle {
        id,
        key,
        stats,
        cancel,
        task,
    }
}

struct Supervisor {
    key: StreamKey,
    source: Source,
    cfg: Arc<IngestConfig>,
    outputs: Outputs,
    status: Sender<StatusChange>,
    stats: Arc<StreamStats>,
    cancel: CancellationToken,
}

/// Why a session ended.
enum End {
    Cancelled,
    Eos,
    /// Retrying cannot help (missing plugin, not a media file).
    Fatal(String),
    /// A connection error or stall: worth another attempt.
    Retry(String),
}

impl Supervisor {
    /// Every session's pipeline is torn down and closed before `supervise` returns; dropping `self` then
    /// drops the last of this stream's senders.
    async fn run(self) {
        self.supervise().await;
    }

    async fn supervise(&self) {
        let epoch = Instant::now();
        let mut backoff = Backoff::new(
            Duration::from_secs_f64(self.cfg.backoff_initial_secs),
            Duration::from_secs_f64(self.cfg.backoff_max_secs),
        );
        let mut failures = 0u32;
        let mut ever_had_data = false;
        self.announce(StreamState::Connecting, None);
        loop {
            // The stream clock keeps running across reconnects: a new session starts where wall time is.
            let offset_ms = epoch.elapsed().as_millis() as u64;
            let (end, had_data) = self.session(offset_ms).await;
            ever_had_data |= had_data;
            let reason = match end {
                End::Cancelled => {
                    return self.announce(StreamState::Stopped, Some("stopped on request"));
                }
                End::Eos if !self.source.live => {
                    return self.announce(StreamState::Stopped, Some("end of file"));
                }
                End::Fatal(reason) => return self.announce(StreamState::Failed, Some(&reason)),
                End::Eos => "source ended".to_string(),
                End::Retry(reason) => reason,
            };
            if had_data {
                backoff.reset();
                failures = 0;
            } else {
                failures += 1;
            }
            if self.cfg.fail_fast && !ever_had_data {
                return self.announce(StreamState::Failed, Some(&reason));
            }
            if let Some(max) = self.cfg.max_reconnects
                && failures > max
            {
                let why = format!("gave up after {failures} failed attempts; last error: {reason}");
                return self.announce(StreamState::Failed, Some(&why));
            }
            self.stats
                .reconnects
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.announce(StreamState::Reconnecting, Some(&reason));
            tokio::select! {
                _ = self.cancel.cancelled() => return self.announce(StreamState::Stopped, Some("stopped on request")),
                _ = tokio::time::sleep(backoff.next_delay()) => {}
            }
        }
    }

    fn announce(&self, state: StreamState, reason: Option<&str>) {
        // GStreamer's messages may quote the URI (and so its stream key or password).
        let reason = reason.map(|r| self.source.scrub(r));
        let reason = reason.as_deref();
        match (state, reason) {
            (StreamState::Failed | StreamState::Reconnecting, Some(r)) => {
                tracing::warn!(?state, reason = r)
            }
            _ => tracing::info!(?state, reason),
        }
        self.stats.set_state(state, reason);
        let change = StatusChange {
            stream_id: self.key.id.clone(),
            state,
            reason: reason.map(str::to_string),
        };
        // Status changes are rare; a full channel means nobody is reading them, and the state is still
        // visible in the stats.
        let _ = self.status.try_send(change);
    }

    /// Runs one pipeline until it ends; returns why, and whether any data arrived.
    async fn session(&self, offset_ms: u64) -> (End, bool) {
        let heartbeat = Arc::new(Heartbeat::new());
        let built = match pipeline::build(&self.source, &self.cfg, heartbeat.clone(), self.outputs.audio.is_some()) {
            Ok(b) => b,
            Err(e) => return (End::Fatal(e.to_string()), false),
        };
        let session = Session::new(
            self.key.clone(),
            &self.cfg,
            self.stats.clone(),
            heartbeat.clone(),
            self.outputs.clone(),
            offset_ms,
            !self.source.live,
        );
        session.install(&built.keyframes, built.audio.as_ref());
        let pipeline = built.pipeline;
        let end = self.watch(&pipeline, &heartbeat).await;
        if !matches!(end, End::Eos) {
            // A file's streaming thread may be waiting on a full queue: teardown must not wait for it.
            session.stop();
        }
        // Setting a pipeline to NULL joins its streaming threads: keep that off the async workers.
        let teardown = pipeline.clone();
        let _ = tokio::task::spawn_blocking(move || teardown.set_state(gst::State::Null)).await;
        session.flush_audio();
        session.close();
        (end, heartbeat.seen())
    }

    async fn watch(&self, pipeline: &gst::Pipeline, heartbeat: &Heartbeat) -> End {
        let Some(bus) = pipeline.bus() else {
            return End::Fatal("pipeline has no bus".into());
        };
        let mut messages = bus.stream();
        if pipeline.set_state(gst::State::Playing).is_err() {
            // The reason is on the bus; give it a moment to arrive.
            let deadline = tokio::time::sleep(Duration::from_secs(2));
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    _ = &mut deadline => return End::Retry("pipeline refused to start".into()),
                    Some(msg) = messages.next() => if let Some(end) = self.classify(&msg) { return end },
                }
            }
        }
        let stall = self.cfg.stall_timeout();
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        let mut running = false;
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => return End::Cancelled,
                msg = messages.next() => match msg {
                    Some(msg) => if let Some(end) = self.classify(&msg) { return end },
                    None => return End::Retry("pipeline bus closed".into()),
                },
                _ = tick.tick() => {
                    if !running && heartbeat.seen() {
                        running = true;
                        self.announce(StreamState::Running, None);
                    }
                    // A file that has given data never stalls: a quiet one is waiting for its consumer (see
                    // Session). One that never gave any is broken: decodebin can swallow a demuxer's error
                    // that comes while it is still autoplugging, which would leave it connecting forever.
                    if !self.source.live && !heartbeat.seen() && heartbeat.idle() > stall {
                        return End::Fatal(format!(
                            "no data from the file {:.0} s after opening it: not a playable media file, or a \
                             damaged one",
                            stall.as_secs_f64()
                        ));
                    }
                    if self.source.live && heartbeat.idle() > stall {
                        let what = if heartbeat.seen() { "no data" } else { "no data since connecting" };
                        return End::Retry(format!(
                            "{what} for {:.0} s (publisher gone, wrong stream key, or stalled source)",
                            stall.as_secs_f64()
                        ));
                    }
                }
            }
        }
    }

    /// Maps a bus message to how the session ends, or None to keep going.
    fn classify(&self, msg: &gst::Message) -> Option<End> {
        match msg.view() {
            gst::MessageView::Eos(_) => Some(End::Eos),
            gst::MessageView::Error(err) => {
                let e = err.error();
                let debug = err.debug().map(|d| d.to_string()).unwrap_or_default();
                let detail = debug_detail(&debug);
                let what = if detail.is_empty() || e.message().contains(detail) {
                    e.message().to_string()
                } else {
                    format!("{} ({detail})", e.message())
                };
                let fatal = !self.source.live
                    || e.matches(gst::CoreError::MissingPlugin)
                    || e.matches(gst::StreamError::CodecNotFound)
                    || e.matches(gst::StreamError::TypeNotFound)
                    || e.matches(gst::StreamError::WrongType);
                Some(if fatal {
                    End::Fatal(what)
                } else {
                    End::Retry(what)
                })
            }
            _ => None,
        }
    }
}

/// The detail of a GStreamer error's debug string, which starts with a source location for GStreamer's
/// developers ("file.c(123): function (): element path:") that may be all there is.
fn debug_detail(debug: &str) -> &str {
    let last = debug.lines().last().unwrap_or_default().trim();
    let is_location = last.contains(".c(") && last.contains(" (): ");
    if is_location { "" } else { last }
}

#[cfg(test)]
mod tests {
    use super::debug_detail;

    #[test]
    fn a_debug_string_loses_its_source_location() {
        let only = "../plugins/elements/gsttypefindelement.c(1186): gst_type_find_element_loop (): \
                    /GstPipeline:pipeline13/GstURIDecodeBin:uridecodebin13/GstTypeFindElement:typefind";
        assert_eq!(debug_detail(only), "");
        let two_lines = "qtdemux.c(1): f (): /GstPipeline:p/qtdemux0:\nno known streams found";
        assert_eq!(debug_detail(two_lines), "no known streams found");
        assert_eq!(debug_detail(""), "");
    }
}
