#!/usr/bin/env bash
# Quick start: provision nats-server if needed, build fleetsim, run the quickstart
# scenario against fleetsim's own embedded broker. Extra arguments go to `fleetsim run`
# (for example `./scripts/demo.sh --agents 200`).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# Where cargo puts the release build (CARGO_TARGET_DIR if set).
release="${CARGO_TARGET_DIR:-$root/target}/release"
NATS_SERVER_BIN="$(./scripts/provision-nats.sh | tail -n 1)"
export NATS_SERVER_BIN
cargo build --release --quiet
exec "$release"/fleetsim run scenarios/quickstart.toml "$@"
