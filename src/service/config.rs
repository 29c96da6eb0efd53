//! The service's configuration file: one TOML document with a section per stage (see `config/README.md`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::api::AllowedSources;
use crate::asr::AsrConfig;
use crate::cluster::ClusterConfig;
use crate::config::{ConfigError, IngestConfig};
use crate::encode::EncoderConfig;
use crate::gallery::GalleryConfig;
use crate::publish::PublishConfig;
use crate::track::TrackConfig;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServiceConfig {
    pub ingest: IngestConfig,
    pub encoder: EncoderConfig,
    pub gallery: GallerySection,
    pub track: TrackConfig,
    pub publish: PublishConfig,
    pub asr: AsrConfig,
    pub api: ApiConfig,
    /// A worker group sharing streams and catalogue through Kafka (src/cluster); off by default.
    pub cluster: ClusterConfig,
    /// The streams to watch from start-up.
    pub streams: Vec<StreamEntry>,
    /// Shutdown (SIGTERM, SIGINT, a failed stage) finishes within this bound: streams stop, the stages
    /// drain and close open episodes in the first half, the sink flushes in what is left (at most
    /// `publish.flush_timeout_ms`). Keep it under the orchestrator's grace period (Docker: 30 s).
    #[serde(with = "crate::config::duration")]
    pub shutdown_timeout: std::time::Duration,
}

/// Default of `shutdown_timeout`.
pub const SHUTDOWN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            ingest: Default::default(),
            encoder: Default::default(),
            gallery: Default::default(),
            track: Default::default(),
            publish: Default::default(),
            asr: Default::default(),
            api: Default::default(),
            cluster: Default::default(),
            streams: Vec::new(),
            shutdown_timeout: SHUTDOWN_TIMEOUT,
        }
    }
}

/// `[gallery]`: where the gallery is, plus the search settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GallerySection {
    /// Directory written by `livesku gallery build`. Required.
    pub path: Option<PathBuf>,
    /// Gallery hits per keyframe handed to the tracker (>= 2, so a runner-up exists).
    pub top_k: Option<usize>,
    /// A keyframe counts as "no product" unless its best product beats the best background reference
    /// by this much (see src/matcher/background.rs). Negative values make abstention rarer.
    pub background_margin: f32,
    /// Snapshots of the empty set, added to the synthetic background references.
    pub background_images: Vec<PathBuf>,
    #[serde(flatten)]
    pub search: GalleryConfig,
}

impl Default for GallerySection {
    fn default() -> Self {
        Self {
            path: None,
            top_k: None,
            background_margin: 0.03,
            background_images: Vec::new(),
            search: GalleryConfig::default(),
        }
    }
}

/// `[api]`: the control API, `/metrics` and the moderator dashboard (`livesku run` only).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    pub enabled: bool,
    /// Address to bind; loopback unless an operator decides otherwise.
    pub listen: String,
    /// Bearer token for mutating endpoints; `LIVESKU_API_TOKEN` overrides it. Without one, mutating
    /// endpoints answer 403.
    pub token: Option<String>,
    /// A second token that only reads (`LIVESKU_API_READ_TOKEN` overrides it). Reads need a token (this
    /// one or `token`) whenever `listen` is not loopback.
    pub read_token: Option<String>,
    /// Serve the moderator dashboard at `/`.
    pub dashboard: bool,
    /// Streams the API may have running at once (adding more answers 429).
    pub max_streams: usize,
    /// What `POST /streams` may start (src/api/sources.rs).
    pub allowed_sources: AllowedSources,
    /// `Host` header names accepted besides the listener's own address (and `localhost` on loopback):
    /// a browser tricked by DNS rebinding sends the attacker's name, which is refused.
    pub allowed_hosts: Vec<String>,
    /// A request (headers to answer, body included) taking longer answers 408.
    #[serde(with = "crate::config::duration")]
    pub request_timeout: Duration,
    /// A connection that has not sent a whole request head within this is closed (slow clients).
    #[serde(with = "crate::config::duration")]
    pub header_read_timeout: Duration,
    /// Larger request bodies answer 413.
    pub max_body_bytes: usize,
    /// Requests served at once; more answer 503 at once instead of queueing.
    pub max_concurrent_requests: usize,
    /// Dashboard live-update (SSE) clients at once; more answer 503.
    pub max_sse_clients: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: "127.0.0.1:8080".into(),
            token: None,
            read_token: None,
            dashboard: true,
            max_streams: 100,
            allowed_sources: AllowedSources::default(),
            allowed_hosts: Vec::new(),
            request_timeout: Duration::from_secs(60),
            header_read_timeout: Duration::from_secs(10),
            max_body_bytes: 1 << 20,
            max_concurrent_requests: 256,
            max_sse_clients: 64,
        }
    }
}

impl ApiConfig {
    /// The token in force: the environment's, else the file's; trimmed like the presented one (so a
    /// trailing newline from a secrets file does not lock everyone out); empty counts as none.
    pub fn effective_token(&self) -> Option<String> {
        env_token("LIVESKU_API_TOKEN").or_else(|| trimmed(self.token.as_deref()))
    }

