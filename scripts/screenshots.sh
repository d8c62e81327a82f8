#!/usr/bin/env bash
# Screenshots of the demo site as `shopscribe demo` publishes it: a domain page, a category hub
# and a product page, taken with Debian's headless Chromium. The README shows them.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/screenshots.sh [OUT_DIR]

Runs `shopscribe demo` into a temporary folder and takes screenshots (PNG, 1100 px wide) of
  domain.png   a domain page
  hub.png      a category hub of the domain job
  product.png  a product page
into OUT_DIR (default docs/screenshots).

Needs chromium (Debian: apt-get install chromium). The binary is $SHOPSCRIBE_BIN, or the
release build (cargo build --release) if unset.
EOF
}

case "${1:-}" in -h | --help) usage; exit 0 ;; esac

cd "$(dirname "$0")/.."
out="${1:-docs/screenshots}"
mkdir -p "$out"
command -v chromium >/dev/null || { echo "screenshots: chromium is not installed (apt-get install chromium)" >&2; exit 1; }

bin="${SHOPSCRIBE_BIN:-}"
if [ -z "$bin" ]; then
  cargo build --release --locked --quiet
  bin="${CARGO_TARGET_DIR:-target}/release/shopscribe"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$bin" demo --dir "$work/demo" >/dev/null 2>&1
site="$work/demo/site"

# The first domain page that belongs to a category (it shows the breadcrumb to its hub), the
# hub it links to, and the first product page.
domain="$(grep -l 'href="groups' "$site"/domain_summaries/*.html | grep -v '/index.html$' | sort | awk 'NR==1')"
hub="$(find "$site/domain_summaries/groups" -name '*.html' | sort | awk 'NR==1')"
product="$(find "$site/product_insights" -maxdepth 1 -name '*.html' ! -name index.html | sort | awk 'NR==1')"
for page in "$domain" "$hub" "$product"; do
  [ -n "$page" ] || { echo "screenshots: the demo site lacks a domain page, hub or product page" >&2; exit 1; }
done

shoot() {
  chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --force-device-scale-factor=1 \
    --window-size=1100,"$3" --screenshot="$2" "file://$1" >/dev/null 2>&1
  echo "screenshots: $2 ← ${1#"$site"/}"
}
shoot "$domain" "$out/domain.png" 1500
shoot "$hub" "$out/hub.png" 1100
shoot "$product" "$out/product.png" 1300
