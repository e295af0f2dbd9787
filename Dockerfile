# syntax=docker/dockerfile:1
#
# authtrail: audit-logging reverse-proxy sidecar.
#
#   docker build -t authtrail .
#   docker run --rm -p 8080:8080 -p 9090:9090 \
#     -v "$PWD/authtrail.yaml:/etc/authtrail/authtrail.yaml:ro" \
#     -v authtrail-data:/var/lib/authtrail authtrail
#
# Needs BuildKit (the default builder since Docker 23) for the cache mounts below.

# Base images are pinned by digest, so a rebuild starts from the same bytes; bump tag and
# digest together. Where the digests come from: debian:bookworm-slim's is its multi-platform
# index as docker-library/repo-info recorded it (the 2026-08-03 build); rust:1.95.0-bookworm's
# is the digest public Dockerfiles pin for that tag (repo-info no longer lists 1.95.0). Check
# both before a release: `docker buildx imagetools inspect rust:1.95.0-bookworm` prints the
# index digest a tag points at.
#
# The toolchain CI builds and tests with (.ci/run prints it).
FROM rust:1.95.0-bookworm@sha256:6258907abe69656e41cd992e0b705cdcfabcbbe3db374f92ed2d47121282d4a1 AS builder
WORKDIR /src
# No database during the build: sqlx macros, if ever used, must read the checked-in `.sqlx/`.
ENV SQLX_OFFLINE=true
COPY . .
# The cache mounts keep the crate registry and target/ between builds, so a source change does
# not recompile every dependency. target/ lives only in the cache, so the binary is copied out
# in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin authtrail \
 && install -D -m 0755 target/release/authtrail /out/authtrail \
 && objcopy --only-keep-debug /out/authtrail /out/authtrail.debug \
 && objcopy --strip-all --add-gnu-debuglink=/out/authtrail.debug /out/authtrail

# The split debug info, for symbolising a crash report of the shipped binary:
#   docker build --target debug-info --output type=local,dest=. .
FROM scratch AS debug-info
COPY --from=builder /out/authtrail.debug /

# debian:bookworm-slim: 28.2 MB compressed for linux/amd64 (docker-library's record of this
# digest); with ca-certificates and the stripped binary (26 MB, 10 MB gzipped) the image is
# about 42 MB compressed (docs/operations.md#the-image).
FROM debian:bookworm-slim@sha256:abd67ffcfa541b485a3dff59865ab629aa048a6c613e639d36e7456b0b229241
LABEL org.opencontainers.image.title="authtrail" \
      org.opencontainers.image.description="Audit-logging reverse-proxy sidecar for auth servers" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="0.1.0"
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# A fixed numeric uid/gid so Kubernetes' runAsNonRoot can verify it without a passwd lookup.
RUN groupadd --system --gid 10001 authtrail \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
      --home-dir /var/lib/authtrail --shell /usr/sbin/nologin authtrail \
 && mkdir -p /etc/authtrail /var/lib/authtrail \
 && chown 10001:10001 /var/lib/authtrail
COPY --from=builder /out/authtrail /usr/local/bin/authtrail

# /etc/authtrail/authtrail.yaml is mounted at run time (a ConfigMap in Kubernetes);
# the SQLite store lives in the data volume.
VOLUME ["/var/lib/authtrail"]
WORKDIR /var/lib/authtrail
USER 10001:10001
# 8080: client traffic to the auth server; 9090: admin listener (/healthz, /readyz).
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/authtrail"]
CMD ["serve", "--config", "/etc/authtrail/authtrail.yaml"]
