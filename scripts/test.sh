#!/usr/bin/env bash
# Sets the machine up (idempotent) and runs the whole test suite against real components.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
# Tests share two cores with the GStreamer encoders that publish their live streams: two at a time keeps
# live pacing honest.
# --no-fail-fast: one failing test binary must not hide the results of the others.
cargo test --no-fail-fast -- --test-threads=2 "$@"
