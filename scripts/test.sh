#!/usr/bin/env bash
# The whole test suite: provision nats-server if needed, then lint and test.
# Tests start their own nats-server processes on loopback (free ports, temp dirs).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
NATS_SERVER_BIN="$(./scripts/provision-nats.sh | tail -n 1)"
export NATS_SERVER_BIN
echo "using nats-server: $NATS_SERVER_BIN ($("$NATS_SERVER_BIN" --version))"

cargo fmt --all -- --check
cargo clippy --all-targets --quiet -- -D warnings
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --no-fail-fast "$@"
else
  cargo test --no-fail-fast "$@"
fi
