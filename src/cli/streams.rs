//! `livesku streams add|remove|list`: the worker group's stream registry (src/cluster/registry.rs), written
//! and read straight on Kafka; whichever worker owns a stream's partition starts or stops it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::cluster::{ClusterConfig, RegistryWriter, StreamSpec, ensure_topics, plain_id, registry};
use crate::ingest::Source;
use crate::publish::KafkaConfig;
use crate::service::{ServiceConfig, StreamOptions};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
    /// Kafka bootstrap servers (default: `[cluster] brokers`, else `[publish.kafka] brokers` of `--config`).
    #[arg(long, global = true, value_name = "HOST:PORT")]
    brokers: Option<String>,
    /// Service config whose `[cluster]` and `[publish.kafka]` sections (topics, SASL/TLS properties) to use.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(clap::Subcommand)]
enum Action {
    /// Register a stream (replaces the spec of an id that exists).
    Add {
        uri: String,
        /// Default: a readable part of the URI that is not secret plus a short hash.
        #[arg(long)]
        id: Option<String>,
        /// Per-stream `[ingest]` overrides as JSON, e.g. '{"max_rate_hz": 0.5}'.
        #[arg(long, value_name = "JSON")]
        options: Option<String>,
    },
    /// Unregister a stream (its owner stops it and closes its episodes).
    Remove { id: String },
    /// Print the registered streams as JSON lines (URIs redacted).
    List,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (cluster, publish) = match &args.config {
        Some(path) => {
            let cfg = ServiceConfig::load(path)?;
            (cfg.cluster, cfg.publish.kafka)
        }
        None => (ClusterConfig::default(), KafkaConfig::default()),
    };
    let mut kafka = cluster.kafka(&publish);
    if let Some(b) = args.brokers {
        kafka.brokers = b;
    }
    let topic = cluster.streams_topic.clone();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    match args.action {
        Action::Add { uri, id, options } => {
            let source = Source::parse(&uri)?;
            let id = id.unwrap_or_else(|| source.default_id());
            if !plain_id(&id) {
                bail!("invalid stream id {id:?}: 1 to 64 characters of A-Z a-z 0-9 - _ . (not starting with a dot)");
            }
            let options: StreamOptions = match options {
                Some(json) => serde_json::from_str(&json).context("--options")?,
                None => StreamOptions::default(),
            };
            ensure_topics(&cluster, &kafka)?;
            let writer = RegistryWriter::new(&kafka, &topic)?;
            runtime.block_on(writer.put(&id, &StreamSpec { uri, options }))?;
            println!("{}", serde_json::json!({"id": id, "registered": true, "uri": source.redacted()}));
        }
        Action::Remove { id } => {
            let writer = RegistryWriter::new(&kafka, &topic)?;
            runtime.block_on(writer.remove(&id))?;
            println!("{}", serde_json::json!({"id": id, "unregistered": true}));
        }
        Action::List => {
            for (id, spec) in registry::list(&kafka, &topic, Duration::from_secs(30))? {
                let uri = Source::parse(&spec.uri).map(|s| s.redacted()).unwrap_or_else(|_| "(unparsable)".into());
                println!("{}", serde_json::json!({"id": id, "uri": uri, "options": spec.options}));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
