//! The `livesku` command line. Each subcommand lives in `livesku::cli::<name>`.

use clap::{Parser, Subcommand};
use livesku::cli;

#[derive(Parser)]
#[command(name = "livesku", version, about = "Live-commerce product recognition")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Ingest live streams or files and print sampled keyframes, audio and status as JSON lines.
    Ingest(cli::ingest::Args),
    /// Run the service on the streams of a config file, publishing detection events.
    Run(cli::run::Args),
    /// The worker group's stream registry on Kafka: add, remove, list streams.
    Streams(cli::streams::Args),
    /// Recognise products in one stream or file and emit detection events.
    Recognize(cli::recognize::Args),
    /// Build and update product galleries from catalogue files.
    Gallery(cli::gallery::Args),
    /// Print detection events as a Kafka consumer group receives them.
    Consume(cli::consume::Args),
    /// Measure retrieval recall of a gallery on labelled queries.
    Eval(cli::eval::Args),
    /// Learn the cross-domain (page <-> live) head on labelled examples; writes a model directory.
    Train(cli::train::Args),
    /// Write the int8 variant of a model directory, checked against its float32 source on real images.
    Quantize(cli::quantize::Args),
    /// Transcribe the speech of one stream or file: one JSON line per utterance.
    Transcribe(cli::transcribe::Args),
    /// Read the text in images and rank catalogue products by it (packaging OCR).
    Ocr(cli::ocr::Args),
}

fn main() -> std::process::ExitCode {
    limit_malloc_arenas();
    cli::init_tracing();
    let result = match Cli::parse().command {
        Command::Ingest(args) => cli::ingest::run(args),
        Command::Run(args) => cli::run::run(args),
        Command::Streams(args) => cli::streams::run(args),
        Command::Recognize(args) => cli::recognize::run(args),
        Command::Gallery(args) => cli::gallery::run(args),
        Command::Eval(args) => cli::eval::run(args),
        Command::Transcribe(args) => cli::transcribe::run(args),
        Command::Train(args) => cli::train::run(args),
        Command::Quantize(args) => cli::quantize::run(args),
        Command::Consume(args) => cli::consume::run(args),
        Command::Ocr(args) => cli::ocr::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            // One line, with the causes chained: "error: <what> : <why>".
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Every GStreamer streaming thread would get its own glibc malloc arena: a service that keeps adding and
/// removing streams then creeps up in RSS by fragmentation (measured +56 MiB over 50 streams, against +17
/// MiB with two arenas; docs/metrics.md). Two arenas unless `MALLOC_ARENA_MAX` says otherwise.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only changes allocator tuning; called before any other thread exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}
