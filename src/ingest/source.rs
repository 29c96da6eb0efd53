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
        Ok(Self {
            uri: input.to_string(),
            live: true,
        })
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
        let trimmed = self
            .uri
            .split(['?', '#'])
            .next()
            .unwrap_or_default()
            .trim_end_matches('/');
        let last = trimmed.rsplit('/').next().unwrap_or("stream");
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
