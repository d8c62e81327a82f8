#!/usr/bin/env bash
# Makes the base images the Dockerfile names, locally, for machines that cannot pull them from a
# registry (the development machines and .ci/run): no registry is contacted, only the Debian
# package mirror (debootstrap) once.
set -euo pipefail
# DOCKER: the docker client to run (default: `docker` on PATH), e.g. the daemon's own version.
docker() { command "${DOCKER:-docker}" "$@"; }

usage() {
  cat <<'USAGE'
Usage: deploy/local_base_images.sh [--rust] [--cache DIR] [--mirror URL]

Provides, in the local Docker daemon:
  debian:bookworm-slim      a Debian 12 root filesystem made with `debootstrap --variant=minbase
                            --include=ca-certificates`, trimmed (no docs, man pages, locales),
                            kept as DIR/debian-bookworm-slim.tar.gz and imported from there
                            on later calls (no download)
  rust:1.95-slim-bookworm   (with --rust) that base + gcc and libc6-dev from Debian + this
                            machine's rustup toolchain (rustc, cargo, the x86_64 std; no docs),
                            for the Dockerfile's build stages

An image that already exists is left alone. Needs root (debootstrap) and a running daemon.

Options:
  --rust         also make the Rust build image (for deploy/build_and_run.sh)
  --cache DIR    where the root filesystem tarball is kept
                 (default: $HOME/.cache/shopscribe-docker)
  --mirror URL   Debian mirror (default: http://deb.debian.org/debian)
  -h, --help     this help
USAGE
}

cache="${HOME}/.cache/shopscribe-docker"
mirror="http://deb.debian.org/debian"
rust=false
while [ $# -gt 0 ]; do
  case "$1" in
    --rust) rust=true ;;
    --cache) cache="${2:?--cache needs a folder}"; shift ;;
    --mirror) mirror="${2:?--mirror needs a URL}"; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "local_base_images: unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

base="debian:bookworm-slim"
rust_image="rust:1.95-slim-bookworm"
mkdir -p "$cache"
tarball="$cache/debian-bookworm-slim.tar.gz"

have() { docker image inspect "$1" >/dev/null 2>&1; }

if ! have "$base"; then
  if [ ! -s "$tarball" ]; then
    command -v debootstrap >/dev/null || {
      echo "local_base_images: debootstrap is missing (apt-get install debootstrap)" >&2; exit 1; }
    root="$(mktemp -d)"
    # mktemp makes its folder 0700: as the image's root it would lock every non-root user out.
    chmod 0755 "$root"
    trap 'rm -rf "$root"' EXIT
    echo "local_base_images: debootstrap bookworm from $mirror"
    debootstrap --variant=minbase --include=ca-certificates bookworm "$root" "$mirror" >/dev/null
    # What Debian's own slim images leave out.
    rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
      "$root"/usr/share/locale/* "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
      "$root"/var/log/*.log "$root"/var/cache/debconf/*-old
    tar -C "$root" --numeric-owner -czf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$root"
    trap - EXIT
  fi
  echo "local_base_images: importing $tarball as $base"
  # As Debian's published image does: a search path, and a shell to run by default.
  docker import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' "$tarball" "$base" >/dev/null
fi

if $rust && ! have "$rust_image"; then
  command -v rustc >/dev/null || { echo "local_base_images: no Rust toolchain on this machine" >&2; exit 1; }
  sysroot="$(rustc --print sysroot)"
  ctx="$(mktemp -d)"
  trap 'rm -rf "$ctx"' EXIT
  mkdir -p "$ctx/rust/lib/rustlib/x86_64-unknown-linux-gnu"
  cp -a "$sysroot/bin" "$sysroot/libexec" "$ctx/rust/" 2>/dev/null || cp -a "$sysroot/bin" "$ctx/rust/"
  find "$sysroot/lib" -maxdepth 1 -type f -exec cp -a {} "$ctx/rust/lib/" \;
  cp -a "$sysroot/lib/rustlib/x86_64-unknown-linux-gnu/lib" "$ctx/rust/lib/rustlib/x86_64-unknown-linux-gnu/"
  if [ -d "$sysroot/lib/rustlib/x86_64-unknown-linux-gnu/bin" ]; then
    cp -a "$sysroot/lib/rustlib/x86_64-unknown-linux-gnu/bin" "$ctx/rust/lib/rustlib/x86_64-unknown-linux-gnu/"
  fi
  rm -f "$ctx"/rust/bin/rustdoc "$ctx"/rust/bin/rust-gdb* "$ctx"/rust/bin/rust-lldb
  # This machine's extra certificate authorities (a TLS-inspecting egress proxy, say), so that
  # cargo in the build stages reaches crates.io as the host does. Only the build image gets
  # them; the runtime image keeps Debian's bundle.
  mkdir -p "$ctx/ca"
  find /usr/local/share/ca-certificates -maxdepth 1 -name '*.crt' -exec cp {} "$ctx/ca/" \; 2>/dev/null || true
  cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM debian:bookworm-slim
RUN set -eux; apt-get update; \
    apt-get install -y --no-install-recommends gcc libc6-dev; \
    rm -rf /var/lib/apt/lists/*
COPY ca/ /usr/local/share/ca-certificates/
RUN update-ca-certificates
COPY rust /usr/local/rust
ENV PATH=/usr/local/rust/bin:/usr/local/cargo/bin:$PATH CARGO_HOME=/usr/local/cargo
RUN rustc --version && cargo --version
DOCKERFILE
  echo "local_base_images: building $rust_image from $sysroot ($(rustc --version))"
  # The build reaches the Debian mirror for gcc: host network (the daemon may have no bridge).
  docker build --network host -t "$rust_image" "$ctx"
  rm -rf "$ctx"
  trap - EXIT
fi
echo "local_base_images: ok"
