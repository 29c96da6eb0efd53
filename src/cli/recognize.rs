//! `livesku recognize <URI> --gallery DIR`: one source through the whole service; detection events out.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::serve::{SinkChoice, apply_sink, serve};
use crate::service::{ServiceConfig, StreamEntry};

#[derive(clap::Args)]
pub struct Args {
    /// Stream URI or file path.
    #[arg(value_name = "URI")]
    uri: String,
    /// Gallery directory made by `livesku gallery build`.
    #[arg(long, value_name = "DIR")]
    gallery: PathBuf,
    /// Where events go.
    #[arg(long, value_enum, default_value = "stdout")]
    sink: SinkChoice,
    /// Kafka bootstrap servers (kafka sink).
    #[arg(long, value_name = "HOST:PORT")]
    brokers: Option<String>,
    /// Kafka topic (kafka sink).
    #[arg(long, value_name = "NAME")]
    topic: Option<String>,
    /// Stop after this many seconds (default: when the source ends).
    #[arg(long, value_name = "SECS", value_parser = super::until::parse_duration)]
    duration: Option<Duration>,
    /// Model directory [default: the config's `[encoder] model_dir`, else $LIVESKU_CACHE/models/default]
    #[arg(long, value_name = "DIR", env = "LIVESKU_MODEL_DIR")]
    model: Option<PathBuf>,
    /// Optional service config file for the other settings (its `[[streams]]` are ignored).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut cfg = match &args.config {
        Some(path) => ServiceConfig::load(path)?,
        None => ServiceConfig::default(),
    };
    cfg.gallery.path = Some(args.gallery.clone());
    if let Some(model) = args.model {
        cfg.encoder.model_dir = Some(model);
    }
    cfg.streams = vec![StreamEntry { id: None, uri: args.uri.clone() }];
    // A one-off command reports a source it cannot reach instead of waiting for it.
    cfg.ingest.fail_fast = true;
    apply_sink(&mut cfg, Some(args.sink), args.brokers, args.topic);
    serve(cfg, args.duration, true)
}
