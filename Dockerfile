# syntax=docker/dockerfile:1
# shopscribe's image. Stages:
#   base      the runtime filesystem: Debian slim, CA certificates, a non-root user, the example
#             projects, the project the container runs (PROJECT), the HEALTHCHECK, labels
#   prebuilt  base + a binary built outside Docker (CI: `--target prebuilt`, PREBUILT=folder)
#   deps      the dependency layer (cargo-chef's idea without the tool): the real Cargo.toml and
#             Cargo.lock with stub sources, so every dependency is compiled once and the layer is
#             reused until Cargo.toml / Cargo.lock change
#   build     the real sources on top of that, `cargo build --release --locked`
#   stripped  the binary without its DWARF line tables (STRIP=true, the default)
#   runtime   base + the binary from `build` (the default target; what deploy/build_and_run.sh
#             builds and deploy/push_ecr.sh pushes)
# Works with BuildKit and with the classic builder (which builds only the stages up to
# --target: `--target prebuilt` never needs a Rust toolchain).

ARG RUST_IMAGE=rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUNTIME_IMAGE} AS base
# The project folder (shopscribe.toml, sql/, prompts/, schemas/) the container works in.
ARG PROJECT=examples/domains
# CA certificates (S3, the LLM provider, Telegram, PostgreSQL over TLS). Installed from Debian
# unless the base already has them (the locally made base of deploy/local_base_images.sh does,
# so an offline build works); nothing else is added.
RUN set -eux; \
    if [ ! -s /etc/ssl/certs/ca-certificates.crt ]; then \
      apt-get update; \
      apt-get install -y --no-install-recommends ca-certificates; \
      rm -rf /var/lib/apt/lists/*; \
    fi; \
    groupadd --system --gid 10001 shopscribe; \
    useradd --system --uid 10001 --gid 10001 --home-dir /srv/shopscribe --no-create-home \
      --shell /usr/sbin/nologin shopscribe; \
    mkdir -p /srv/shopscribe; \
    chown 10001:10001 /srv/shopscribe
COPY examples /opt/shopscribe/examples
COPY --chown=10001:10001 ${PROJECT} /srv/shopscribe
COPY deploy/docker/healthcheck /usr/local/bin/shopscribe-healthcheck
# Declared here, after the steps above, so that a new revision does not rebuild them.
ARG REVISION=unknown
ARG CREATED=unknown
ARG VERSION=0.1.0
ARG RUNTIME_IMAGE
LABEL org.opencontainers.image.title="shopscribe" \
      org.opencontainers.image.description="Turns e-commerce performance data into published, SEO-ready text and keeps it current" \
      org.opencontainers.image.source="https://github.com/shopscribe/shopscribe" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="${RUNTIME_IMAGE}"
ENV SHOPSCRIBE_PROJECT=/srv/shopscribe
WORKDIR /srv/shopscribe
USER 10001:10001
EXPOSE 8080
# For `serve` (any --bind on port 8080, or SHOPSCRIBE_HEALTHCHECK_PORT): GET /healthz must
# answer 200. Containers running another command (run, worker, watch, demo) report healthy.
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
  CMD ["/usr/local/bin/shopscribe-healthcheck"]
ENTRYPOINT ["shopscribe"]
CMD ["--help"]

FROM base AS prebuilt
# PREBUILT: a folder of the build context holding `shopscribe`, a binary built outside Docker
# on Debian 12 (glibc 2.36) or older. Its default, an empty folder, only keeps this stage
# buildable by the classic builder, which builds every stage before the target: for the full
# build this stage is built and left unused.
ARG PREBUILT=deploy/docker/prebuilt
COPY ${PREBUILT}/ /usr/local/bin/

FROM ${RUST_IMAGE} AS deps
WORKDIR /build
COPY Cargo.toml Cargo.lock ./
RUN set -eux; \
    mkdir src; \
    echo 'fn main() {}' > src/main.rs; \
    : > src/lib.rs; \
    cargo build --release --locked --bin shopscribe; \
    rm -rf src target/release/.fingerprint/shopscribe-* target/release/deps/shopscribe-* \
      target/release/deps/libshopscribe-* target/release/shopscribe*

FROM deps AS build
COPY . .
# COPY keeps the files' times, which can be older than the stub build: touch the crate roots so
# cargo compiles the real sources.
RUN set -eux; \
    touch src/main.rs src/lib.rs; \
    cargo build --release --locked --bin shopscribe; \
    cp target/release/shopscribe /usr/local/bin/shopscribe; \
    /usr/local/bin/shopscribe --version

# The release profile keeps line tables (debug = "line-tables-only", 180 MB): the image drops
# them (44 MB), keeping the symbols, so a backtrace still names its functions. STRIP=false keeps
# them. A stage of its own, so that toggling it never recompiles.
FROM build AS stripped
ARG STRIP=true
RUN set -eux; \
    if [ "$STRIP" = true ]; then strip --strip-debug /usr/local/bin/shopscribe; fi; \
    /usr/local/bin/shopscribe --version

FROM base AS runtime
COPY --from=stripped /usr/local/bin/shopscribe /usr/local/bin/shopscribe
