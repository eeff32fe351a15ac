# syntax=docker/dockerfile:1.7
# Polder: one binary (HTTP/web UI :9047, PostgreSQL wire :31010, Flight SQL :32010).
#
#   docker build -t polder .
#   docker run -p 9047:9047 -p 31010:31010 -p 32010:32010 \
#       -e POLDER_ADMIN_PASSWORD=... -v polder-data:/var/lib/polder polder
#
# See docs/operations.md and deploy/compose/ for PostgreSQL catalog + S3 lake setups.

# --- build -----------------------------------------------------------------------------------
FROM rust:1.95-bookworm AS builder
# aws-lc-sys (TLS) may fall back to a cmake build; the rest needs only the C toolchain.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake clang \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The web UI (ui/) is embedded into the release binary by rust-embed; no Node build step.
# target/ is a cache mount, so the binary is copied out within the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p polder \
 && install -m 0755 target/release/polder /usr/local/bin/polder

# --- runtime ---------------------------------------------------------------------------------
FROM debian:bookworm-slim AS runtime
# ca-certificates: TLS to S3 / PostgreSQL. curl: the HEALTHCHECK (polder has no HTTP probe
# subcommand, and the slim image ships no HTTP client).
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 polder \
 && useradd --system --uid 10001 --gid polder --home-dir /var/lib/polder --shell /usr/sbin/nologin polder \
 && mkdir -p /var/lib/polder \
 && chown polder:polder /var/lib/polder
COPY --from=builder /usr/local/bin/polder /usr/local/bin/polder

# Listeners on all interfaces inside the container. Authentication stays on (the default):
# Polder refuses to start with auth off on a non-loopback address. Set POLDER_ADMIN_PASSWORD
# (else a generated admin password is printed once on the first start).
ENV POLDER_DATA_DIR=/var/lib/polder \
    POLDER_HTTP_LISTEN=0.0.0.0:9047 \
    POLDER_PG_LISTEN=0.0.0.0:31010 \
    POLDER_FLIGHT_LISTEN=0.0.0.0:32010 \
    POLDER_LOG_FORMAT=json

USER polder:polder
WORKDIR /var/lib/polder
VOLUME ["/var/lib/polder"]
EXPOSE 9047 31010 32010

# Liveness only (/health). Readiness (/ready: catalog and lake reachable) belongs to the
# orchestrator or load balancer, so a slow S3 does not get the container restarted.
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD curl -fsS -o /dev/null http://127.0.0.1:9047/health || exit 1

ENTRYPOINT ["/usr/local/bin/polder"]
CMD ["serve"]
