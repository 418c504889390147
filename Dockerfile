# syntax=docker/dockerfile:1
# Rookery: a multi-stage build. Templates and static assets are compiled into
# the binary, so the runtime image holds one file plus CA certificates.
#
#   docker build -t rookery .                      compiles it here (the default)
#   docker build --target prebuilt -t rookery CTX  packs a binary built
#       elsewhere: CTX holds it as `rookery` (what the stack tests do, on a
#       machine without a registry; stages after `prebuilt` are not built)

# What every image runs on: the user, the directories, the settings.
FROM debian:bookworm-slim AS runtime
# A base that has the certificates already (the stack tests' own Debian
# image) needs no package index.
RUN (dpkg -s ca-certificates >/dev/null 2>&1 || { apt-get update \
   && apt-get install -y --no-install-recommends ca-certificates \
   && rm -rf /var/lib/apt/lists/*; }) \
 && useradd --system --uid 10001 --user-group --home-dir /nonexistent --shell /usr/sbin/nologin rookery \
 && mkdir -p /data /uploads \
 && chown rookery:rookery /data /uploads
USER 10001:10001
ENV HOST=0.0.0.0 \
    PORT=8080 \
    DATA_DIR=/data \
    UPLOAD_DIR=/uploads \
    RUST_LOG=info
EXPOSE 8080
VOLUME ["/data", "/uploads"]
# No curl in the image: bash's /dev/tcp is enough to ask /healthz.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${PORT} && printf 'GET /healthz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
# SIGTERM drains: clients are told to reconnect elsewhere before the exit.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/rookery"]

# A release binary built outside Docker (same glibc: Debian bookworm).
FROM runtime AS prebuilt
COPY rookery /usr/local/bin/rookery

FROM rust:1-slim-bookworm AS build
WORKDIR /src
# Dependencies first, in their own layer: a source change does not rebuild them.
COPY Cargo.toml Cargo.lock ./
# The workspace's other member (the load generator) is not built here, but
# its manifest must exist for the workspace to load.
COPY bench/Cargo.toml bench/Cargo.toml
RUN mkdir -p src bench/src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
 && echo 'fn main() {}' > bench/src/main.rs \
 && cargo build --release --locked \
 && rm -rf src
COPY src src
COPY templates templates
COPY static static
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin rookery

# The default: the runtime with the binary compiled above.
FROM runtime
COPY --from=build /src/target/release/rookery /usr/local/bin/rookery
