//! Subcommands of the `livesku` binary. Each returns the process exit code; errors go up as `anyhow`.

pub mod consume;
pub mod eval;
pub mod gallery;
pub mod ingest;
pub mod ocr;
pub mod quantize;
pub mod recognize;
pub mod run;
pub mod streams;
pub mod train;
pub mod transcribe;
mod serve;
mod until;

/// Logs go to stderr (stdout carries JSON lines), filtered by `RUST_LOG` (default `warn,livesku=info`).
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn,livesku=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: log files and test captures stay greppable.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
