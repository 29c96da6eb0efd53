#!/usr/bin/env bash
# Idempotent set-up of a fresh Debian 12 machine for livesku: system packages, the ONNX Runtime library,
# model files, and the servers the tests use. Safe to run again: finished steps are skipped.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf '[setup] %s\n' "$*" >&2; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

# g++ (the USearch HNSW index is C++, built by its crate), GStreamer (build + runtime + libav decoders), x264/tools for generating test streams, nginx with the
# RTMP module (test and demo RTMP/HLS server), espeak-ng + sox (test speech), chromium + chromium-driver
# (dashboard test, headless), gstreamer1.0-x (`textoverlay`, Pango) + fonts-dejavu-core for the OCR test's
# printed package images. See ../shared/STACK.md.
APT_PACKAGES=(
    pkg-config ca-certificates unzip g++
    libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev
    gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-libav
    gstreamer1.0-plugins-ugly gstreamer1.0-tools gstreamer1.0-x fonts-dejavu-core
    nginx libnginx-mod-rtmp
    espeak-ng sox
    chromium chromium-driver
)

SUDO=""
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null || die "not root and no sudo: install ${APT_PACKAGES[*]} by hand"
    SUDO=sudo
fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    say "1/5 installing system packages: ${missing[*]}"
    $SUDO apt-get update -qq || die "apt-get update failed (is a Debian mirror reachable?)"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
        || die "apt-get install failed for: ${missing[*]}"
else
    say "1/5 system packages: ok"
fi
# Installing nginx may start the system service; livesku runs its own private instances.
if pgrep -f "nginx: master process /usr/sbin/nginx" >/dev/null 2>&1; then
    $SUDO /usr/sbin/nginx -s quit 2>/dev/null || true
fi
command -v cargo >/dev/null || die "cargo not found: install the Rust toolchain (rustup), 1.95 or newer"

say "2/5 ONNX Runtime library"
bash scripts/setup/onnxruntime.sh || die "ONNX Runtime set-up failed (see above)"
say "3/5 model files"
bash models/assemble.sh || die "model assembly failed (see above)"
say "4/5 test broker and demo products"
bash scripts/setup/tansu.sh || die "test broker (tansu) set-up failed (see above)"
bash scripts/setup/demo-assets.sh || die "demo product set-up failed (see above)"
say "5/5 checking GStreamer elements"
for e in uridecodebin rtmp2src rtmp2sink hlsdemux2 hlssink2 avdec_h264 x264enc voaacenc flvmux videoconvertscale aspectratiocrop textoverlay; do
    gst-inspect-1.0 "$e" >/dev/null 2>&1 || die "GStreamer element '$e' is missing after install"
done
say "done"
