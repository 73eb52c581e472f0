# syntax=docker/dockerfile:1.7
#
# One image for every process of the Slack gateway:
#   spritz-gateway serve | worker | dlq   (ingress, workers, parking-lot tool)
#   spritz-notifier                       (Spritz lifecycle watcher)
#   spritz-sandbox                        (fakes for the dev stack; not used in production)
# The default command is the ingress; compose and the Helm chart pick the role.
#
#   docker build -t spritz-gateway:dev .

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

# ---- build: the locked dependency set, release profile --------------------------
FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
WORKDIR /src
COPY . .
# Cache mounts keep the registry and target dir between builds; the binaries are
# copied out of the cache inside the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked \
        -p spritz-gateway -p spritz-notifier -p spritz-sandbox \
    && mkdir -p /out \
    && cp target/release/spritz-gateway target/release/spritz-notifier \
          target/release/spritz-sandbox /out/

# ---- runtime: slim Debian, CA roots, bash for the probe, no compiler ------------
FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# ca-certificates follows the Debian release's security updates rather than a pin.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 spritz \
    && useradd --system --uid 10001 --gid spritz --no-create-home \
         --home-dir /nonexistent --shell /usr/sbin/nologin spritz
COPY --from=build /out/ /usr/local/bin/
# Dependency-free HTTP/TCP probe for container health checks (no curl in the image).
COPY deploy/spritz-probe /usr/local/bin/spritz-probe
ENV SPRITZ_SLACK_GATEWAY_ADDR=:8080 \
    SPRITZ_METRICS_ADDR=:9464
USER 10001:10001
EXPOSE 8080 9464
# The processes write nothing to disk, so the root file system can be read-only.
ENTRYPOINT ["/usr/local/bin/spritz-gateway"]
CMD ["serve"]
