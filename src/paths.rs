//! Where set-up puts things: one place for the `LIVESKU_CACHE` / `ORT_DYLIB_PATH` defaults, matching
//! `scripts/setup/onnxruntime.sh` and `models/assemble.sh`.

use std::path::PathBuf;

/// ONNX Runtime version installed by `scripts/setup/onnxruntime.sh`.
pub const ORT_VERSION: &str = "1.31.1";

/// `$LIVESKU_CACHE`, else `$HOME/.cache/livesku`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("LIVESKU_CACHE").filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("livesku")
}

/// `$ORT_DYLIB_PATH`, else the library installed under the cache.
pub fn ort_dylib() -> PathBuf {
    match std::env::var_os("ORT_DYLIB_PATH").filter(|v| !v.is_empty()) {
        Some(path) => PathBuf::from(path),
        None => cache_dir()
            .join("onnxruntime")
            .join(format!("libonnxruntime.so.{ORT_VERSION}")),
    }
}

/// Directory of an assembled model (holding `manifest.toml`), e.g. `default`.
pub fn model_dir(name: &str) -> PathBuf {
    cache_dir().join("models").join(name)
}

/// Python of the private venv made by `models/assemble.sh` (onnx + onnxruntime), used by reference tests.
pub fn venv_python() -> PathBuf {
    cache_dir().join("venv").join("bin").join("python")
}
