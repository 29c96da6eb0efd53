#!/usr/bin/env bash
# Installs the Python peer's venv for `cargo bench --bench peer`: ${LIVESKU_CACHE:-~/.cache/livesku}/peer-venv
# with benches/peer/requirements.txt (PyAV, onnxruntime, numpy, Pillow; pinned by hash). Idempotent: a venv
# whose packages already have the pinned versions is left alone. Prints the venv's python on success;
# any failure names its step and exits non-zero.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
CACHE="${LIVESKU_CACHE:-$HOME/.cache/livesku}"
VENV="$CACHE/peer-venv"
REQS="$HERE/requirements.txt"
die() { echo "[peer setup] FAILED: $*" >&2; exit 1; }

check='import av, onnxruntime, numpy, PIL
assert av.__version__ == "18.1.0", av.__version__
assert onnxruntime.__version__ == "1.31.1", onnxruntime.__version__
assert numpy.__version__ == "2.4.6", numpy.__version__
assert PIL.__version__ == "11.3.0", PIL.__version__'
if ! "$VENV/bin/python" -c "$check" 2>/dev/null; then
    echo "[peer setup] creating $VENV from $REQS" >&2
    command -v python3 >/dev/null || die "python3 not found"
    rm -rf "$VENV"
    python3 -m venv "$VENV" || die "python3 -m venv $VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps --require-hashes -r "$REQS" \
        || die "pip install -r $REQS into $VENV"
    "$VENV/bin/python" -c "$check" || die "installed packages do not have the pinned versions"
fi
echo "$VENV/bin/python"
