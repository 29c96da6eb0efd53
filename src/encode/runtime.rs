//! ONNX Runtime: the process-wide environment (library loaded at run time, see `crate::paths::ort_dylib`)
//! and session creation with the configured execution provider.

use std::path::Path;
use std::sync::OnceLock;

use ort::session::Session;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};

use super::config::Provider;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "cannot load ONNX Runtime from {path}: {reason} (run scripts/setup.sh, or set ORT_DYLIB_PATH)"
    )]
    Library { path: String, reason: String },
    #[error("cannot load model {path}: {source} (run scripts/setup.sh to assemble the models)")]
    Model { path: String, source: ort::Error },
    #[error("ONNX Runtime: {0}")]
    Ort(#[from] ort::Error),
}

static ENV: OnceLock<Result<ort::environment::Environment, (String, String)>> = OnceLock::new();

/// Loads the ONNX Runtime library once per process; later calls return the same environment.
pub fn environment() -> Result<&'static ort::environment::Environment, RuntimeError> {
    let result = ENV.get_or_init(|| {
        let path = crate::paths::ort_dylib();
        let shown = path.display().to_string();
        if !path.is_file() {
            return Err((shown, "file not found".to_string()));
        }
        ort::init_from(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| b.with_name("livesku").build().map_err(|e| e.to_string()))
            .map_err(|reason| (shown, reason))
    });
    result
        .as_ref()
        .map_err(|(path, reason)| RuntimeError::Library {
            path: path.clone(),
            reason: reason.clone(),
        })
}

/// Options shared by all sessions of one encoder.
#[derive(Debug, Clone, Copy)]
pub struct SessionOptions {
    pub provider: Provider,
    /// 0 = ONNX Runtime's default (one thread per core).
    pub intra_threads: usize,
}

/// Opens `path` on the configured provider. A GPU provider that cannot be used (not compiled in, driver or
/// library missing) is logged as a warning and the session is opened on the CPU instead.
pub fn open_session(path: &Path, opts: SessionOptions) -> Result<Session, RuntimeError> {
    let env = environment()?;
    let base = || -> Result<SessionBuilder, RuntimeError> {
        // Intra-op threads sleep instead of spinning between parallel sections: on a 2-core machine
        // shared with ingest (and with other processes) spinning burns CPU that does no inference.
        // Measured with ONNX Runtime 1.31 on the default tower, 2 threads, loaded machine: 16 % less CPU
        // at batch 16, 44 % less at batch 1, wall time no worse (BENCHMARKS.md, issue 15 peer benchmark).
        let mut b = Session::builder(env)?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(ort::Error::from)?
            .with_intra_op_spinning(false)
            .map_err(ort::Error::from)?;
        if opts.intra_threads > 0 {
            b = b
                .with_intra_threads(opts.intra_threads)
                .map_err(ort::Error::from)?;
        }
        Ok(b)
    };
    let model_err = |source| RuntimeError::Model {
        path: path.display().to_string(),
        source,
    };
    if opts.provider != Provider::Cpu {
        match with_gpu(base()?, opts.provider).and_then(|mut b| b.commit_from_file(path)) {
            Ok(session) => return Ok(session),
            Err(e) => tracing::warn!(
                provider = %opts.provider, model = %path.display(), error = %e,
                "execution provider unavailable, falling back to CPU"
            ),
        }
    }
    base()?.commit_from_file(path).map_err(model_err)
}

/// Registers the GPU provider, failing (rather than silently using the CPU) so the caller can log it.
#[allow(unused_variables)]
fn with_gpu(builder: SessionBuilder, provider: Provider) -> Result<SessionBuilder, ort::Error> {
    match provider {
        Provider::Cpu => Ok(builder),
        #[cfg(feature = "cuda")]
        Provider::Cuda(device) => builder
            .with_execution_providers([ort::ep::CUDA::default()
                .with_device_id(device)
                .build()
                .error_on_failure()])
            .map_err(ort::Error::from),
        #[cfg(feature = "tensorrt")]
        Provider::TensorRt(device) => builder
            .with_execution_providers([
                ort::ep::TensorRT::default()
                    .with_device_id(device)
                    .build()
                    .error_on_failure(),
                ort::ep::CUDA::default().with_device_id(device).build(),
            ])
            .map_err(ort::Error::from),
        #[allow(unreachable_patterns)]
        other => Err(ort::Error::new(format!(
            "livesku was built without the `{}` cargo feature",
            if matches!(other, Provider::Cuda(_)) {
                "cuda"
            } else {
                "tensorrt"
            }
        ))),
    }
}

/// The f32 output `name` of a batch of `n` items as (tokens per item, dim, data): `[n, dim]` (already
/// pooled, one token) or `[n, tokens, dim]`, with `dim` checked against the manifest's `want_dim`.
pub(crate) fn batch_output<'a>(
    outputs: &'a ort::session::SessionOutputs<'_>,
    name: &str,
    n: usize,
    want_dim: usize,
) -> Result<(usize, usize, &'a [f32]), super::EncodeError> {
    let bad = |reason: String| super::EncodeError::Output { name: name.to_string(), reason };
    let value = outputs.get(name).ok_or_else(|| bad("missing from the model's outputs".into()))?;
    let (shape, out) = value.try_extract_tensor::<f32>()?;
    let (tokens, dim) = match **shape {
        [b, d] if b as usize == n => (1, d as usize),
        [b, t, d] if b as usize == n => (t as usize, d as usize),
        ref other => return Err(bad(format!("unexpected shape {other:?} for batch {n}"))),
    };
    if dim != want_dim {
        return Err(bad(format!("dimension {dim}, manifest says {want_dim}")));
    }
    Ok((tokens, dim, out))
}
