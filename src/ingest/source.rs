//! Source URIs: which schemes are accepted, whether a source is live (reconnect on end) or a file, and
//! what in a URI is secret (RTMP stream keys, passwords, secret query values), so that logs, errors, API
//! answers and the dashboard show the URI redacted and the default stream id never comes from a secret.

use std::path::Path;

use sha2::{Digest, Sha256};

use super::IngestError;

/// A validated source.
#[derive(Clone, PartialEq, Eq)]
pub struct Source {
    /// The URI handed to `uridecodebin` (plain paths become `file://` URIs).
    pub uri: String,
    /// Live sources are reconnected when they end; files end the stream.
    pub live: bool,
}

/// Never the raw URI: a `{:?}` in a log line must not print a stream key.
impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source").field("uri", &self.redacted()).field("live", &self.live).finish()
    }
}

const LIVE_SCHEMES: &[&str] = &["rtmp", "rtmps", "http", "https", "rtsp", "rtsps", "srt"];

/// Query parameters whose value is a secret: any name containing one of these (case-insensitive), e.g.
/// SRT `passphrase` and `streamid`, HLS `token`, `access_token`, `sig`, `key`.
const SECRET_QUERY_WORDS: &[&str] = &["pass", "secret", "token", "key", "auth", "sig", "streamid", "session", "cred"];

/// What redaction puts in place of a secret.
pub const REDACTED: &str = "***";

impl Source {
    /// Accepts `rtmp(s)://`, HLS over `http(s)://…m3u8`, `rtsp://`, `srt://`, `file://` and plain paths.
    pub fn parse(input: &str) -> Result<Self, IngestError> {
        let Some((scheme, _)) = input.split_once("://") else {
            return Self::from_path(Path::new(input));
        };
        let scheme = scheme.to_ascii_lowercase();
        if scheme == "file" {
            let path = gstreamer::glib::filename_from_uri(input)
                .map_err(|e| {
                    IngestError::BadSource(format!("{}: not a valid file URI ({e})", redact(input)))
                })?
                .0;
            return Self::from_path(&path);
        }
        if !LIVE_SCHEMES.contains(&scheme.as_str()) {
            // What precedes `://` is echoed only when it looks like a scheme (it could be anything).
            let plain = scheme.len() <= 16 && scheme.bytes().all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
            let scheme = if plain { scheme.as_str() } else { "?" };
            return Err(IngestError::BadSource(format!(
                "unsupported scheme '{scheme}://'; use rtmp://, http(s)://…m3u8 (HLS), rtsp://, srt://, \
                 file:// or a file path"
            )));
        }
        let parsed = url::Url::parse(input)
            .map_err(|e| IngestError::BadSource(format!("{}: not a valid URI ({e})", redact(input))))?;
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(IngestError::BadSource(format!("{}: the URI names no host", redact(input))));
        }
        // GStreamer gets the URI as written; `url` only validates it.
        Ok(Self {
            uri: input.to_string(),
            live: true,
        })
    }

    /// The URI without its secrets (`rtsp://user:pass@host` gives `rtsp://user:***@host`,
    /// `rtmp://h/live/KEY` gives `rtmp://h/live/***`), for logs, errors, API answers and the dashboard.
    pub fn redacted(&self) -> String {
        redact(&self.uri)
    }

    fn from_path(path: &Path) -> Result<Self, IngestError> {
        let abs = std::path::absolute(path)
            .map_err(|e| IngestError::BadSource(format!("{}: {e}", path.display())))?;
        if !abs.is_file() {
            return Err(IngestError::BadSource(format!(
                "{}: no such file (give a path to a media file or a stream URI)",
                abs.display()
            )));
        }
        let uri = gstreamer::glib::filename_to_uri(&abs, None)
            .map_err(|e| IngestError::BadSource(format!("{}: {e}", abs.display())))?;
        Ok(Self {
            uri: uri.to_string(),
            live: false,
        })
    }

    /// A readable default stream id, never made from a secret. Files: the file name without extension
    /// (`/x/demo.mp4` gives `demo`). Network sources: the last path segment of the redacted URI (or its
    /// host) and six hex digits of its hash, so `rtmp://h/live/<key>` gives `live-3f09a1` whatever the
    /// key; two streams that differ only in a secret get the same id (give them ids of their own).
    pub fn default_id(&self) -> String {
        if !self.live {
            return url::Url::parse(&self.uri)
                .ok()
                .and_then(|u| u.path_segments()?.rfind(|s| !s.is_empty()).map(percent_decode))
                .map(|name| plain_id(stem(&name)))
                .filter(|id| !id.is_empty())
                .unwrap_or_else(|| "stream".into());
        }
        let redacted = self.redacted();
        let parsed = url::Url::parse(&redacted).ok();
        let segment = parsed
            .as_ref()
            .and_then(|u| u.path_segments()?.rfind(|s| !s.is_empty() && *s != REDACTED).map(percent_decode));
        let base = segment
            .map(|s| plain_id(stem(&s)))
            .filter(|s| !s.is_empty())
            .or_else(|| parsed.as_ref().and_then(|u| u.host_str()).map(plain_id))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "stream".into());
        let hash = hex::encode(&Sha256::digest(redacted.as_bytes())[..3]);
        let base: String = base.chars().take(48).collect();
        format!("{base}-{hash}")
    }

    /// Replaces every secret of this source's URI in `text` (a GStreamer error, a log line) by `***`.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.replace(&self.uri, &self.redacted());
        for secret in secrets(&self.uri) {
            out = out.replace(&secret, REDACTED);
        }
        out
    }
}

