//! `/metrics`: OpenMetrics text (Prometheus scrapes it). Each stage owns its counters: the matcher's are
//! `prometheus-client` metrics registered here as they are; the others (ingest stats, batcher, speech,
//! publisher) are atomics a [`Collector`] reads at scrape time, so a removed stream's series simply
//! disappear. Whatever a stage throws away is counted in one family, `livesku_discarded_total{stage,
//! reason}`. Reference: docs/metrics.md (a test checks it against this output).

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use axum::extract::State as S;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::{ApiError, ApiState, State};
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
    let m = &state.service.match_metrics;
    let mut reg = Registry::with_prefix("livesku");
    reg.register("search_seconds", "Gallery search time per keyframe", m.search_seconds.clone());
    reg.register(
        "event_latency_seconds",
        "Keyframe captured (left the decoder) to its detection event handed to the sink",
        m.e2e_emitted_seconds.clone(),
    );
    reg.register("events", "Detection events handed to the sink", m.events.clone());
    let enc = &state.service.encoder_metrics;
    reg.register("encoder_batch_size", "Frames per encoder batch", enc.batch_size.clone());
    reg.register(
        "encoder_queue_wait_seconds",
        "Capture (the frame left the decoder) to start of inference, per frame",
        enc.queue_wait_seconds.clone(),
    );
    reg.register(
        "keyframes_abstained",
        "Keyframes that matched no product (an empty-set reference scored higher)",
        m.abstained.clone(),
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
            ("stream_dropped", "Keyframes dropped at ingest: the stream's encoder queue was full", |s| s.dropped),
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
        gauge(
            &mut e,
            "encoder_open_queues",
            "Per-stream encoder queues open",
            enc.open_queues.load(Relaxed) as i64,
        )?;
        gauge(&mut e, "gallery_products", "Products in the gallery", svc.gallery.products() as i64)?;

        let sum = |f: fn(&crate::ingest::StatsSnapshot) -> u64| streams.iter().map(|s| f(&s.stats)).sum::<u64>();
        let mut discarded: Vec<(&str, &str, u64)> = vec![
            ("ingest", "queue_full", sum(|s| s.dropped)),
            ("ingest", "near_duplicate", sum(|s| s.duplicates_skipped)),
            ("ingest", "audio_queue_full", sum(|s| s.audio_dropped)),
            ("encoder", "expired", enc.expired.load(Relaxed)),
            ("encoder", "failed", enc.failed.load(Relaxed)),
            ("encoder", "regions_shed", enc.regions_shed.load(Relaxed)),
        ];
        if let Some(asr) = &svc.asr_metrics {
            let a = asr.snapshot();
            discarded.push(("asr", "queue_full", a.dropped));
            discarded.push(("asr", "rejected", a.rejected));
        }
        if let Some(p) = &self.0.publish {
            let p = p.snapshot();
            // Channel full (stdout/file), outbox full (Kafka).
            discarded.push(("publish", "bound", p.dropped));
            discarded.push(("publish", "failed", p.failed));
        }
        let mut m = e.encode_descriptor(
            "discarded",
            "Work a stage threw away, by stage and reason (removed streams' ingest counts leave with them)",
            None,
            MetricType::Counter,
        )?;
        for (stage, reason, n) in discarded {
            m.encode_family(&[("stage", stage), ("reason", reason)])?.encode_counter::<NoLabelSet, _, u64>(&n, None)?;
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

        if let Some(c) = &self.0.cluster {
            let (parts, owned) = c.owned();
            let mut m = e.encode_descriptor("worker_info", "This worker of the group (1)", None, MetricType::Gauge)?;
            m.encode_family(&[("worker", c.worker.as_str()), ("group", c.group.as_str())])?.encode_gauge(&1i64)?;
            gauge(&mut e, "cluster_partitions_owned", "Stream registry partitions this worker owns", parts.len() as i64)?;
            gauge(&mut e, "cluster_streams_owned", "Registry streams this worker runs", owned.len() as i64)?;
            let cm = &c.metrics;
            counter(&mut e, "cluster_rebalances", "Registry partition assignments received", cm.rebalances.load(Relaxed))?;
            counter(&mut e, "cluster_streams_started", "Streams started from the registry", cm.started.load(Relaxed))?;
            counter(&mut e, "cluster_streams_stopped", "Registry streams stopped here (removed, changed or moved away)", cm.stopped.load(Relaxed))?;
            counter(&mut e, "cluster_catalog_applied", "Catalogue records of the group applied to this gallery", cm.catalog_applied.load(Relaxed))?;
            counter(&mut e, "cluster_catalog_refused", "Catalogue records refused (another model, bad record)", cm.catalog_refused.load(Relaxed))?;
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
            gauge(
                &mut e,
                "publish_buffered_events",
                "Accepted events not yet delivered, failed or dropped (Kafka: events in the outbox)",
                p.buffered as i64,
            )?;
            gauge(&mut e, "publish_outbox_bytes", "Bytes of the events in the Kafka outbox", p.outbox_bytes as i64)?;
            gauge(
                &mut e,
                "publish_outbox_peak_bytes",
                "Largest publish_outbox_bytes since start",
                p.outbox_peak_bytes as i64,
            )?;
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let age = if p.outbox_oldest_ms == 0 { 0.0 } else { now_ms.saturating_sub(p.outbox_oldest_ms) as f64 / 1000.0 };
            e.encode_descriptor(
                "publish_outbox_oldest_age_seconds",
                "Age of the oldest event in the Kafka outbox (0 when empty)",
                None,
                MetricType::Gauge,
            )?
            .encode_gauge(&age)?;
            counter(&mut e, "publish_outbox_removed", "Delivered events removed from the Kafka outbox", p.removed)?;
            counter(&mut e, "publish_retried", "Failed Kafka delivery reports (the event is sent again)", p.retried)?;
        }
        Ok(())
    }
}
