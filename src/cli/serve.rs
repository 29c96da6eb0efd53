//! The service lifecycle shared by `run` and `recognize`: start, add the configured streams, run until
//! they end, the duration is up, or SIGINT/SIGTERM arrives; then drain every stage and flush the sink.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::api::ApiServer;
use crate::event::DetectionEvent;
use crate::messages::StreamState;
use crate::publish::{Publisher, SinkKind};
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
pub fn serve(cfg: ServiceConfig, duration: Option<Duration>, until_sources_end: bool) -> anyhow::Result<ExitCode> {
    cfg.validate().context("invalid settings")?;
    let publisher = Arc::new(Publisher::start(&cfg.publish).context("cannot start the event sink")?);
    let sink = publisher.clone();
    // Never blocks: when the sink's bound is hit the event is dropped and counted (config/README.md).
    let emit = move |ev: DetectionEvent| {
        tracing::info!(stream = %ev.stream_id, product = %ev.product_id, score = ev.score, "{}", ev.event_type);
        sink.publish(ev);
    };

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let guard = runtime.enter();
    // Loading the model and the gallery happens here, before any stream starts.
    let service = Arc::new(Service::start(&cfg, emit).context("cannot start the service")?);
    for s in &cfg.streams {
        service.add_stream(s.id.as_deref(), &s.uri)?;
    }
    let api = match cfg.api.enabled {
        true => {
            let start = ApiServer::start(&cfg.api, service.clone(), Some(publisher.metrics_handle()));
            Some(runtime.block_on(start).with_context(|| format!("cannot listen on {} (api.listen)", cfg.api.listen))?)
        }
        false => None,
    };
    let stats = runtime.block_on(async move {
        wait_for_end(&service, duration, until_sources_end).await;
        // Stop taking requests first: nothing may add a stream while the stages drain.
        if let Some(api) = api {
            api.stop().await;
        }
        service.shutdown().await
    });
    drop(guard);
    drop(runtime);
    // The matcher thread (holding the other reference) has ended with the service.
    if let Ok(publisher) = Arc::try_unwrap(publisher) {
        let timeout = publisher.flush_timeout();
        let report = publisher.shutdown(timeout);
        if report.undelivered > 0 {
            tracing::error!(undelivered = report.undelivered, "events not delivered before the flush timeout");
        }
        tracing::info!(metrics = ?report.metrics, "event sink closed");
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

async fn wait_for_end(service: &Service, duration: Option<Duration>, until_sources_end: bool) {
    let deadline = duration.map(|d| tokio::time::Instant::now() + d);
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    loop {
        if (until_sources_end && service.all_streams_ended()) || deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = tokio::signal::ctrl_c() => return tracing::info!("SIGINT: shutting down"),
            _ = async { match sigterm.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {
                return tracing::info!("SIGTERM: shutting down");
            }
        }
    }
}
