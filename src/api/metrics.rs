//! `/metrics`: OpenMetrics text (Prometheus scrapes it). Stage counters live where they are counted (ingest
//! stats, batcher, publisher); a [`Collector`] reads them at scrape time, so a removed stream's series
//! simply disappear. Reference: docs/metrics.md.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use axum::extract::State as S;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::{ApiError, ApiState, State};
use crate::encode::metrics::Log2Histogram;
use crate::messages::StreamState;

const STATES: [(StreamState, &str); 5] = [
    (StreamState::Connecting, "connecting"),
    (StreamState::Running, "running"),
    (StreamState::Reconnecting, "reconnecting"),
    (StreamState::Stopped, "stopped"),
    (StreamState::Failed, "failed"),
];

pub async fn metrics(S(state): S<State>) -> Result<impl IntoResponse, ApiError> {
    let text = render(&state).map_err(|e| ApiError::internal(format!("metrics encoding: {e}")))?;
    Ok(([(CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text))
}

pub fn render(state: &Arc<ApiState>) -> Result<String, std::fmt::Error> {
    let m = &state.service.metrics;
    let mut reg = Registry::with_prefix("livesku");
    reg.register("search_seconds", "Gallery search time per keyframe", m.search_seconds.clone());
    reg.register(
        "event_latency_seconds",
        "Keyframe captured (left the decoder) to its detection event handed to the sink",
        m.e2e_emitted_seconds.clone(),
    );
    reg.register_collector(Box::new(Live(state.clone())));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &reg)?;
    Ok(out)
}

/// Reads the live counters of every stage at scrape time.
struct Live(Arc<ApiState>);

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Live")
    }
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    e.encode_descriptor(name, help, None, MetricType::Counter)?.encode_counter::<NoLabelSet, _, u64>(&v, None)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: i64) -> std::fmt::Result {
    e.encode_descriptor(name, help, None, MetricType::Gauge)?.encode_gauge(&v)
}

/// A log2 histogram as a Prometheus one with fixed bounds 2^lo..2^hi (times `scale`), so the bucket set
/// is the same on every scrape.
fn log2_histogram(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    h: &Log2Histogram,
    (lo, hi): (u32, u32),
    scale: f64,
) -> std::fmt::Result {
    let raw = h.buckets();
    let mut buckets: Vec<(f64, u64)> = Vec::new();
    let mut taken = 0;
    for i in lo..=hi {
        let upper = 1u64 << i;
        let upto: u64 = raw.iter().filter(|(u, _)| *u <= upper).map(|(_, n)| n).sum();
        buckets.push((upper as f64 * scale, upto - taken));
        taken = upto;
    }
    buckets.push((f64::INFINITY, h.count().saturating_sub(taken)));
    let sum = h.mean() * h.count() as f64 * scale;
    e.encode_descriptor(name, help, None, MetricType::Histogram)?.encode_histogram::<NoLabelSet>(
        sum,
        h.count(),
        &buckets,
        None,
    )
}

impl Collector for Live {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let svc = &self.0.service;
        let streams = svc.stream_infos();
        gauge(&mut e, "streams", "Streams added and not removed", streams.len() as i64)?;
        type Field = fn(&crate::ingest::StatsSnapshot) -> u64;
        let per_stream: [(&str, &str, Field); 5] = [
            ("stream_keyframes", "Sampled keyframes delivered to the encoder", |s| s.keyframes),
            ("stream_duplicates_skipped", "Keyframes skipped as near-duplicates (pHash)", |s| {
                s.duplicates_skipped
            }),
            ("stream_dropped", "Keyframes dropped at ingest: channel to the encoder full", |s| s.dropped),
            ("stream_reconnects", "Reconnect attempts", |s| s.reconnects),
            ("stream_audio_dropped", "Audio chunks dropped: channel to ASR full", |s| s.audio_dropped),
        ];
        for (name, help, field) in per_stream {
            let mut m = e.encode_descriptor(name, help, None, MetricType::Counter)?;
            for s in &streams {
                let labels = [("stream", s.id.as_str())];
                m.encode_family(&labels)?.encode_counter::<NoLabelSet, _, u64>(&field(&s.stats), None)?;
            }
        }
        let mut m =
            e.encode_descriptor("stream_state", "1 for the stream's current state", None, MetricType::Gauge)?;
        for s in &streams {
            for (st, label) in STATES {
                let labels = [("stream", s.id.as_str()), ("state", label)];
                m.encode_family(&labels)?.encode_gauge(&i64::from(s.stats.state == st))?;
            }
        }
        let mut m = e.encode_descriptor(
            "stream_last_keyframe_timestamp_seconds",
            "Unix time of the stream's last delivered keyframe",
            None,
            MetricType::Gauge,
        )?;
        for s in streams.iter().filter(|s| s.stats.last_keyframe_unix_ms.is_some()) {
            let t = s.stats.last_keyframe_unix_ms.unwrap_or(0) as f64 / 1000.0;
            m.encode_family(&[("stream", s.id.as_str())])?.encode_gauge(&t)?;
        }

