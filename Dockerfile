# livesku service image: the binary, GStreamer runtime, ONNX Runtime and the default model.
# Build: docker compose build   (no Docker engine on the development machines: not exercised in CI)
FROM rust:1.95-bookworm AS build
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends pkg-config \
      libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin livesku

FROM debian:bookworm-slim
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends ca-certificates unzip python3 \
      python3-venv python3-pip gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad \
      gstreamer1.0-libav && rm -rf /var/lib/apt/lists/*
ENV LIVESKU_CACHE=/opt/livesku
COPY scripts/setup/onnxruntime.sh /tmp/setup/onnxruntime.sh
COPY models /tmp/models
RUN bash /tmp/setup/onnxruntime.sh && bash /tmp/models/assemble.sh && rm -rf /tmp/setup /tmp/models \
      /opt/livesku/wheels
COPY --from=build /src/target/release/livesku /usr/local/bin/livesku
# livesku decodes untrusted network media: run it as an unprivileged user (no shell, no home to write;
# the models under /opt/livesku stay root-owned and read-only to it).
RUN groupadd --system --gid 10001 livesku \
 && useradd --system --uid 10001 --gid livesku --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin livesku \
 && install -d -o 10001 -g 10001 -m 0700 /var/lib/livesku/outbox
# The outbox directory is the user's own (a named volume mounted there takes its ownership from the image).
USER 10001:10001
ENTRYPOINT ["livesku"]
CMD ["run", "--config", "/etc/livesku/livesku.toml"]