fn stem(name: &str) -> &str {
    match name.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem,
        _ => name,
    }
}

/// Keeps the characters a stream id may have (API ids: A-Z a-z 0-9 - _ .), others become `-`.
fn plain_id(s: &str) -> String {
    let id: String =
        s.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '-' }).collect();
    id.trim_start_matches('.').chars().take(64).collect()
}

fn is_secret_query(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_QUERY_WORDS.iter().any(|w| name.contains(w))
}

/// RTMP's stream key is the path after the application (`rtmp://host/app/KEY`).
fn is_rtmp(u: &url::Url) -> bool {
    matches!(u.scheme(), "rtmp" | "rtmps" | "rtmpt" | "rtmpe")
}

/// The secret parts of `uri` as they are written in it (and percent-decoded): password, RTMP key,
/// values of secret query parameters. Longest first, so a secret containing another is replaced whole.
fn secrets(uri: &str) -> Vec<String> {
    let Ok(u) = url::Url::parse(uri) else { return Vec::new() };
    let mut out: Vec<String> = Vec::new();
    if let Some(p) = u.password() {
        out.push(p.to_string());
    }
    if is_rtmp(&u)
        && let Some((_, key)) = u.path().trim_start_matches('/').split_once('/')
        && !key.is_empty()
    {
        out.push(key.to_string());
    }
    if let Some(q) = u.query() {
        for pair in q.split('&') {
            if let Some((k, v)) = pair.split_once('=')
                && is_secret_query(k)
                && !v.is_empty()
            {
                out.push(v.to_string());
            }
        }
    }
    let decoded: Vec<String> = out.iter().map(|s| percent_decode(s)).collect();
    out.extend(decoded);
    out.retain(|s| s.len() >= 2);
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out.dedup();
    out
}

