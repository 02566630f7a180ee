#!/usr/bin/env bash
# Renders a sweep report in headless Chromium and checks that every plot
# loaded and the run table is filled; leaves a screenshot for people.
# Usage: scripts/check_report.sh [SCREENSHOT.png] [AGENTSCHED]   (needs the `chromium` package)
# Without AGENTSCHED it builds the release binary first. CI passes the one
# `cargo test --release` built: a plain `cargo build` after it is not fresh
# (dev-dependencies unify other features into shared crates), and rebuilding
# took 4 of CI's minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
shot=${1:-target/report-screenshot.png}
bin=${2:-}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ -z "$bin" ]; then
  cargo build --release --quiet
  bin=./target/release/agentsched
fi
"$bin" sweep --config scenarios/smoke.json --out-root "$work" --quiet --report

page="file://$work/smoke/report/index.html"
chrome=(chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run
        --disable-background-networking --disable-component-update --disable-sync
        --user-data-dir="$work/profile")
dom=$("${chrome[@]}" --virtual-time-budget=5000 --dump-dom "$page" 2>/dev/null)
loaded=$(grep -o 'data-plots-loaded="[0-9]*"' <<<"$dom" | grep -o '[0-9]*' || true)
total=$(grep -o 'data-plots-total="[0-9]*"' <<<"$dom" | grep -o '[0-9]*' || true)
rows=$(grep -o 'data-run-rows="[0-9]*"' <<<"$dom" | grep -o '[0-9]*' || true)
echo "report: plots loaded ${loaded:-?}/${total:-?}, run rows ${rows:-?}"
[ -n "$total" ] && [ "$total" -ge 4 ] && [ "$loaded" = "$total" ] || { echo "FAIL: plots did not all render"; exit 1; }
[ "$rows" = 8 ] || { echo "FAIL: expected 8 run rows in the table"; exit 1; }

mkdir -p "$(dirname "$shot")"
"${chrome[@]}" --window-size=1400,2400 --screenshot="$shot" "$page" 2>/dev/null
size=$(stat -c %s "$shot")
[ "$size" -gt 50000 ] || { echo "FAIL: screenshot $shot is only $size bytes"; exit 1; }
echo "report check passed; screenshot: $shot ($size bytes)"
