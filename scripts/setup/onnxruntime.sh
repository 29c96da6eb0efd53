#!/usr/bin/env bash
# Installs the ONNX Runtime shared library (CPU build) under ${LIVESKU_CACHE:-$HOME/.cache/livesku}/onnxruntime.
# The `ort` crate is built with `load-dynamic`, so the library is loaded at run time from there (or from
# $ORT_DYLIB_PATH). The library comes out of the PyPI wheel: no other source is reachable from this machine.
# Idempotent: a library whose checksum already matches is left alone.
set -euo pipefail

ORT_VERSION=1.31.1
# sha256 of onnxruntime/capi/libonnxruntime.so.1.31.1 inside onnxruntime-1.31.1-cp311-...-manylinux x86_64 wheel.
ORT_LIB_SHA256="${ORT_LIB_SHA256:-fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3}"

CACHE="${LIVESKU_CACHE:-$HOME/.cache/livesku}"
DEST_DIR="$CACHE/onnxruntime"
LIB="libonnxruntime.so.$ORT_VERSION"
DEST="$DEST_DIR/$LIB"

say() { printf '[setup/onnxruntime] %s\n' "$*" >&2; }
die() { printf '[setup/onnxruntime] ERROR: %s\n' "$*" >&2; exit 1; }

check() { [[ "$(sha256sum "$1" | cut -d' ' -f1)" == "$ORT_LIB_SHA256" ]]; }

if [[ -f "$DEST" ]] && check "$DEST"; then
    say "ok: $DEST (checksum matches)"
    exit 0
fi

command -v python3 >/dev/null || die "python3 not found (needed for 'pip download' and unzipping the wheel)"
mkdir -p "$DEST_DIR"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

say "downloading PyPI wheel onnxruntime==$ORT_VERSION (no dependencies)"
python3 -m pip download --quiet --no-deps --only-binary=:all: \
    --python-version 3.11 --implementation cp --abi cp311 --platform manylinux_2_28_x86_64 \
    --dest "$WORK" "onnxruntime==$ORT_VERSION" \
    || die "pip download onnxruntime==$ORT_VERSION failed (is the PyPI registry reachable?)"
WHEEL="$(ls "$WORK"/onnxruntime-"$ORT_VERSION"-*.whl 2>/dev/null | head -n1)"
[[ -n "$WHEEL" ]] || die "no onnxruntime-$ORT_VERSION wheel in $WORK after download"

say "extracting onnxruntime/capi/$LIB from $(basename "$WHEEL")"
python3 - "$WHEEL" "onnxruntime/capi/$LIB" "$WORK/$LIB" <<'PY' || die "could not extract onnxruntime/capi/$LIB from the wheel"
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst)
PY

got="$(sha256sum "$WORK/$LIB" | cut -d' ' -f1)"
[[ "$got" == "$ORT_LIB_SHA256" ]] \
    || die "checksum mismatch for $LIB: expected $ORT_LIB_SHA256, got $got"
mv "$WORK/$LIB" "$DEST"
chmod 0644 "$DEST"
say "installed $DEST"