    /// The read-only token in force (`LIVESKU_API_READ_TOKEN`, else `read_token`).
    pub fn effective_read_token(&self) -> Option<String> {
        env_token("LIVESKU_API_READ_TOKEN").or_else(|| trimmed(self.read_token.as_deref()))
    }

    /// The address `listen` names (validated at start-up).
    pub fn listen_addr(&self) -> Option<std::net::SocketAddr> {
        self.listen.parse().ok()
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let addr = self
            .listen_addr()
            .ok_or_else(|| invalid("api.listen", format!("not a socket address: {:?}", self.listen)))?;
        for (key, value) in [("api.token", &self.token), ("api.read_token", &self.read_token)] {
            if value.as_deref().is_some_and(|t| t.trim().len() < 16) {
                return Err(invalid(key, "must be at least 16 characters"));
            }
        }
        for (var, over) in [("LIVESKU_API_TOKEN", "api.token"), ("LIVESKU_API_READ_TOKEN", "api.read_token")] {
            if env_token(var).is_some_and(|t| t.len() < 16) {
                return Err(invalid(var, format!("must be at least 16 characters (it overrides {over})")));
            }
        }
        if self.max_streams == 0 {
            return Err(invalid("api.max_streams", "must be at least 1"));
        }
        self.allowed_sources.validate()?;
        if let Some(h) = self.allowed_hosts.iter().find(|h| h.trim().is_empty() || h.contains(['/', '@', ' '])) {
            return Err(invalid("api.allowed_hosts", format!("{h:?} is not a host name (no scheme or path)")));
        }
        for (key, d) in [("api.request_timeout", self.request_timeout), ("api.header_read_timeout", self.header_read_timeout)] {
            if !(Duration::from_millis(100)..=Duration::from_secs(3600)).contains(&d) {
                return Err(invalid(key, "must be between 100ms and 1h"));
            }
        }
        if !(1024..=1 << 30).contains(&self.max_body_bytes) {
            return Err(invalid("api.max_body_bytes", "must be between 1024 and 1073741824"));
        }
        if self.max_concurrent_requests == 0 {
            return Err(invalid("api.max_concurrent_requests", "must be at least 1"));
        }
        if self.max_sse_clients == 0 {
            return Err(invalid("api.max_sse_clients", "must be at least 1 (turn the dashboard off with api.dashboard)"));
        }
        if self.enabled && !addr.ip().is_loopback() {
            if self.effective_token().is_none() && self.effective_read_token().is_none() {
                return Err(invalid(
                    "api.token",
                    format!("required when api.listen ({addr}) is not loopback: reads need a token there (or set api.read_token)"),
                ));
            }
            tracing::warn!(listen = %addr, "the control API listens beyond loopback: reads and changes need a token; put TLS in front");
        }
        Ok(())
    }
}

fn trimmed(t: Option<&str>) -> Option<String> {
    t.map(str::trim).filter(|t| !t.is_empty()).map(str::to_string)
}

fn env_token(var: &str) -> Option<String> {
    std::env::var(var).ok().map(|t| t.trim().to_string()).filter(|t| !t.is_empty())
}

/// `[[streams]]`: one watched stream.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamEntry {
    /// Stream id used as the Kafka key; defaults to `Source::default_id` (never made from a secret).
    pub id: Option<String>,
    pub uri: String,
}

fn invalid(key: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError { key: key.to_string(), problem: problem.into() }
}

