# syntax=docker/dockerfile:1.7
#
# One production image for every process of the Slack gateway (the default target,
# `runtime`, last in this file):
#   spritz-gateway serve | worker | dlq   (ingress, workers, parking-lot tool)
#   spritz-notifier                       (Spritz lifecycle watcher)
# The default command is the ingress; compose and the Helm chart pick the role.
# The sandbox fakes (spritz-sandbox) are not in it: they only ship in the `dev`
# target, which the compose dev stack's sandbox service builds.
#
#   docker build -t spritz-gateway:dev .                        # production image
#   docker build --target dev -t spritz-gateway-sandbox:dev .   # + spritz-sandbox

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
    cargo build --release --locked -p spritz-gateway -p spritz-notifier \
    && mkdir -p /out \
    && cp target/release/spritz-gateway target/release/spritz-notifier /out/

# ---- build-dev: the sandbox fakes, only for the dev target ----------------------
FROM build AS build-dev
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p spritz-sandbox \
    && mkdir -p /out-dev \
    && cp target/release/spritz-sandbox /out-dev/

# ---- base: slim Debian, CA roots, bash for the probe, no compiler ---------------
FROM debian:${DEBIAN_RELEASE}-slim AS base
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

# ---- dev: the production image plus spritz-sandbox (compose dev stack only) -----
FROM base AS dev
COPY --from=build-dev /out-dev/spritz-sandbox /usr/local/bin/spritz-sandbox

# ---- runtime (default target): the production image, no sandbox -----------------
FROM base AS runtime
