//! `[api.allowed_sources]`: which sources `POST /streams` may start. An API client must not make the
//! service read local files, open a listening port, or fetch from hosts inside the network (SSRF), so
//! the default admits network schemes only, SRT in caller mode, and `http(s)` only for HLS playlists on
//! public addresses. Streams named in the config file and `livesku recognize` are not subject to it.

use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;

use crate::config::ConfigError;
use crate::ingest::source::redact;

/// Every scheme the ingest understands; `file` also stands for plain paths.
const KNOWN_SCHEMES: &[&str] = &["rtmp", "rtmps", "rtsp", "rtsps", "srt", "http", "https", "file"];

/// How long a host name may take to resolve before the request is refused.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AllowedSources {
    /// URI schemes accepted; `http`/`https` only for HLS playlists (`.m3u8`), `file` (off by default)
    /// also admits plain paths.
    pub schemes: Vec<String>,
    /// When not empty, only these hosts (case-insensitive; `*.example.com` also admits its subdomains).
    pub hosts: Vec<String>,
    /// `http(s)` hosts admitted although they resolve to loopback, private, link-local or other
    /// non-public addresses (same patterns as `hosts`).
    pub private_hosts: Vec<String>,
    /// Admit SRT `mode=listener` and `mode=rendezvous` (the service then opens a port).
    pub srt_listener: bool,
}

impl Default for AllowedSources {
    fn default() -> Self {
        let schemes = ["rtmp", "rtmps", "rtsp", "rtsps", "srt", "http", "https"];
        AllowedSources {
            schemes: schemes.map(String::from).to_vec(),
            hosts: Vec::new(),
            private_hosts: Vec::new(),
            srt_listener: false,
        }
    }
}

/// Why a source was refused: `Forbidden` by the policy (403), or `Invalid` as written (400).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refused {
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Invalid(String),
}

const KEY: &str = "api.allowed_sources";

