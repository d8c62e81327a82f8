#!/usr/bin/env bash
# The features benchmark beside its anchor, in one run on the same machine and the same data:
# shopscribe's features stage (bench_features) and the same features in Polars
# (scripts/bench_features_polars.py), alternated, after the Rust benchmark exported its data and
# results once. Polars is installed in a venv of its own ($SHOPSCRIBE_VENV, default
# ~/.cache/shopscribe-venv), created on the first run. Figures go to BENCHMARKS.md.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/bench_features_polars.sh [ENTITIES] [GROUPS] [RUNS] [ROUNDS]

ENTITIES x 10 metrics in GROUPS groups (default 1000000 300); each program times RUNS runs
(default 5) per round, ROUNDS rounds alternated (default 2). Prints the machine's load before
each program and the Polars check against shopscribe's own results.
EOF
}
case "${1:-}" in -h | --help) usage; exit 0 ;; esac

cd "$(dirname "$0")/.."
entities="${1:-1000000}" groups="${2:-300}" runs="${3:-5}" rounds="${4:-2}"
venv="${SHOPSCRIBE_VENV:-$HOME/.cache/shopscribe-venv}"

if ! "$venv/bin/python" -c 'import polars' 2>/dev/null; then
  echo "bench: creating $venv with polars"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'polars>=1.30,<3'
fi

cargo build --release --locked --quiet --features bench --bin bench_features
bin="${CARGO_TARGET_DIR:-target}/release/bench_features"
data="$(mktemp -d)"
trap 'rm -rf "$data"' EXIT

echo "== $(date -u +%FT%TZ), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
echo "== exporting the data and shopscribe's results (one run)"
"$bin" "$entities" "$groups" 1 --export "$data" | grep -v '^features:'
for round in $(seq 1 "$rounds"); do
  echo "== round $round: shopscribe (load $(cut -d' ' -f1-3 /proc/loadavg))"
  "$bin" "$entities" "$groups" "$runs"
  echo "== round $round: polars (load $(cut -d' ' -f1-3 /proc/loadavg))"
  "$venv/bin/python" scripts/bench_features_polars.py "$data" "$runs"
done
