//! The service's configuration file: one TOML document with a section per stage (see `config/README.md`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::asr::AsrConfig;
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
    /// Serve the moderator dashboard at `/`.
    pub dashboard: bool,
    /// Streams the API may have running at once (adding more answers 429).
    pub max_streams: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: "127.0.0.1:8080".into(),
            token: None,
            dashboard: true,
            max_streams: 100,
        }
    }
}

impl ApiConfig {
    /// The token in force: the environment's, else the file's; trimmed like the presented one (so a
    /// trailing newline from a secrets file does not lock everyone out); empty counts as none.
    pub fn effective_token(&self) -> Option<String> {
        Self::env_token()
            .or_else(|| self.token.as_deref().map(str::trim).filter(|t| !t.is_empty()).map(str::to_string))
    }

    fn env_token() -> Option<String> {
        std::env::var("LIVESKU_API_TOKEN").ok().map(|t| t.trim().to_string()).filter(|t| !t.is_empty())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let addr: std::net::SocketAddr = self
            .listen
            .parse()
            .map_err(|_| invalid("api.listen", format!("not a socket address: {:?}", self.listen)))?;
        if self.token.as_deref().is_some_and(|t| t.trim().len() < 16) {
            return Err(invalid("api.token", "must be at least 16 characters"));
        }
        if Self::env_token().is_some_and(|t| t.len() < 16) {
            return Err(invalid("LIVESKU_API_TOKEN", "must be at least 16 characters (it overrides api.token)"));
        }
        if self.max_streams == 0 {
            return Err(invalid("api.max_streams", "must be at least 1"));
        }
        if self.enabled && !addr.ip().is_loopback() {
            tracing::warn!(listen = %addr, "the control API listens beyond loopback: protect it with a token and TLS in front");
        }
        Ok(())
    }
}

/// `[[streams]]`: one watched stream.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamEntry {
    /// Stream id used as the Kafka key; defaults to the URI's last path segment.
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
                return Err(invalid(&format!("streams[{i}].id"), format!("duplicate stream id '{id}'")));
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
        let dup = "[[streams]]\nuri = \"rtmp://h/live/a\"\n[[streams]]\nuri = \"rtmp://h2/live/a\"";
        assert!(err(dup).contains("streams[1].id"), "{}", err(dup));
    }
}
