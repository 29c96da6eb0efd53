//! The service lifecycle shared by `run` and `recognize`: start, add the configured streams, run until
//! they end, the duration is up, or SIGINT/SIGTERM arrives; then drain every stage and flush the sink.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::event::DetectionEvent;
use crate::messages::StreamState;
use crate::service::{Service, ServiceConfig};

/// Where detection events go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SinkChoice {
    /// JSON lines on standard output.
    Stdout,
}

pub fn serve(
    cfg: ServiceConfig,
    sink: SinkChoice,
    _brokers: Option<String>,
    _topic: Option<String>,
    duration: Option<Duration>,
) -> anyhow::Result<ExitCode> {
    let (events_tx, events_rx) = crossbeam_channel::bounded::<DetectionEvent>(1024);
    let writer = match sink {
        SinkChoice::Stdout => std::thread::spawn(move || {
            let mut out = std::io::stdout().lock();
            for ev in events_rx {
                let _ = out.write_all(&ev.to_json()).and_then(|_| out.write_all(b"\n")).and_then(|_| out.flush());
            }
        }),
    };
    let emit = move |ev: DetectionEvent| {
        let _ = events_tx.send(ev);
    };

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let _guard = runtime.enter();
    // Loading the model and the gallery happens here, before any stream starts.
    let mut service = Service::start(&cfg, emit).context("cannot start the service")?;
    for s in &cfg.streams {
        service.add_stream(s.id.as_deref(), &s.uri)?;
    }
    let stats = runtime.block_on(async move {
        wait_for_end(&service, duration).await;
        service.shutdown().await
    });
    drop(_guard);
    drop(runtime);
    let _ = writer.join();

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

async fn wait_for_end(service: &Service, duration: Option<Duration>) {
    let deadline = duration.map(|d| tokio::time::Instant::now() + d);
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    loop {
        if service.all_streams_ended() || deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
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