impl AllowedSources {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, problem: String| ConfigError { key: format!("{KEY}.{key}"), problem };
        for s in &self.schemes {
            if !KNOWN_SCHEMES.contains(&s.as_str()) {
                return Err(bad("schemes", format!("unknown scheme {s:?}: use some of {KNOWN_SCHEMES:?}")));
            }
        }
        for (key, list) in [("hosts", &self.hosts), ("private_hosts", &self.private_hosts)] {
            if let Some(h) = list.iter().find(|h| h.trim().is_empty() || h.contains(['/', ':', '@', ' '])) {
                return Err(bad(key, format!("{h:?} is not a host name (no scheme, port or path)")));
            }
        }
        Ok(())
    }

    fn allows(&self, scheme: &str) -> bool {
        self.schemes.iter().any(|s| s == scheme)
    }

    /// Checks `uri` (as `POST /streams` got it) against the policy; `http(s)` hosts are resolved.
    pub async fn check(&self, uri: &str) -> Result<(), Refused> {
        let forbidden = |what: String| Err(Refused::Forbidden(what));
        // librtmp reads options after a space (`swfUrl=... swfVfy=1` makes it fetch that URL).
        if uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Refused::Invalid("\"uri\" must not contain spaces or control characters".into()));
        }
        let Some((scheme, _)) = uri.split_once("://") else {
            if self.allows("file") {
                return Ok(());
            }
            return forbidden(format!(
                "local files are not accepted over the API ({KEY}.schemes has no \"file\"); name the file \
                 in the config file's [[streams]] or use `livesku recognize`"
            ));
        };
        let scheme = scheme.to_ascii_lowercase();
        if !KNOWN_SCHEMES.contains(&scheme.as_str()) {
            // Source::parse names the schemes that exist.
            return Ok(());
        }
        if !self.allows(&scheme) {
            return forbidden(format!("scheme '{scheme}://' is not allowed ({KEY}.schemes: {:?})", self.schemes));
        }
        if scheme == "file" {
            return Ok(());
        }
        let parsed = url::Url::parse(uri)
            .map_err(|e| Refused::Invalid(format!("{}: not a valid URI ({e})", redact(uri))))?;
        let Some(host) = parsed.host_str().filter(|h| !h.is_empty()).map(|h| h.trim_matches(['[', ']'])) else {
            return Err(Refused::Invalid(format!("{}: the URI names no host", redact(uri))));
        };
        let host = host.to_ascii_lowercase();
        if !self.hosts.is_empty() && !matches_any(&self.hosts, &host) {
            return forbidden(format!("host '{host}' is not allowed ({KEY}.hosts)"));
        }
        if host.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified()) {
            return forbidden(format!("host '{host}' is an unspecified address (it would listen, not connect)"));
        }
        match scheme.as_str() {
            "srt" => self.check_srt(&parsed),
            "http" | "https" => self.check_http(&parsed, &host).await,
            _ => Ok(()),
        }
    }

    fn check_srt(&self, u: &url::Url) -> Result<(), Refused> {
        let mode = u.query_pairs().find(|(k, _)| k.eq_ignore_ascii_case("mode")).map(|(_, v)| v.to_ascii_lowercase());
        match mode.as_deref() {
            None | Some("caller") => Ok(()),
            Some(_) if self.srt_listener => Ok(()),
            Some(m) => Err(Refused::Forbidden(format!(
                "SRT mode={m} is not allowed (only caller mode; {KEY}.srt_listener = true admits listeners)"
            ))),
        }
    }

    async fn check_http(&self, u: &url::Url, host: &str) -> Result<(), Refused> {
        if !u.path().to_ascii_lowercase().ends_with(".m3u8") {
            return Err(Refused::Forbidden(format!(
                "http(s) sources must be HLS playlists (a path ending in .m3u8), got {}",
                redact(u.as_str())
            )));
        }
        if matches_any(&self.private_hosts, host) {
            return Ok(());
        }
        let port = u.port_or_known_default().unwrap_or(80);
        let addrs: Vec<IpAddr> = match host.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => match tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port))).await {
                Ok(Ok(addrs)) => addrs.map(|a| a.ip()).collect(),
                Ok(Err(_)) | Err(_) => {
                    return Err(Refused::Invalid(format!("host '{host}' does not resolve")));
                }
            },
        };
        match addrs.iter().find(|ip| !is_public(**ip)) {
            Some(ip) => Err(Refused::Forbidden(format!(
                "host '{host}' resolves to the non-public address {ip}; list it in {KEY}.private_hosts to allow it"
            ))),
            None if addrs.is_empty() => Err(Refused::Invalid(format!("host '{host}' does not resolve"))),
            None => Ok(()),
        }
    }
}

/// `pattern` is a host name, or `*.domain` for the domain and its subdomains.
fn matches_any(patterns: &[String], host: &str) -> bool {
    patterns.iter().any(|p| {
        let p = p.trim().to_ascii_lowercase();
        match p.strip_prefix("*.") {
            Some(domain) => host == domain || host.ends_with(&format!(".{domain}")),
            None => host == p,
        }
    })
}

