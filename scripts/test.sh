#!/usr/bin/env bash
# The whole test suite: provision nats-server if needed, then lint and test.
# Tests start their own nats-server processes on loopback (free ports, temp dirs).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
NATS_SERVER_BIN="$(./scripts/provision-nats.sh | tail -n 1)"
export NATS_SERVER_BIN
echo "using nats-server: $NATS_SERVER_BIN ($("$NATS_SERVER_BIN" --version))"

# Headless Chromium renders report.html in tests/report.rs. Where it can be provided
# (on PATH, or Debian's package installed as root) the test is required to run. Where it
# cannot: in CI (CI set) that is a failure here, before anything is built; on a
# developer's machine that test says loudly that it skipped the rendering check.
ci=false
case "${CI:-}" in "" | 0 | false | FALSE | False) ;; *) ci=true ;; esac
if CHROMIUM_BIN="$(./scripts/provision-chromium.sh | tail -n 1)" && [ -n "$CHROMIUM_BIN" ]; then
  export CHROMIUM_BIN FLEETSIM_REQUIRE_CHROMIUM=1
  echo "using chromium: $CHROMIUM_BIN"
elif [ "$ci" = true ]; then
  echo "error: CI is set but no chromium could be provided (see scripts/provision-chromium.sh's message above); tests/report.rs must render report.html in CI" >&2
  exit 1
else
  echo "warning: no chromium: tests/report.rs will skip rendering report.html (set CI=1 or FLEETSIM_REQUIRE_CHROMIUM=1 to make that a failure)" >&2
fi

cargo fmt --all -- --check
cargo clippy --all-targets --quiet -- -D warnings
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --no-fail-fast "$@"
else
  cargo test --no-fail-fast "$@"
fi
