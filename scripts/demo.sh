#!/usr/bin/env bash
# The local demo on embedded defaults: sets the machine up, starts a private RTMP server, publishes a
# generated live stream (moving picture + tone) to it, and runs `livesku ingest` on it, printing what it
# samples as JSON lines. Ctrl-C stops everything. DEMO_SECS sets the length (default 30).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
cargo build --quiet --bin livesku

work="$(mktemp -d)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rtmp_port=$(port); http_port=$(port)
mkdir -p "$work/hls"
sed -e "s#{prefix}#$work#g" -e "s#{rtmp_port}#$rtmp_port#g" -e "s#{http_port}#$http_port#g" \
    -e "s#{hls_root}#$work/hls#g" scripts/servers/nginx-rtmp.conf.in > "$work/nginx.conf"
/usr/sbin/nginx -p "$work" -c "$work/nginx.conf" &
pids+=($!)
url="rtmp://127.0.0.1:$rtmp_port/live/demo"
sleep 0.5
echo "[demo] publishing a generated 720p30 live stream (2 s GOP) to $url" >&2
gst-launch-1.0 -q videotestsrc is-live=true pattern=ball ! video/x-raw,width=1280,height=720,framerate=30/1 \
    ! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=60 bitrate=2000 ! h264parse \
    ! flvmux name=mux streamable=true ! rtmp2sink location="$url" \
    audiotestsrc is-live=true wave=sine freq=440 ! audio/x-raw,rate=44100,channels=2 ! voaacenc ! aacparse ! mux. &
pids+=($!)
echo "[demo] livesku ingest $url --duration ${DEMO_SECS:-30} --out-dir $work/frames" >&2
./target/debug/livesku ingest "$url" --duration "${DEMO_SECS:-30}" --out-dir "$work/frames"
