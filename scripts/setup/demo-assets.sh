#!/usr/bin/env bash
# Sample products for the demo and the end-to-end tests: photos from the scikit-image wheel (BSD; nothing can
# be fetched from elsewhere) plus scripts/demo/catalog.jsonl, under ${LIVESKU_CACHE:-~/.cache/livesku}/demo.
# Also installs Pillow into the private venv for scripts/demo/scene.py. Idempotent; checksums verified.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE="${LIVESKU_CACHE:-$HOME/.cache/livesku}"
DEST="$CACHE/demo"
VENV="$CACHE/venv"
say() { printf '[setup/demo-assets] %s\n' "$*" >&2; }
die() { printf '[setup/demo-assets] ERROR: %s\n' "$*" >&2; exit 1; }

declare -A SHA=(
    [coffee.png]=cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7
    [rocket.jpg]=c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c
    [chelsea.png]=596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb
    [motorcycle_left.png]=db18e9c4157617403c3537a6ba355dfeafe9a7eabb6b9b94cb33f6525dd49179
)
ok() { [[ -f "$DEST/$1" ]] && [[ "$(sha256sum "$DEST/$1" | cut -d' ' -f1)" == "${SHA[$1]}" ]]; }

mkdir -p "$DEST"
missing=0
for f in "${!SHA[@]}"; do ok "$f" || missing=1; done
if ((missing)); then
    say "fetching product photos from the scikit-image 0.24.0 wheel"
    work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
    python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
        --python-version 3.11 --platform manylinux_2_17_x86_64 --dest "$work" scikit-image==0.24.0 \
        || die "pip download scikit-image==0.24.0 failed (is PyPI reachable?)"
    for f in "${!SHA[@]}"; do
        unzip -q -o -j "$work"/scikit_image-*.whl "skimage/data/$f" -d "$DEST" || die "skimage/data/$f not in the wheel"
        ok "$f" || die "checksum mismatch for $DEST/$f"
    done
fi
cp "$HERE/scripts/demo/catalog.jsonl" "$DEST/catalog.jsonl"
if ! "$VENV/bin/python" -c 'import PIL, numpy' 2>/dev/null; then
    [[ -x "$VENV/bin/pip" ]] || die "private venv $VENV missing (models/assemble.sh creates it)"
    say "installing Pillow into $VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "pillow==11.3.0" || die "pip install pillow failed"
fi
say "ok: $DEST"
