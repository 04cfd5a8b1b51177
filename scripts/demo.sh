#!/usr/bin/env bash
# Quick start: provision nats-server if needed, build fleetsim, run the quickstart
# scenario against fleetsim's own embedded broker. Extra arguments go to `fleetsim run`
# (for example `./scripts/demo.sh --agents 200`).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
NATS_SERVER_BIN="$(./scripts/provision-nats.sh | tail -n 1)"
export NATS_SERVER_BIN
cargo build --release --quiet
exec ./target/release/fleetsim run scenarios/quickstart.toml "$@"
