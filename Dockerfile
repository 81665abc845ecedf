# syntax=docker/dockerfile:1
#
# The image the Helm chart (helm/angzarr-bus) runs by default: angzarr/bus,
# tagged with the chart's appVersion (the workspace version):
#
#   docker build -t angzarr/bus:0.1.0 .
#
# It holds two binaries:
#   /usr/local/bin/angzarr-nats-server  the bundled NATS-protocol server with
#                                       JetStream (the chart's StatefulSet)
#   /usr/local/bin/poker                the example app (the chart's Deployment/Job)
# and runs as the non-root user 10001, as the chart's securityContext expects.

ARG RUST_VERSION=1.95

# ---- build ------------------------------------------------------------------
FROM rust:${RUST_VERSION}-slim-trixie AS builder
WORKDIR /src
# The whole workspace: cargo resolves every member even when building two.
# (Protobuf code is generated with protox, so no protoc is needed.)
COPY . .
RUN cargo build --release --locked -p bus-embedded-server -p examples \
 && install -D -m 0755 target/release/angzarr-nats-server /out/angzarr-nats-server \
 && install -D -m 0755 target/release/poker /out/poker

# ---- runtime ----------------------------------------------------------------
FROM debian:trixie-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 angzarr \
 && useradd --system --uid 10001 --gid angzarr --home-dir /data --no-create-home --shell /usr/sbin/nologin angzarr \
 && mkdir -p /data /var/lib/angzarr/data /etc/angzarr \
 && chown angzarr:angzarr /data /var/lib/angzarr/data
COPY --from=builder /out/angzarr-nats-server /out/poker /usr/local/bin/
USER 10001:10001
WORKDIR /data
# client, monitoring (/healthz, /varz, /jsz, /metrics)
EXPOSE 4222 8222
VOLUME ["/data"]
# SIGTERM (the default stop signal) shuts the server down gracefully.
ENTRYPOINT ["/usr/local/bin/angzarr-nats-server"]
CMD ["-a", "0.0.0.0", "-p", "4222", "-m", "8222", "-js", "-sd", "/data"]
