#!/usr/bin/env bash
# Benchmark: per-PC write fan-out under the two agent profiles, at 1,000 agents.
#
# Runs scenarios/pc-write-fanout.toml (profile `kanade`: agent_config watched through
# watch_many on the agent's own keys) and scenarios/fanout-filtered-vs-legacy.toml
# (profile `legacy`: watch_all on the whole bucket) with the same fleet size, one after
# the other in one invocation so both share the machine's conditions. Both issue the
# same writes: 500 writes at 50/s to a random agent's `pcs.<pc>`, then 20 writes at 5/s
# to the jobs catalog.
#
# Per profile and write target it records the fan-out ratio (deliveries per write,
# intended and in total), the delivery latency p50/p99/max measured at the agents from
# each write's *intended* send time, the put's ack p50/p99, and what reconciliation
# found (missed, duplicates). Writes results/bench/fanout.csv and prints it.
#
#   ./scripts/bench-fanout.sh           # 1000 agents
#   AGENTS=300 ./scripts/bench-fanout.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# Where cargo puts the release build (CARGO_TARGET_DIR if set).
release="${CARGO_TARGET_DIR:-$root/target}/release"
NATS_SERVER_BIN="$(./scripts/provision-nats.sh | tail -n 1)"
export NATS_SERVER_BIN
cargo build --release --quiet

agents="${AGENTS:-1000}"
out_dir="results/bench"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$out_dir"
csv="$out_dir/fanout.csv"
echo "date,agents,profile,status,target,writes,acked,fanout_intended,fanout_total,unintended,delivery_p50_ms,delivery_p99_ms,delivery_max_ms,ack_p50_ms,ack_p99_ms,missed,duplicates,errors" > "$csv"

for profile in kanade legacy; do
  case "$profile" in
    kanade) scenario=scenarios/pc-write-fanout.toml ;;
    legacy) scenario=scenarios/fanout-filtered-vs-legacy.toml ;;
  esac
  echo "== write fan-out, $agents agents, profile $profile ($scenario)" >&2
  set +e
  "$release"/fleetsim run "$scenario" --agents "$agents" --out "$work/runs-$profile" >/dev/null
  code=$?
  set -e
  dir="$(ls -d "$work/runs-$profile"/*/ | head -n 1)"
  python3 - "$dir" "$agents" "$profile" >> "$csv" <<'PY'
import csv, json, sys, datetime
d, n, profile = sys.argv[1], int(sys.argv[2]), sys.argv[3]
m = json.load(open(d + "manifest.json"))
summary = list(csv.DictReader(open(d + "summary.csv")))
def stat(metric, phase, col):
    for r in summary:
        if r["metric"] == metric and r["phase"] == phase:
            return r[col]
    return ""
errors = sum(int(r["count"]) for r in csv.DictReader(open(d + "errors.csv")))
for w in csv.DictReader(open(d + "writes.csv")):
    step, kind = w["step"], w["kind"]
    print(",".join(str(x) for x in [
        datetime.date.today().isoformat(), n, profile, m["status"], kind,
        w["writes"], w["acked"], w["fanout_intended"], w["fanout_total"], w["unintended"],
        stat(f"delivery.{kind}", step, "p50"), stat(f"delivery.{kind}", step, "p99"),
        stat(f"delivery.{kind}", step, "max"),
        stat(f"write_ack.{kind}", step, "p50"), stat(f"write_ack.{kind}", step, "p99"),
        w["missed"], w["duplicates"], errors,
    ]))
PY
  echo "   exit code $code" >&2
done
column -s, -t < "$csv"
