//! Source URIs: which schemes are accepted, and whether a source is live (reconnect on end) or a file.

use std::path::Path;

use super::IngestError;

/// A validated source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// The URI handed to `uridecodebin` (plain paths become `file://` URIs).
    pub uri: String,
    /// Live sources are reconnected when they end; files end the stream.
    pub live: bool,
}

const LIVE_SCHEMES: &[&str] = &["rtmp", "rtmps", "http", "https", "rtsp", "rtsps", "srt"];

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
                    IngestError::BadSource(format!("{input}: not a valid file URI ({e})"))
                })?
                .0;
            return Self::from_path(&path);
        }
        if !LIVE_SCHEMES.contains(&scheme.as_str()) {
            return Err(IngestError::BadSource(format!(
                "{input}: unsupported scheme '{scheme}://'; use rtmp://, http(s)://…m3u8 (HLS), rtsp://, \
                 srt://, file:// or a file path"
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

    /// The URI without its password (`rtsp://user:pass@host` gives `rtsp://user:***@host`), for logs
    /// and error messages.
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

    /// A readable default stream id: the last path segment without extension (`rtmp://h/live/shop1`
    /// gives `shop1`, `/x/demo.mp4` gives `demo`).
    pub fn default_id(&self) -> String {
        let last = url::Url::parse(&self.uri)
            .ok()
            .and_then(|u| u.path_segments()?.rfind(|s| !s.is_empty()).map(str::to_string))
            .map(|s| percent_decode(&s))
            .unwrap_or_else(|| "stream".into());
        let last = last.as_str();
        let stem = match last.rsplit_once('.') {
            Some((stem, _)) if !stem.is_empty() => stem,
            _ => last,
        };
        if stem.is_empty() {
            "stream".to_string()
        } else {
            stem.to_string()
        }
    }
}

/// `input` with any password in it replaced by `***`, also when it does not parse as a URI.
pub fn redact(input: &str) -> String {
    if let Ok(mut u) = url::Url::parse(input) {
        if u.password().is_some() {
            let _ = u.set_password(Some("***"));
        }
        return u.to_string();
    }
    // Unparseable: cut `user:password@` out of what looks like the authority.
    let Some((scheme, rest)) = input.split_once("://") else { return input.to_string() };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***{}", &rest[at..])
        }
        None => input.to_string(),
    }
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
        assert_eq!(s.default_id(), "shop1");
        assert_eq!(
            Source::parse("http://h/x/index.m3u8").unwrap().default_id(),
            "index"
        );
    }

    #[test]
    fn malformed_uris_and_passwords() {
        let err = Source::parse("rtsp://user:secret@[::1/x").unwrap_err().to_string();
        assert!(err.contains("not a valid URI") && !err.contains("secret"), "{err}");
        assert!(Source::parse("rtmp:///live/x").unwrap_err().to_string().contains("no host"));
        let s = Source::parse("rtsp://cam:hunter2@10.0.0.5:554/stream1?x=1").unwrap();
        assert_eq!(s.redacted(), "rtsp://cam:***@10.0.0.5:554/stream1?x=1");
        assert_eq!(s.default_id(), "stream1");
        assert_eq!(Source::parse("rtmp://h/live/").unwrap().default_id(), "live");
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
