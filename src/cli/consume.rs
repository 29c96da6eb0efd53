//! `livesku consume`: reads detection events from the Kafka topic as a member of a consumer group and
//! prints them, the way a platform, dashboard or recommender would receive them. Used by the demo; also a
//! handy check of a deployment. Runs until SIGINT/SIGTERM, `--max-messages` or `--duration`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use serde_json::Value;

use crate::publish::{KafkaConfig, ensure_topic};
use crate::service::ServiceConfig;

#[derive(clap::Args)]
pub struct Args {
    /// Kafka bootstrap servers (default: `[publish.kafka] brokers` of `--config`, else localhost:9092).
    #[arg(long, value_name = "HOST:PORT")]
    brokers: Option<String>,
    /// Topic (default: `[publish.kafka] topic`, else livesku.detections).
    #[arg(long, value_name = "NAME")]
    topic: Option<String>,
    /// Service config whose `[publish.kafka]` section (brokers, topic, SASL/TLS properties) to use.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Consumer group id; offsets are committed, so a restarted consumer resumes where it stopped.
    #[arg(long, default_value = "livesku-consume")]
    group: String,
    /// A new group starts at the oldest retained event (default: only events published from now on).
    #[arg(long)]
    from_beginning: bool,
    /// Create the topic with this many partitions if it does not exist (demo, first deployment).
    #[arg(long, value_name = "PARTITIONS")]
    create_topic: Option<i32>,
    /// One readable line per event instead of the JSON document.
    #[arg(long)]
    pretty: bool,
    /// Stop after this many events.
    #[arg(long, value_name = "N")]
    max_messages: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECS", value_parser = super::until::parse_duration)]
    duration: Option<Duration>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut kafka = match &args.config {
        Some(path) => ServiceConfig::load(path)?.publish.kafka,
        None => KafkaConfig::default(),
    };
    if let Some(b) = &args.brokers {
        kafka.brokers = b.clone();
    }
    if let Some(t) = &args.topic {
        kafka.topic = t.clone();
    }
    if let Some(partitions) = args.create_topic {
        let created = ensure_topic(&kafka, partitions, 1, Duration::from_secs(30))
            .with_context(|| format!("cannot create topic '{}' on {}", kafka.topic, kafka.brokers))?;
        if created {
            tracing::info!(topic = %kafka.topic, partitions, "created the topic");
        }
    }
    // The stream consumer polls librdkafka from a task of this runtime.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let _guard = runtime.enter();
    let consumer = consumer(&kafka, &args)?;
    consumer.subscribe(&[&kafka.topic]).with_context(|| format!("cannot subscribe to '{}'", kafka.topic))?;
    tracing::info!(brokers = %kafka.brokers, topic = %kafka.topic, group = %args.group, "consuming");
    let received = runtime.block_on(receive(&consumer, &args))?;
    tracing::info!(received, "consumer stopped");
    Ok(ExitCode::SUCCESS)
}

fn consumer(kafka: &KafkaConfig, args: &Args) -> anyhow::Result<StreamConsumer> {
    kafka
        .client_config("-consume")
        .set("group.id", &args.group)
        .set("enable.auto.commit", "true")
        .set("auto.offset.reset", if args.from_beginning { "earliest" } else { "latest" })
        // Only events of committed producer transactions; also the right default for idempotent producers.
        .set("isolation.level", "read_committed")
        .create()
        .context("cannot create the Kafka consumer")
}

async fn receive(consumer: &StreamConsumer, args: &Args) -> anyhow::Result<u64> {
    let deadline = args.duration.map(|d| tokio::time::Instant::now() + d);
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut received = 0u64;
    while args.max_messages.is_none_or(|max| received < max) {
        let until_deadline = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        let message = tokio::select! {
            m = consumer.recv() => m,
            _ = tokio::signal::ctrl_c() => break,
            _ = sigterm.recv() => break,
            _ = until_deadline => break,
        };
        match message {
            Ok(m) => {
                received += 1;
                let key = m.key().map(String::from_utf8_lossy).unwrap_or_default();
                let payload = m.payload().map(String::from_utf8_lossy).unwrap_or_default();
                if args.pretty {
                    println!("{}", pretty_line(&key, &payload));
                } else {
                    println!("{payload}");
                }
            }
            // Broker restarts and rebalances are retried by librdkafka; report and go on.
            Err(e) => tracing::warn!(error = %e, "consumer error"),
        }
    }
    Ok(received)
}

/// `12:00:03  demo  product.appeared     sku-espresso-set  0.83  "Red espresso cup and saucer"`.
fn pretty_line(key: &str, payload: &str) -> String {
    let Ok(ev) = serde_json::from_str::<Value>(payload) else {
        return format!("{key}  (not a JSON event: {payload})");
    };
    let s = |k: &str| ev.get(k).and_then(Value::as_str).unwrap_or("-").to_string();
    let utc = ev.pointer("/last_seen/utc").and_then(Value::as_str).unwrap_or("-");
    let time = utc.get(11..19).unwrap_or(utc);
    let score = ev.get("score").and_then(Value::as_f64).map_or("-".into(), |v| format!("{v:.2}"));
    let mut line =
        format!("{time}  {key}  {:<20} {:<18} {score}  \"{}\"", s("type"), s("product_id"), s("title"));
    if let Some(asr) = ev.get("asr_text").and_then(Value::as_str).filter(|t| !t.is_empty()) {
        line.push_str(&format!("  (heard: \"{asr}\")"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::pretty_line;

    #[test]
    fn pretty_line_names_type_product_and_title() {
        let ev = r#"{"type":"product.appeared","product_id":"sku-1","title":"Red cup","score":0.8312,
                     "last_seen":{"utc":"2026-11-22T12:00:03.120Z"}}"#;
        assert_eq!(
            pretty_line("demo", ev),
            "12:00:03  demo  product.appeared     sku-1              0.83  \"Red cup\""
        );
        assert!(pretty_line("demo", "oops").contains("not a JSON event"));
    }
}
