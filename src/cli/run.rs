//! `livesku run --config FILE`: the service, watching the streams listed in the config.

use std::path::PathBuf;
use std::process::ExitCode;

use super::serve::{SinkChoice, apply_sink, serve};
use crate::service::ServiceConfig;

#[derive(clap::Args)]
pub struct Args {
    /// Service configuration (TOML, see config/README.md). Validated before any stream starts.
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Overrides `publish.sink`.
    #[arg(long, value_enum)]
    sink: Option<SinkChoice>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut cfg = ServiceConfig::load(&args.config)?;
    apply_sink(&mut cfg, args.sink, None, None);
    serve(cfg, None, false)
}