impl ServiceConfig {
    /// Reads and validates a config file; every error names the file and the key.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| invalid("<file>", format!("cannot read {}: {e}", path.display())))?;
        Self::parse(&text)
    }

    /// Parses and validates a config file's text. A bad value names its key (`gallery.index`), an unknown
    /// key its table; a syntax error (or an unknown top-level key) names its 1-based line.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let at_line = |e: &toml::de::Error| {
            let line = e.span().and_then(|s| text.get(..s.start)).map(|before| before.matches('\n').count() + 1);
            invalid(&line.map_or_else(|| "<file>".into(), |l| format!("line {l}")), e.message().to_string())
        };
        let de = toml::Deserializer::parse(text).map_err(|e| at_line(&e))?;
        // toml's spans point at the enclosing table for many value errors: the path is exact.
        let cfg: ServiceConfig = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let e = e.into_inner();
            if path.is_empty() || path == "." { at_line(&e) } else { invalid(&path, e.message().to_string()) }
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.ingest.validate()?;
        self.encoder.validate()?;
        self.gallery.search.validate()?;
        self.track.validate()?;
        self.publish.validate()?;
        self.asr.validate()?;
        self.api.validate()?;
        self.cluster.validate()?;
        if self.cluster.enabled && !self.streams.is_empty() {
            return Err(invalid("streams", "with cluster.enabled the streams come from the registry: register them with `livesku streams add` instead"));
        }
        if self.gallery.top_k.is_some_and(|k| !(2..=100).contains(&k)) {
            return Err(invalid("gallery.top_k", "must be between 2 and 100"));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(600)).contains(&self.shutdown_timeout) {
            return Err(invalid("shutdown_timeout", "must be between 1s and 10m"));
        }
        if !(-1.0..=1.0).contains(&self.gallery.background_margin) {
            return Err(invalid("gallery.background_margin", "must be between -1 and 1"));
        }
        let mut ids = std::collections::HashSet::new();
        for (i, s) in self.streams.iter().enumerate() {
            let source = crate::ingest::Source::parse(&s.uri)
                .map_err(|e| invalid(&format!("streams[{i}].uri"), e.to_string()))?;
            let id = s.id.clone().unwrap_or_else(|| source.default_id());
            if !ids.insert(id.clone()) {
                let hint = if s.id.is_none() { " (the default id is not made from a stream key: give each stream an id)" } else { "" };
                return Err(invalid(&format!("streams[{i}].id"), format!("duplicate stream id '{id}'{hint}")));
            }
        }
        Ok(())
    }

    pub fn gallery_path(&self) -> Result<&Path, ConfigError> {
        self.gallery.path.as_deref().ok_or_else(|| {
            invalid("gallery.path", "missing: point it at a directory made by `livesku gallery build`")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::ServiceConfig;

    fn err(text: &str) -> String {
        match toml::from_str::<ServiceConfig>(text) {
            Err(e) => e.to_string(),
            Ok(cfg) => cfg.validate().map(|_| String::new()).unwrap_or_else(|e| e.to_string()),
        }
    }

    #[test]
    fn unknown_keys_are_rejected_in_every_section() {
        for (text, key) in [
            ("[gallery]\nbogus = 1", "bogus"),
            ("[encoder]\nbogus = 1", "bogus"),
            ("[ingest]\nbogus = 1", "bogus"),
            ("bogus = 1", "bogus"),
        ] {
            assert!(err(text).contains(key), "{text}: {}", err(text));
        }
    }

    #[test]
    fn api_section_defaults_and_checks() {
        let cfg: ServiceConfig = toml::from_str("[api]\nenabled = true").unwrap();
        assert_eq!(cfg.api.listen, "127.0.0.1:8080");
        assert!(err("[api]\nlisten = \"localhost\"").contains("api.listen"));
        assert!(err("[api]\ntoken = \"short\"").contains("api.token"));
        assert!(err("[api]\nbogus = 1").contains("bogus"));
        assert!(err("[api]\nread_token = \"short\"").contains("api.read_token"));
        assert!(err("[api]\nrequest_timeout = \"10ms\"").contains("api.request_timeout"));
        assert!(err("[api]\nheader_read_timeout = \"soon\"").contains("not a duration"));
        assert!(err("[api]\nmax_body_bytes = 10").contains("api.max_body_bytes"));
        assert!(err("[api]\nmax_concurrent_requests = 0").contains("api.max_concurrent_requests"));
        assert!(err("[api]\nmax_sse_clients = 0").contains("api.max_sse_clients"));
        assert!(err("[api]\nallowed_hosts = [\"http://x\"]").contains("api.allowed_hosts"));
        assert!(err("[api.allowed_sources]\nschemes = [\"ftp\"]").contains("api.allowed_sources.schemes"));
        assert!(err("[api]\nenabled = true\nlisten = \"0.0.0.0:8080\"").contains("api.token"));
        let cfg: ServiceConfig = toml::from_str("[api]\nrequest_timeout = \"5s\"\n[api.allowed_sources]\nschemes = [\"file\"]").unwrap();
        assert_eq!(cfg.api.request_timeout, std::time::Duration::from_secs(5));
        assert_eq!(cfg.api.allowed_sources.schemes, ["file"]);
    }

    #[test]
    fn shutdown_timeout_is_a_humantime_duration_or_seconds() {
        let cfg: ServiceConfig = toml::from_str("").unwrap();
        assert_eq!(cfg.shutdown_timeout, super::SHUTDOWN_TIMEOUT);
        let cfg: ServiceConfig = toml::from_str("shutdown_timeout = \"5s\"").unwrap();
        assert_eq!(cfg.shutdown_timeout, std::time::Duration::from_secs(5));
        let cfg: ServiceConfig = toml::from_str("shutdown_timeout = 2.5").unwrap();
        assert_eq!(cfg.shutdown_timeout, std::time::Duration::from_millis(2500));
        assert!(err("shutdown_timeout = \"soon\"").contains("not a duration"), "{}", err("shutdown_timeout = \"soon\""));
        assert!(err("shutdown_timeout = -1").contains("not a duration"));
        assert!(err("shutdown_timeout = \"0s\"").contains("shutdown_timeout"));
    }

    #[test]
    fn invalid_values_name_the_key() {
        assert!(err("[gallery]\ntop_k = 1").contains("gallery.top_k"));
        assert!(err("[gallery]\nbackground_margin = 3.0").contains("gallery.background_margin"));
        // Default ids come from the redacted URI: two streams that differ only in their key collide.
        let dup = "[[streams]]\nuri = \"rtmp://h/live/a\"\n[[streams]]\nuri = \"rtmp://h/live/b\"";
        assert!(err(dup).contains("streams[1].id"), "{}", err(dup));
    }
}
