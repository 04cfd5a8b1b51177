#!/usr/bin/env bash
# (Re)generates report.html for a run directory and screenshots it with headless
# Chromium: scripts/report-screenshot.sh RUN_DIR [OUT.png] (default RUN_DIR/report.png).
# Prints the screenshot's path.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 RUN_DIR [OUT.png]" >&2
  exit 2
fi
run_dir="$(cd "$1" && pwd)"
out="${2:-$run_dir/report.png}"
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
mkdir -p "$(dirname "$out")"

chromium="$("$root/scripts/provision-chromium.sh" | tail -n 1)"
report="$(cd "$root" && cargo run --quiet --release -- report "$run_dir" | tail -n 1)"

profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
# Without the background-networking flags Chromium waits on a network it cannot reach.
timeout -k 5 60 "$chromium" --headless --no-sandbox --disable-gpu --disable-quic \
  --no-first-run --disable-background-networking --disable-component-update \
  --disable-sync --hide-scrollbars --user-data-dir="$profile" \
  --window-size=1400,3000 --screenshot="$out" "file://$report" >/dev/null 2>&1
if [ ! -s "$out" ]; then
  echo "report-screenshot: chromium wrote no screenshot to $out" >&2
  exit 1
fi
echo "$out"