/// False for loopback, private, link-local, shared (CGNAT), unspecified, broadcast, multicast,
/// documentation and unique-local addresses: what an outside client must not reach through us.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8
                || first == 0x0064 && v6.segments()[1] == 0xff9b)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(p: &AllowedSources, uri: &str) -> Result<(), Refused> {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(p.check(uri))
    }

    fn forbidden(p: &AllowedSources, uri: &str, says: &str) {
        match check(p, uri) {
            Err(Refused::Forbidden(m)) => assert!(m.contains(says), "{uri}: {m}"),
            other => panic!("{uri}: expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn default_admits_network_sources_only() {
        let p = AllowedSources::default();
        for ok in [
            "rtmp://127.0.0.1:1935/live/key",
            "rtmps://live.example.com/app/key",
            "rtsp://cam:pw@10.0.0.5:554/s1",
            "srt://ingest.example.com:9000?mode=caller&passphrase=0123456789",
            "srt://ingest.example.com:9000",
            "https://8.8.8.8/live/index.m3u8",
            "HTTP://1.1.1.1/x/PLAYLIST.M3U8?token=x",
        ] {
            assert_eq!(check(&p, ok), Ok(()), "{ok}");
        }
        forbidden(&p, "file:///etc/passwd", "'file://' is not allowed (api.allowed_sources.schemes");
        forbidden(&p, "/var/media/show.mp4", "local files are not accepted");
        forbidden(&p, "../../show.mp4", "local files");
        forbidden(&p, "srt://h:9000?mode=listener", "mode=listener");
        forbidden(&p, "srt://h:9000?MODE=Rendezvous", "mode=rendezvous");
        forbidden(&p, "srt://0.0.0.0:9000", "unspecified");
        forbidden(&p, "https://8.8.8.8/video.mp4", "HLS playlists");
        forbidden(&p, "http://127.0.0.1:8080/x.m3u8", "non-public address 127.0.0.1");
        forbidden(&p, "http://169.254.169.254/latest/x.m3u8", "non-public");
        forbidden(&p, "http://[::1]/x.m3u8", "non-public");
        forbidden(&p, "http://[::ffff:10.1.2.3]/x.m3u8", "non-public");
        forbidden(&p, "http://100.64.0.1/x.m3u8", "non-public");
        forbidden(&p, "http://localhost:9/x.m3u8", "non-public");
        let err = check(&p, "rtmp://h/live/key swfUrl=http://10.0.0.1/x swfVfy=1").unwrap_err();
        assert!(matches!(err, Refused::Invalid(ref m) if m.contains("spaces")), "{err:?}");
        // Unknown schemes are left to Source::parse, which names the ones that exist.
        assert_eq!(check(&p, "gopher://x/y"), Ok(()));
    }

    #[test]
    fn configured_hosts_files_and_listeners() {
        let p = AllowedSources {
            schemes: vec!["rtmp".into(), "http".into(), "file".into(), "srt".into()],
            hosts: vec!["*.example.com".into(), "localhost".into()],
            private_hosts: vec!["localhost".into()],
            srt_listener: true,
        };
        assert_eq!(check(&p, "rtmp://a.example.com/live/k"), Ok(()));
        assert_eq!(check(&p, "rtmp://example.com/live/k"), Ok(()));
        forbidden(&p, "rtmp://evil.com/live/k", "host 'evil.com' is not allowed (api.allowed_sources.hosts)");
        forbidden(&p, "rtmp://badexample.com/live/k", "not allowed");
        forbidden(&p, "rtsp://a.example.com/s", "'rtsp://' is not allowed");
        assert_eq!(check(&p, "http://localhost:8000/x.m3u8"), Ok(()));
        assert_eq!(check(&p, "/tmp/x.mp4"), Ok(()));
        assert_eq!(check(&p, "srt://a.example.com:9000?mode=listener"), Ok(()));
    }

    #[test]
    fn config_is_validated() {
        let mut p = AllowedSources { schemes: vec!["gopher".into()], ..Default::default() };
        assert!(p.validate().unwrap_err().to_string().contains("api.allowed_sources.schemes"));
        p.schemes = vec!["rtmp".into()];
        p.private_hosts = vec!["http://x".into()];
        assert!(p.validate().unwrap_err().to_string().contains("api.allowed_sources.private_hosts"));
        assert!(AllowedSources::default().validate().is_ok());
    }

    #[test]
    fn public_addresses() {
        for ip in ["8.8.8.8", "2606:4700::1111", "151.101.1.1"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["10.0.0.1", "172.16.0.1", "192.168.1.1", "127.0.0.1", "0.0.0.0", "fe80::1", "fd00::1", "::", "224.0.0.1"] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
    }
}
