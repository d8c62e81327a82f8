#!/usr/bin/env bash
# Fails when a document names a repository path that does not exist, so the architecture notes
# cannot silently go on describing files that were moved or removed.
#
#   scripts/check_doc_paths.sh [FILE.md …]     # default: docs/ARCHITECTURE.md docs/DECISIONS.md
#
# A path is an inline code span (`…`, fenced blocks skipped) that is a root file of the
# repository (Cargo.toml, README.md, …) or is made only of path characters with at least one
# `/`: not absolute, not a URL, not starting with a placeholder in capitals (`JOB/SLUG.json`).
# `*` globs must match something; one `{a,b}` group is expanded. Anything else in backticks
# (code, commands, `/v1/runs`) is not a path. Paths are relative to the repository root.
set -euo pipefail
cd "$(dirname "$0")/.."

[ $# -gt 0 ] || set -- docs/ARCHITECTURE.md docs/DECISIONS.md

# The code spans of a Markdown file, one per line (spans may wrap; fenced blocks are left out).
code_spans() {
  perl -0777 -ne 's/^```.*?^```//gms; while (/`([^`]+)`/g) { my $s = $1; $s =~ s/\s+/ /g; print "$s\n" }' "$1"
}

is_path() {
  local t=$1
  case "$t" in
    Cargo.toml | Cargo.lock | Dockerfile | README.md | BENCHMARKS.md | rustfmt.toml) return 0 ;;
  esac
  [[ $t == */* ]] || return 1
  [[ $t =~ ^[A-Za-z0-9_.*{},-]+(/[A-Za-z0-9_.*{},-]+)*/?$ ]] || return 1
  [[ ${t%%/*} =~ ^[A-Z_]+$ ]] && return 1
  return 0
}

# Every expansion of a path: one `{a,b}` group expanded, then globs matched.
exists() {
  local t=$1
  if [[ $t =~ ^(.*)\{([^}]*)\}(.*)$ ]]; then
    local pre=${BASH_REMATCH[1]} alts=${BASH_REMATCH[2]} post=${BASH_REMATCH[3]} a
    IFS=, read -ra parts <<<"$alts"
    for a in "${parts[@]}"; do exists "$pre$a$post" || return 1; done
    return 0
  fi
  if [[ $t == *'*'* ]]; then
    compgen -G "$t" >/dev/null
  else
    [ -e "$t" ]
  fi
}

missing=0
checked=0
for doc in "$@"; do
  [ -f "$doc" ] || { echo "check_doc_paths: no such document: $doc" >&2; missing=$((missing + 1)); continue; }
  while IFS= read -r span; do
    is_path "$span" || continue
    checked=$((checked + 1))
    if ! exists "$span"; then
      echo "check_doc_paths: $doc names \`$span\`, which does not exist" >&2
      missing=$((missing + 1))
    fi
  done < <(code_spans "$doc" | sort -u)
done

if [ "$missing" -gt 0 ]; then
  echo "check_doc_paths: $missing missing path(s)" >&2
  exit 1
fi
echo "check_doc_paths: $checked path(s) named in $*, all present"
