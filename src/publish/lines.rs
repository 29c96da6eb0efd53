//! JSON-lines sinks: stdout (`livesku recognize`) and an appended file.

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::metrics::PublishMetrics;
use super::{PublishError, Sink};
use crate::event::DetectionEvent;

pub struct LinesSink {
    out: Box<dyn Write + Send>,
    name: String,
    metrics: Arc<PublishMetrics>,
}

impl LinesSink {
    pub fn stdout(metrics: Arc<PublishMetrics>) -> Self {
        // Line-buffered stdout: one event per line, visible as soon as it is decided.
        LinesSink { out: Box::new(std::io::stdout()), name: "stdout".into(), metrics }
    }

    pub fn file(path: &Path, metrics: Arc<PublishMetrics>) -> Result<Self, PublishError> {
        let io = |source| PublishError::Io { path: path.display().to_string(), source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let f = OpenOptions::new().create(true).append(true).open(path).map_err(io)?;
        Ok(LinesSink { out: Box::new(BufWriter::new(f)), name: path.display().to_string(), metrics })
    }

    /// Any writer, for tests and embedding.
    pub fn writer(out: Box<dyn Write + Send>, metrics: Arc<PublishMetrics>) -> Self {
        LinesSink { out, name: "writer".into(), metrics }
    }
}

impl Sink for LinesSink {
    fn send(&mut self, _event: &DetectionEvent, payload: &[u8], _wait: Duration) -> Result<(), PublishError> {
        // Flushed per event: events are few, and one counts as delivered only once it is in the file
        // (a reader tailing it sees it at once).
        let r = self.out.write_all(payload).and_then(|_| self.out.write_all(b"\n")).and_then(|_| self.out.flush());
        match r {
            Ok(()) => {
                self.metrics.settle(&self.metrics.delivered);
                Ok(())
            }
            Err(source) => Err(PublishError::Io { path: self.name.clone(), source }),
        }
    }

    fn flush(&mut self, _timeout: Duration) -> u64 {
        if let Err(e) = self.out.flush() {
            tracing::warn!(sink = %self.name, error = %e, "flush failed");
        }
        0
    }
}
