//! A real Kafka-compatible broker for tests: `tansu` (memory storage) on a free loopback port, installed by
//! scripts/setup.sh (scripts/setup/tansu.sh). Missing binary = loud failure, never a skip. Killed on drop.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use livesku::publish::{KafkaConfig, ensure_topic};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};

use super::{Proc, free_port, wait_for_port};

fn tansu_path() -> PathBuf {
    if let Ok(p) = std::env::var("LIVESKU_TANSU") {
        return p.into();
    }
    let cache = std::env::var("LIVESKU_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/livesku"));
    cache.join("bin/tansu")
}

pub struct Broker {
    pub port: u16,
    _proc: Proc,
}

impl Broker {
    /// Starts a fresh broker on a free port and creates `topics` (name, partitions).
    pub fn start(topics: &[(&str, i32)]) -> Broker {
        Self::start_on(free_port(), topics)
    }

    /// Same, on a given port (to start the broker after a producer already points at it).
    pub fn start_on(port: u16, topics: &[(&str, i32)]) -> Broker {
        Self::start_advertising(port, port, topics)
    }

    /// On `port`, telling clients to connect to `advertised` (a proxy's port, tests/common/proxy.rs): after
    /// bootstrapping, every client (and the topic creation) goes through the proxy.
    pub fn start_advertising(port: u16, advertised: u16, topics: &[(&str, i32)]) -> Broker {
        let bin = tansu_path();
        assert!(bin.is_file(), "tansu is not installed at {}: run scripts/setup.sh", bin.display());
        let url = format!("tcp://127.0.0.1:{port}");
        let advertised = format!("tcp://127.0.0.1:{advertised}");
        let child = Command::new(&bin)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &advertised])
            .args(["--storage-engine", "memory://tansu/"])
            // tansu reads these from the environment too: keep the test's own values.
            .env_remove("CLUSTER_ID")
            .env_remove("LISTENER_URL")
            .env_remove("ADVERTISED_LISTENER_URL")
            .env_remove("STORAGE_ENGINE")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        let broker = Broker { port, _proc: Proc(child) };
        wait_for_port(port, "tansu");
        for (topic, partitions) in topics {
            broker.create_topic(topic, *partitions);
        }
        broker
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn create_topic(&self, topic: &str, partitions: i32) {
        let cfg = KafkaConfig { brokers: self.brokers(), topic: topic.into(), ..KafkaConfig::default() };
        ensure_topic(&cfg, partitions, 1, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("create topic {topic}: {e}"));
    }

    /// Reads `n` messages from `topic` with a fresh consumer group (earliest offsets, commits on the
    /// way), failing the test if they do not arrive within `timeout`. Then waits `quiet` more to make
    /// sure nothing beyond `n` arrives (returned too, so duplicates show).
    pub fn consume(
        &self,
        topic: &str,
        group: &str,
        n: usize,
        timeout: Duration,
        quiet: Duration,
    ) -> Vec<Received> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.brokers())
            .set("group.id", group)
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "1000")
            .set("enable.auto.commit", "true")
            .create()
            .expect("create consumer");
        consumer.subscribe(&[topic]).expect("subscribe");
        let mut out = Vec::new();
        let deadline = Instant::now() + timeout;
        let mut quiet_until = None;
        loop {
            let now = Instant::now();
            match quiet_until {
                None if out.len() >= n => quiet_until = Some(now + quiet),
                Some(q) if now >= q => break,
                None if now >= deadline => {
                    panic!("received {} of {n} messages within {timeout:?}", out.len())
                }
                _ => {}
            }
            let Some(r) = consumer.poll(Duration::from_millis(100)) else { continue };
            let m = r.expect("consumer error");
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec).unwrap_or_default()))
                        .collect()
                })
                .unwrap_or_default();
            out.push(Received {
                key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                headers,
                payload: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                partition: m.partition(),
                offset: m.offset(),
            });
        }
        out
    }
}

/// One consumed message.
#[derive(Debug, Clone)]
pub struct Received {
    pub key: Option<String>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub payload: Vec<u8>,
    pub partition: i32,
    pub offset: i64,
}

impl Received {
    pub fn header(&self, key: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == key).and_then(|(_, v)| std::str::from_utf8(v).ok())
    }
}
