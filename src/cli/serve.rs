//! The service lifecycle shared by `run` and `recognize`: start, add the configured streams, run until
//! they end, the duration is up, or SIGINT/SIGTERM arrives; then drain every stage and flush the sink.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::api::ApiServer;
use crate::cluster::{Cluster, Handover};
use crate::event::DetectionEvent;
use crate::messages::StreamState;
use crate::publish::{Publisher, SinkKind};
use super::until::{Stop, until};
use crate::service::{Service, ServiceConfig};

/// Where detection events go (`--sink`); the rest of the sink settings come from `[publish]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SinkChoice {
    /// JSON lines on standard output.
    Stdout,
    /// The Kafka topic of `--brokers` / `--topic` (or `[publish.kafka]`).
    Kafka,
}

/// Applies command-line sink options over the config file's `[publish]` section.
pub fn apply_sink(cfg: &mut ServiceConfig, sink: Option<SinkChoice>, brokers: Option<String>, topic: Option<String>) {
    match sink {
        Some(SinkChoice::Stdout) => cfg.publish.sink = SinkKind::Stdout,
        Some(SinkChoice::Kafka) => cfg.publish.sink = SinkKind::Kafka,
        None => {}
    }
    if let Some(b) = brokers {
        cfg.publish.kafka.brokers = b;
    }
    if let Some(t) = topic {
        cfg.publish.kafka.topic = t;
    }
}

/// `until_sources_end`: stop when every stream has ended (`recognize`); otherwise run until a signal (`run`).
/// Either way a failed pipeline stage stops the service, and the command exits non-zero naming it.
pub fn serve(cfg: ServiceConfig, duration: Option<Duration>, until_sources_end: bool) -> anyhow::Result<ExitCode> {
    cfg.validate().context("invalid settings")?;
    let publisher = Arc::new(Publisher::start(&cfg.publish).context("cannot start the event sink")?);
    let sink = publisher.clone();
    // In a cluster every event passes the handover books (src/cluster/handover.rs) on its way out.
    let handover = match cfg.cluster.enabled {
        true => {
            let c = &cfg.cluster;
            let kafka = c.kafka(&cfg.publish.kafka);
            let window = Duration::from_millis(c.handover_window_ms);
            Some(Arc::new(Handover::new(&kafka, &c.episodes_topic, &c.worker(), window).context("cannot start the episodes writer")?))
        }
        false => None,
    };
    let books = handover.clone();
    // Kafka: returns once the event is in the outbox; stdout/file never block. A refused event is counted
    // (config/README.md, `[publish]`).
    let publish: Arc<dyn Fn(DetectionEvent) + Send + Sync> = Arc::new(move |mut ev: DetectionEvent| {
        if let Some(h) = &books {
            h.on_event(&mut ev);
        }
        tracing::info!(stream = %ev.stream_id, product = %ev.product_id, score = ev.score, "{}", ev.event_type);
        sink.publish(ev);
    });
    let emit = {
        let publish = publish.clone();
        move |ev: DetectionEvent| publish(ev)
    };

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let guard = runtime.enter();
    // Loading the model and the gallery happens here, before any stream starts.
    let service = Arc::new(Service::start(&cfg, emit).context("cannot start the service")?);
    for s in &cfg.streams {
        service.add_stream(s.id.as_deref(), &s.uri)?;
    }
    let cluster = match handover {
        Some(h) => Some(Arc::new(
            Cluster::start(&cfg.cluster, &cfg.publish.kafka, service.clone(), h, publish.clone())
                .context("cannot join the worker group ([cluster])")?,
        )),
        None => None,
    };
    let api = match cfg.api.enabled {
        true => {
            let start = ApiServer::start(&cfg.api, service.clone(), Some(publisher.metrics_handle()), cluster.clone());
            Some(runtime.block_on(start).with_context(|| format!("cannot listen on {} (api.listen)", cfg.api.listen))?)
        }
        false => None,
    };
    let bound = cfg.shutdown_timeout;
    let flush_budget = publisher.flush_timeout().min(bound / 2);
    let (stats, deadline) = runtime.block_on(async {
        let health = service.health.clone();
        let stop = until(duration, || !health.is_healthy() || (until_sources_end && service.all_streams_ended())).await;
        if let Stop::Signal(name) = stop {
            tracing::info!("{name}: shutting down");
        }
        let deadline = tokio::time::Instant::now() + bound;
        if let Some(c) = &cluster {
            c.prepare_leave();
        }
        // Streams and stages first, the API meanwhile answering `/readyz` 503; the sink gets the rest.
        let stats = service.shutdown(deadline - flush_budget).await;
        if let Some(api) = api
            && tokio::time::timeout_at(deadline - flush_budget, api.stop()).await.is_err()
        {
            tracing::warn!("shutdown: API requests still in flight at the deadline");
        }
        (stats, deadline)
    });
    let left = deadline.saturating_duration_since(tokio::time::Instant::now());
    let report = publisher.shutdown(left.min(publisher.flush_timeout()));
    // Episodes closed and delivered: the handover records go out, then the group gets the partitions.
    if let Some(c) = &cluster {
        c.leave();
    }
    drop(guard);
    if report.undelivered > 0 {
        tracing::error!(undelivered = report.undelivered, "events not delivered before the flush timeout");
    }
    tracing::info!(metrics = ?report.metrics, "event sink closed");
    // Whatever still runs past the bound (a stuck stage) is abandoned, not waited for.
    runtime.shutdown_timeout(Duration::from_millis(100));

    if let Some(failure) = service.health.failure() {
        bail!("{failure}: see the log above; the service stopped");
    }
    let failed: Vec<String> = stats
        .iter()
        .filter(|(_, s)| s.state == StreamState::Failed)
        .map(|(id, s)| format!("stream '{id}' failed: {}", s.last_error.as_deref().unwrap_or("unknown error")))
        .collect();
    if !failed.is_empty() {
        bail!("{}", failed.join("; "));
    }
    Ok(ExitCode::SUCCESS)
}
