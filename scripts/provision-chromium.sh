#!/usr/bin/env bash
# Headless Chromium for the report's rendering test (tests/report.rs) and
# scripts/report-screenshot.sh. Uses $CHROMIUM_BIN or a chromium on PATH; otherwise
# installs Debian's `chromium` package (and a font, so screenshots have text) with
# apt-get, as root or through passwordless sudo. Prints the binary's path on its last
# line; exits non-zero, saying why, when it cannot.
set -euo pipefail

found() {
  echo "$1"
  exit 0
}
if [ -n "${CHROMIUM_BIN:-}" ] && [ -x "$CHROMIUM_BIN" ]; then found "$CHROMIUM_BIN"; fi
if bin="$(command -v chromium)"; then found "$bin"; fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "provision-chromium: no chromium on PATH and no apt-get to install it; install Chromium and set CHROMIUM_BIN" >&2
  exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  sudo=(sudo -n)
else
  echo "provision-chromium: no chromium on PATH; installing it needs root or passwordless sudo" >&2
  exit 1
fi

echo "provision-chromium: installing chromium with apt-get ..." >&2
export DEBIAN_FRONTEND=noninteractive
if ! "${sudo[@]}" apt-get update -qq >&2 ||
  ! "${sudo[@]}" apt-get install -y -qq chromium fonts-liberation >&2; then
  echo "provision-chromium: apt-get could not install chromium" >&2
  exit 1
fi
if bin="$(command -v chromium)"; then found "$bin"; fi
echo "provision-chromium: chromium installed but not on PATH" >&2
exit 1
