#!/usr/bin/env bash
# Reproduces the async-nats 0.48 / 0.50 / 0.51 watch-recreation experiment and writes
# result.txt beside this script. Needs cargo and a nats-server 2.15.x (found the
# way fleetsim finds it: $NATS_SERVER_BIN, .tools/bin, PATH, else installed).
# Takes about 25 minutes: a watch that is not recreated is waited for 45 s.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
server="$("$root/scripts/provision-nats.sh" | tail -1)"
cargo build --quiet --manifest-path "$here/Cargo.toml"
target="${CARGO_TARGET_DIR:-$here/target}"
bin="$target/debug/watch-recreate"
out="$here/result.txt"
{
  echo "# watch-recreate: JetStream API requests of one KV watch across a broker restart"
  echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ)  $("$server" --version)  (experiments/watch-recreate/run.sh)"
  echo "# cases: delivered = watch(\"a\") that delivered a1; never = watch(\"b\") (b0..b2 written before"
  echo "#   it opened) never delivered; unpolled = watch(\"c\") delivered c1, then not polled from the"
  echo "#   kill until 6 s after it; young = watch(\"d\") opened 1 s before the kill, never delivered."
  echo "#   After the restart a2, b3, c2, d1 are put 3 s after the broker listens again."
  echo
  "$bin" "$server" probe
  "$bin" "$server" kill all 1
  "$bin" "$server" kill all 15
  "$bin" "$server" kill all 60
  "$bin" "$server" term all 1
} > "$out"
echo "wrote $out"
