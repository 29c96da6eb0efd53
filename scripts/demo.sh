#!/usr/bin/env bash
# The local demo on embedded defaults. On a fresh machine it:
#   1. sets the machine up (scripts/setup.sh: packages, ONNX Runtime, models, tansu, sample products),
#   2. builds a gallery of the four sample products (scripts/demo/catalog.jsonl),
#   3. renders a 72 s "live shopping" scene: a host holds up each product in turn (camera motion, lighting
#      drift, a hand passing over it) and names it (espeak-ng narration),
#   4. starts a local Kafka-compatible broker (tansu) and an RTMP server (nginx-rtmp), publishes the scene to
#      it in a loop as a live stream, runs `livesku run` on it with the Kafka sink,
#   5. prints the detection events as a Kafka consumer group receives them.
# Ctrl-C stops everything: livesku closes the open episodes and flushes them before it exits.
# DEMO_SECS=N stops by itself after N seconds. The service's log goes to $work/livesku.log (path printed).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
cargo build --quiet --bin livesku
bin="$PWD/target/debug/livesku"
cache="${LIVESKU_CACHE:-$HOME/.cache/livesku}"
demo="$cache/demo"
python="$cache/venv/bin/python"

say() { printf '[demo] %s\n' "$*" >&2; }
work="$(mktemp -d)"
pids=()
run_pid=""
cleanup() {
    trap - EXIT INT TERM
    if [[ -n "$run_pid" ]] && kill -0 "$run_pid" 2>/dev/null; then
        say "stopping livesku (closing open episodes, flushing to Kafka)"
        kill -TERM "$run_pid" 2>/dev/null || true
        wait "$run_pid" 2>/dev/null || true
        sleep 2 # let the consumer print the last events
    fi
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill "${pids[i]}" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port() { "$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
    for _ in $(seq 100); do (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
    say "$2 did not start listening on port $1"; exit 1
}

# --- the scene: product, empty set, next product... with the host naming each one ---
shows=(coffee.png:0:12 rocket.jpg:18:30 chelsea.png:36:48 motorcycle_left.png:54:66)
lines=(
    "1:Hello everyone! First today, this red porcelain espresso cup with its saucer and a steel spoon."
    "19:Next, a detailed scale model of a rocket on its launch pad, with the service tower."
    "37:Here is a glossy art print of a tabby cat with green eyes, ready to frame."
    "55:And finally a red sport motorcycle model kit, with chrome exhaust."
)
key=$(cat scripts/demo/scene.py scripts/demo/narration.py <(printf '%s\n' "${shows[@]}" "${lines[@]}") | sha256sum | cut -c1-12)
scene="$demo/scene-$key.mp4"
if [[ ! -s "$scene" ]]; then
    say "rendering the 72 s scene with narration (once; cached as $scene)"
    says=(); for l in "${lines[@]}"; do says+=(--say "$l"); done
    "$python" scripts/demo/narration.py --seconds 72 "${says[@]}" --out "$work/speech.wav"
    args=(); for s in "${shows[@]}"; do args+=(--show "$demo/$s"); done
    "$python" scripts/demo/scene.py --seconds 72 "${args[@]}" \
        | gst-launch-1.0 -q fdsrc ! rawvideoparse width=640 height=360 format=rgb framerate=15/1 \
            ! videoconvert ! x264enc speed-preset=ultrafast key-int-max=8 ! h264parse ! mp4mux name=m \
            ! filesink location="$work/scene.mp4" \
            filesrc location="$work/speech.wav" ! wavparse ! audioconvert ! audioresample \
            ! voaacenc bitrate=64000 ! aacparse ! m.
    mv "$work/scene.mp4" "$scene"
fi

# --- gallery ---
say "building the gallery of the sample products"
"$bin" gallery build --catalog "$demo/catalog.jsonl" --out "$work/gallery" >"$work/gallery.log" 2>&1 \
    || { cat "$work/gallery.log" >&2; exit 1; }

# --- broker and RTMP server ---
kafka_port=$(port); rtmp_port=$(port); http_port=$(port)
env -u CLUSTER_ID -u LISTENER_URL -u ADVERTISED_LISTENER_URL -u STORAGE_ENGINE "$cache/bin/tansu" broker \
    --listener-url "tcp://127.0.0.1:$kafka_port" --advertised-listener-url "tcp://127.0.0.1:$kafka_port" \
    --storage-engine memory://tansu/ >"$work/tansu.log" 2>&1 &
pids+=($!)
mkdir -p "$work/hls"
sed -e "s#{prefix}#$work#g" -e "s#{rtmp_port}#$rtmp_port#g" -e "s#{http_port}#$http_port#g" \
    -e "s#{hls_root}#$work/hls#g" scripts/servers/nginx-rtmp.conf.in >"$work/nginx.conf"
/usr/sbin/nginx -p "$work" -c "$work/nginx.conf" &
pids+=($!)
wait_port "$kafka_port" "the broker (tansu)"
wait_port "$rtmp_port" "the RTMP server (nginx)"

# --- consumer: prints what a platform subscribed to the topic receives ---
brokers="127.0.0.1:$kafka_port"
say "Kafka consumer group 'livesku-demo' on $brokers, topic livesku.detections:"
"$bin" consume --brokers "$brokers" --topic livesku.detections --create-topic 3 --group livesku-demo \
    --from-beginning --pretty &
pids+=($!)

# --- the live stream, looped (each loop is a publisher reconnect, which livesku rides out) ---
url="rtmp://127.0.0.1:$rtmp_port/live/shop-1"
(while true; do
    gst-launch-1.0 -q filesrc location="$scene" ! qtdemux name=d d.video_0 ! queue ! h264parse \
        ! flvmux name=m streamable=true ! rtmp2sink location="$url" sync=true d.audio_0 ! queue ! aacparse ! m. \
        >/dev/null 2>&1 || sleep 1
done) &
pids+=($!)

cat >"$work/livesku.toml" <<EOF
[gallery]
path = "$work/gallery"

[publish]
sink = "kafka"

[publish.kafka]
brokers = "$brokers"
topic = "livesku.detections"

[[streams]]
id = "shop-1"
uri = "$url"
EOF
say "livesku run --config $work/livesku.toml (log: $work/livesku.log); Ctrl-C to stop"
"$bin" run --config "$work/livesku.toml" >"$work/livesku.log" 2>&1 &
run_pid=$!
if [[ -n "${DEMO_SECS:-}" ]]; then
    (sleep "$DEMO_SECS"; kill -TERM "$run_pid" 2>/dev/null) &
    pids+=($!)
fi
status=0
wait "$run_pid" || status=$?
run_pid=""
sleep 2 # the consumer prints the events flushed at shutdown
if ((status != 0)); then
    say "livesku exited with status $status; its log:"
    tail -n 30 "$work/livesku.log" >&2
    exit "$status"
fi
