#!/usr/bin/env bash
# Builds shopscribe's image (the full multi-stage build of ./Dockerfile) and runs the demo in it.
set -euo pipefail
# DOCKER: the docker client to run (default: `docker` on PATH), e.g. the daemon's own version.
docker() { command "${DOCKER:-docker}" "$@"; }

usage() {
  cat <<'USAGE'
Usage: deploy/build_and_run.sh [options] [-- DEMO_ARGS...]

Builds the image from ./Dockerfile (default target `runtime`: the Rust build stages, then the
slim runtime), then runs `shopscribe demo --dir /tmp/demo` in a container as its non-root user,
without network, and prints the image's size and the build's duration.

Options:
  -t, --tag NAME          image name (default: shopscribe:local)
  --project DIR           project folder baked into the image as its working project
                          (default: examples/domains; relative to the repository)
  --build-network MODE    network of the build's RUN steps (cargo downloads the crates):
                          default, host, none (default: default; use host on a daemon
                          started with --bridge=none)
  --target STAGE          Dockerfile stage to build (default: runtime)
  --no-run                build only
  -h, --help              this help

Everything after `--` is passed to the demo (e.g. -- --domains 50).
The base images (rust:1.95-slim-bookworm, debian:bookworm-slim) come from the registry, or
from deploy/local_base_images.sh --rust where no registry is reachable.
USAGE
}

tag="shopscribe:local"
project="examples/domains"
network="default"
target="runtime"
run=true
demo_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    -t|--tag) tag="${2:?--tag needs a name}"; shift ;;
    --project) project="${2:?--project needs a folder}"; shift ;;
    --build-network) network="${2:?--build-network needs a mode}"; shift ;;
    --target) target="${2:?--target needs a stage}"; shift ;;
    --no-run) run=false ;;
    -h|--help) usage; exit 0 ;;
    --) shift; demo_args=("$@"); break ;;
    *) echo "build_and_run: unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

cd "$(dirname "$0")/.."
command -v docker >/dev/null || { echo "build_and_run: docker is not installed" >&2; exit 1; }
docker info >/dev/null 2>&1 || { echo "build_and_run: the Docker daemon does not answer" >&2; exit 1; }
[ -f "$project/shopscribe.toml" ] || { echo "build_and_run: $project has no shopscribe.toml" >&2; exit 2; }

revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
created="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
version="$(sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -1)"

echo "build_and_run: building $tag (target $target, revision $revision)"
start=$(date +%s)
docker build \
  --network "$network" \
  --target "$target" \
  --build-arg PROJECT="$project" \
  --build-arg REVISION="$revision" \
  --build-arg CREATED="$created" \
  --build-arg VERSION="$version" \
  -t "$tag" .
seconds=$(( $(date +%s) - start ))
bytes="$(docker image inspect --format '{{.Size}}' "$tag")"
echo "build_and_run: built $tag in ${seconds} s; image size $(( bytes / 1000000 )) MB ($bytes bytes)"

if $run; then
  echo "build_and_run: docker run --network none $tag demo --dir /tmp/demo ${demo_args[*]:-}"
  docker run --rm --network none "$tag" demo --dir /tmp/demo "${demo_args[@]}"
fi
