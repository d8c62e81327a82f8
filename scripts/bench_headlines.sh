#!/usr/bin/env bash
# Every headline figure of BENCHMARKS.md in one run on this machine, each with its anchor where
# one exists, the load average printed before each program: the features stage beside Polars
# (scripts/bench_features_polars.sh), the near-duplicate gate beside exact all-pairs Jaccard (in
# the program), the cached GETs of the API beside wrk (when installed), the ingest, the
# PostgreSQL queue and workers, the LLM engine against its theoretical minimum (printed by the
# program) and the demo. Needs the machine's PostgreSQL at $DATABASE_URL (default: local).
# Takes ~10 minutes after the build; run it on a quiet machine and copy the output into
# BENCHMARKS.md.
set -euo pipefail
case "${1:-}" in
  -h | --help)
    echo "Usage: scripts/bench_headlines.sh [--skip-llm]   (output on stdout; ~10 min)"
    exit 0
    ;;
esac
skip_llm=false
[ "${1:-}" = "--skip-llm" ] && skip_llm=true

cd "$(dirname "$0")/.."
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
target="${CARGO_TARGET_DIR:-target}"
load() { cut -d' ' -f1-3 /proc/loadavg; }
step() { echo; echo "== $* (load $(load), $(date -u +%T) UTC)"; }

echo "== $(date -u +%F) at $(git rev-parse --short HEAD), $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem/{print $2}') GiB, $(rustc --version)"
cargo build --release --locked --quiet --features bench --bins
bin="$target/release"

step "features stage beside Polars"
scripts/bench_features_polars.sh 1000000 300 5 2

step "near-duplicate gate (anchor: exact all-pairs Jaccard on 3,000 pages, in the program)"
"$bin/bench_similarity" 100000 3

step "ingest, SQLite"
"$bin/bench_ingest" sqlite 1000000
step "ingest, PostgreSQL"
"$bin/bench_ingest" postgres 1000000

for mode in enqueue claims workers stream; do
  step "PostgreSQL: bench_pg $mode"
  "$bin/bench_pg" "$mode"
done

step "API: cached GETs (bench_serve 10 64 2000)"
if command -v wrk >/dev/null; then
  log="$(mktemp)"
  "$bin/bench_serve" 10 64 2000 --hold >"$log" 2>&1 &
  server=$!
  for _ in $(seq 1 120); do grep -q '^  wrk ' "$log" && break; sleep 1; done
  grep -v '^  wrk \|server still up' "$log"
  step "anchor: wrk against the same server, one key"
  eval "$(grep '^  wrk ' "$log")"
  kill "$server"
  rm -f "$log"
else
  "$bin/bench_serve" 10 64 2000
  echo "(wrk is not installed: apt-get install wrk for the anchor)"
fi

if ! $skip_llm; then
  for scenario in limit burst client; do
    step "LLM engine: bench_llm $scenario"
    "$bin/bench_llm" "$scenario"
  done
fi

step "demo (500 domains), fresh folder then again unchanged"
demo="$(mktemp -d)"
/usr/bin/time -f "%e s wall, %M KB peak RSS" "$bin/shopscribe" demo --dir "$demo/d" 2>&1 | tail -3
/usr/bin/time -f "%e s wall, %M KB peak RSS" "$bin/shopscribe" demo --dir "$demo/d" 2>&1 | tail -3
rm -rf "$demo"
echo; echo "== done $(date -u +%T) UTC (load $(load))"