/// `input` with its secrets replaced by `***` (password, RTMP stream key, secret query values, fragment
/// dropped), also when it does not parse as a URI (then everything after the authority is cut).
pub fn redact(input: &str) -> String {
    if let Ok(mut u) = url::Url::parse(input) {
        if u.password().is_some() {
            let _ = u.set_password(Some(REDACTED));
        }
        if is_rtmp(&u)
            && let Some((app, key)) = u.path().trim_start_matches('/').split_once('/')
            && !key.is_empty()
        {
            let path = format!("/{app}/{REDACTED}");
            u.set_path(&path);
        }
        if let Some(q) = u.query() {
            let q: Vec<String> = q
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, v)) if is_secret_query(k) && !v.is_empty() => format!("{k}={REDACTED}"),
                    _ => pair.to_string(),
                })
                .collect();
            u.set_query(Some(&q.join("&")));
        }
        u.set_fragment(None);
        return u.to_string();
    }
    let Some((scheme, rest)) = input.split_once("://") else { return input.to_string() };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let host = match authority.rfind('@') {
        Some(at) => {
            let user = authority[..at].split(':').next().unwrap_or_default();
            format!("{user}:{REDACTED}{}", &authority[at..])
        }
        None => authority.to_string(),
    };
    let tail = if authority_end < rest.len() { format!("/{REDACTED}") } else { String::new() };
    format!("{scheme}://{host}{tail}")
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_schemes() {
        let s = Source::parse("rtmp://127.0.0.1:1935/live/shop1").unwrap();
        assert!(s.live);
        assert_eq!(s.redacted(), "rtmp://127.0.0.1:1935/live/***");
        assert!(Source::parse("http://h/x/index.m3u8").unwrap().default_id().starts_with("index-"));
    }

    #[test]
    fn malformed_uris_and_passwords() {
        let err = Source::parse("rtsp://user:secret@[::1/x").unwrap_err().to_string();
        assert!(err.contains("not a valid URI") && !err.contains("secret"), "{err}");
        assert!(Source::parse("rtmp:///live/x").unwrap_err().to_string().contains("no host"));
        let s = Source::parse("rtsp://cam:hunter2@10.0.0.5:554/stream1?x=1").unwrap();
        assert_eq!(s.redacted(), "rtsp://cam:***@10.0.0.5:554/stream1?x=1");
        assert!(s.default_id().starts_with("stream1-"), "{}", s.default_id());
        assert!(Source::parse("rtmp://h/live/").unwrap().default_id().starts_with("live-"));
    }

    #[test]
    fn default_ids_never_come_from_secrets() {
        let a = Source::parse("rtmp://h:1935/live/sk_live_0123456789").unwrap();
        let b = Source::parse("rtmp://h:1935/live/another-key").unwrap();
        assert_eq!(a.default_id(), b.default_id(), "the id must not depend on the key");
        assert!(a.default_id().starts_with("live-") && !a.default_id().contains("sk_live"));
        assert_eq!(a.default_id().len(), "live-".len() + 6);
        let srt = Source::parse("srt://h:9000?streamid=publish/secret1&passphrase=p4ssw0rd123").unwrap();
        assert!(srt.default_id().starts_with("h-") && !srt.default_id().contains("secret1"));
        let f = tempfile::Builder::new().suffix(".mp4").tempfile().unwrap();
        let file = Source::parse(f.path().to_str().unwrap()).unwrap();
        assert_eq!(file.default_id(), f.path().file_stem().unwrap().to_str().unwrap().trim_start_matches('.'));
    }

    #[test]
    fn redaction_covers_keys_passwords_and_secret_queries() {
        for (uri, secret, shown) in [
            ("rtmp://h/live/sk_abc123", "sk_abc123", "rtmp://h/live/***"),
            ("rtmps://h:443/app/key/with/slashes", "key/with/slashes", "rtmps://h:443/app/***"),
            ("rtsp://cam:hunter22@10.0.0.5/s1", "hunter22", "rtsp://cam:***@10.0.0.5/s1"),
            ("srt://h:9000?mode=caller&passphrase=0123456789ab", "0123456789ab", "srt://h:9000?mode=caller&passphrase=***"),
            ("srt://h:9000?streamid=%23!::r=live,u=bob", "#!::r=live,u=bob", "srt://h:9000?streamid=***"),
            ("https://cdn/x/index.m3u8?token=t0k3n&v=2#frag", "t0k3n", "https://cdn/x/index.m3u8?token=***&v=2"),
            ("https://cdn/x/index.m3u8?X-Amz-Signature=abcdef12", "abcdef12", "https://cdn/x/index.m3u8?X-Amz-Signature=***"),
        ] {
            let s = Source::parse(uri).unwrap();
            assert_eq!(s.redacted(), shown, "{uri}");
            assert!(!format!("{s:?}").contains(secret), "{uri}: Debug shows the secret");
            let err = format!("Could not open resource {uri} (key {secret})");
            let scrubbed = s.scrub(&err);
            assert!(!scrubbed.contains(secret), "{uri}: {scrubbed}");
            assert!(!s.default_id().contains(secret), "{uri}: id {}", s.default_id());
        }
        // Unparseable input: everything after the authority goes.
        assert_eq!(redact("rtmp://h:x/live/key"), "rtmp://h:x/***");
        assert_eq!(redact("rtsp://u:pw@[::1/x"), "rtsp://u:***@[::1/***");
        let err = Source::parse("gopher://u:pw@h/secret-path").unwrap_err().to_string();
        assert!(!err.contains("pw") && !err.contains("secret-path"), "{err}");
    }

    #[test]
    fn unknown_scheme_is_a_clear_error() {
        let err = Source::parse("gopher://x/y").unwrap_err().to_string();
        assert!(err.contains("unsupported scheme 'gopher://'"), "{err}");
    }

    #[test]
    fn missing_file_is_a_clear_error() {
        let err = Source::parse("/nonexistent/video.mp4")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no such file"), "{err}");
    }

    #[test]
    fn paths_become_file_uris() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let s = Source::parse(f.path().to_str().unwrap()).unwrap();
        assert!(s.uri.starts_with("file:///") && !s.live);
        assert_eq!(Source::parse(&s.uri).unwrap(), s);
    }
}
