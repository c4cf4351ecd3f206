# syntax=docker/dockerfile:1
# simple-cache: the server and simple-cache-ctl in a small runtime image.
#   docker build -t simple-cache .
#   docker run -p 8080:8080 -v simple-cache-data:/var/lib/simple-cache simple-cache
# The image runs one single-node cluster by default; docker-compose.yml and deploy/k8s/ run three.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p simple-cache-server \
 && install -D -m 0755 target/release/simple-cache target/release/simple-cache-ctl -t /out/

FROM debian:bookworm-slim
# tini reaps and forwards SIGTERM, so a stop hands leadership over (graceful shutdown).
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 simple-cache \
 && useradd --system --uid 10001 --gid simple-cache --home-dir /var/lib/simple-cache \
      --shell /usr/sbin/nologin simple-cache \
 && install -d -o simple-cache -g simple-cache -m 0750 /var/lib/simple-cache
COPY --from=build /out/simple-cache /out/simple-cache-ctl /usr/local/bin/
USER simple-cache:simple-cache
WORKDIR /var/lib/simple-cache
# Listen on every interface inside the container; the data directory is the volume.
ENV SIMPLE_CACHE_DATA_DIR=/var/lib/simple-cache \
    SIMPLE_CACHE_HTTP_ADDR=0.0.0.0:8080 \
    SIMPLE_CACHE_RAFT_HTTP_ADDR=0.0.0.0:9090 \
    SIMPLE_CACHE_METRICS_ADDR=0.0.0.0:2112 \
    SIMPLE_CACHE_GRPC_ADDR=0.0.0.0:5051 \
    SIMPLE_CACHE_REDIS_ADDR=0.0.0.0:6379
VOLUME ["/var/lib/simple-cache"]
# client HTTP, Raft, metrics, gRPC, Redis protocol
EXPOSE 8080 9090 2112 5051 6379
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["simple-cache-ctl", "--endpoints", "127.0.0.1:8080", "health"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/bin/tini", "--", "simple-cache"]