        let enc = &svc.encoder_metrics;
        log2_histogram(
            &mut e,
            "encoder_batch_size",
            "Frames per encoder batch",
            &enc.batch_size,
            (0, 8),
            1.0,
        )?;
        log2_histogram(
            &mut e,
            "encoder_queue_wait_seconds",
            "Submit to start of inference, per frame",
            &enc.queue_wait_us,
            (9, 24),
            1e-6,
        )?;
        counter(&mut e, "encoder_failed", "Frames that failed to encode", enc.failed.load(Relaxed))?;
        counter(
            &mut e,
            "encoder_expired",
            "Live keyframes dropped after waiting longer than encoder.live_max_age_ms",
            enc.expired.load(Relaxed),
        )?;
        counter(
            &mut e,
            "encoder_dropped",
            "Keyframes dropped before the encoder: a live stream's queue was full",
            svc.encoder_dropped.load(Relaxed),
        )?;
        gauge(
            &mut e,
            "encoder_open_queues",
            "Per-stream encoder queues open",
            enc.open_queues.load(Relaxed) as i64,
        )?;
        gauge(&mut e, "gallery_products", "Products in the gallery", svc.gallery.products() as i64)?;

        let mut m =
            e.encode_descriptor("events", "Detection events handed to the sink", None, MetricType::Counter)?;
        let sm = &svc.metrics;
        for (t, c) in [
            ("product.appeared", &sm.events_appeared),
            ("product.updated", &sm.events_updated),
            ("product.disappeared", &sm.events_disappeared),
        ] {
            m.encode_family(&[("type", t)])?.encode_counter::<NoLabelSet, _, u64>(&c.load(Relaxed), None)?;
        }

        if let Some(asr) = &svc.asr_metrics {
            let a = asr.snapshot();
            // Utterances cut by the VAD and not yet transcribed, rejected or dropped: queued or decoding.
            let backlog = a.utterances.saturating_sub(a.dropped + a.transcribed + a.rejected);
            gauge(
                &mut e,
                "asr_backlog_utterances",
                "Utterances waiting for or in transcription",
                backlog as i64,
            )?;
            counter(&mut e, "asr_utterances", "Utterances cut by the VAD", a.utterances)?;
            counter(&mut e, "asr_transcribed", "Utterances transcribed", a.transcribed)?;
            counter(
                &mut e,
                "asr_rejected",
                "Transcripts discarded (empty or below min_confidence)",
                a.rejected,
            )?;
            counter(&mut e, "asr_dropped", "Utterances dropped: workers busy and queue full", a.dropped)?;
            let secs = |ms: u64| ms as f64 / 1000.0;
            let mut m = e.encode_descriptor(
                "asr_audio_seconds",
                "Audio analysed by the VAD",
                None,
                MetricType::Counter,
            )?;
            m.encode_counter::<NoLabelSet, _, u64>(&secs(a.audio_ms), None)?;
            let mut m =
                e.encode_descriptor("asr_speech_seconds", "Speech transcribed", None, MetricType::Counter)?;
            m.encode_counter::<NoLabelSet, _, u64>(&secs(a.speech_ms), None)?;
            let mut m = e.encode_descriptor(
                "asr_decode_seconds",
                "Moonshine thread time spent decoding",
                None,
                MetricType::Counter,
            )?;
            m.encode_counter::<NoLabelSet, _, u64>(&secs(a.decode_ms), None)?;
        }

        if let Some(p) = &self.0.publish {
            let p = p.snapshot();
            counter(&mut e, "publish_accepted", "Events taken by the publisher", p.accepted)?;
            counter(
                &mut e,
                "publish_delivered",
                "Events acknowledged by Kafka (or written by stdout/file)",
                p.delivered,
            )?;
            counter(&mut e, "publish_failed", "Events given up on (timeout, permanent error)", p.failed)?;
            counter(&mut e, "publish_dropped", "Events dropped by the bound policy", p.dropped)?;
            gauge(
                &mut e,
                "publish_buffered_events",
                "Accepted events not yet delivered, failed or dropped",
                p.buffered as i64,
            )?;
        }
        Ok(())
    }
}

// Keeps the trait import used for `encode_*` on metric handles in future edits.
#[allow(dead_code)]
fn _uses(_: &dyn EncodeMetric) {}
