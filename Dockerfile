# syntax=docker/dockerfile:1
# The Eddy server image: built from this repository with the locked dependencies, run as a
# non-root user on a distroless glibc base. The one binary is both the server (`eddy serve`,
# the entrypoint) and its exec probe (`eddy health`). docs/calico.md shows how it replaces
# Goldmane; deploy/ holds the Kubernetes manifests that use it.
#
# Build:  docker build --build-arg SOURCE_DATE_EPOCH=$(git log -1 --format=%ct) -t eddy .
#
# The base images are pinned by exact tag. For a byte-for-byte reproducible build, pin them by
# digest as well (`--build-arg RUST_IMAGE=rust:1.88.0-slim-bookworm@sha256:...`).

ARG RUST_VERSION=1.88.0
ARG RUST_IMAGE=docker.io/library/rust:${RUST_VERSION}-slim-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS build
# Build scripts and the image exporter read it; 0 unless the build passes the commit's time.
ARG SOURCE_DATE_EPOCH=0
ENV SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH} \
    CARGO_INCREMENTAL=0 \
    CARGO_TERM_COLOR=never \
    CARGO_PROFILE_RELEASE_DEBUG=0 \
    CARGO_PROFILE_RELEASE_STRIP=symbols
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin eddy \
    && install -D -m 0755 target/release/eddy /out/usr/local/bin/eddy \
    && install -d -m 0750 /out/var/lib/eddy

FROM ${RUNTIME_IMAGE} AS runtime
COPY --from=build /out/usr/local/bin/eddy /usr/local/bin/eddy
COPY --from=build --chown=65532:65532 /out/var/lib/eddy /var/lib/eddy
# The distroless `nonroot` user; Kubernetes' runAsNonRoot needs it numeric.
USER 65532:65532
# Inside a container every listener faces the pod network; the emitter keeps its progress in
# /var/lib/eddy (a volume in the manifests, since the root file system is read-only there).
ENV EDDY_LISTEN=0.0.0.0:7443 \
    EDDY_HEALTH_ADDRESS=0.0.0.0 \
    HEALTH_PORT=8080 \
    EDDY_PROMETHEUS_ADDRESS=0.0.0.0 \
    PROMETHEUS_PORT=9094 \
    EDDY_EMITTER_STATE=/var/lib/eddy/emitter-state.json \
    EDDY_LOG_FORMAT=json
# gRPC (Goldmane's port), the health probes, Prometheus /metrics.
EXPOSE 7443 8080 9094
HEALTHCHECK --interval=10s --timeout=6s CMD ["/usr/local/bin/eddy", "health", "--type", "liveness"]
ENTRYPOINT ["/usr/local/bin/eddy", "serve"]
