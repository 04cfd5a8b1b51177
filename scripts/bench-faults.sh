#!/usr/bin/env bash
# Benchmark: network faults at 1,000 agents, all in one invocation so they share the
# machine's conditions.
#
# 1. The whole fleet cut as a reset (scenarios/network-cut-herd.toml) and as a silent
#    blackhole of 200 s with async-nats' default keepalive (scenarios/blackhole-herd.toml):
#    how long each agent took to notice (`detect` p50/p99), how many did, and recovery;
#    the peak of what the broker held that no agent did (broker.csv's
#    `stale_connections` and `double_held_consumers` during the step).
# 2. A 30 % partial cut (scenarios/partial-cut.toml): the hit agents' recovery beside the
#    spared agents' probe latency.
# 3. The splay decision: churn only, splay off vs on (scenarios/splay-cost-churn.toml, an
#    A/B): each blip's reconnect and re-sync; beside it the broker-restart herd with the
#    same splay off vs on (scenarios/splay-ab.toml), the relief a splay buys.
#
# Writes results/bench/faults.csv (one row per run or variant) and prints it.
#
#   ./scripts/bench-faults.sh                  # 1,000 agents, ~25 minutes on 2 cores
#   AGENTS=300 ONLY=partial ./scripts/bench-faults.sh
#   ONLY="reset blackhole partial churn herd" picks parts (all by default).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
release="${CARGO_TARGET_DIR:-$root/target}/release"
NATS_SERVER_BIN="$(./scripts/provision-nats.sh | tail -n 1)"
export NATS_SERVER_BIN
cargo build --release --quiet --bin fleetsim

agents="${AGENTS:-1000}"
only="${ONLY:-reset blackhole partial churn herd}"
out_dir="results/bench"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$out_dir"
csv="${BENCH_CSV:-$out_dir/faults.csv}"
echo "date,part,scenario,variant,agents,status,hit,detected,detect_p50_ms,detect_p99_ms,recovery_p50_ms,recovery_p99_ms,spared,spared_p99_ms,flaps,reconnect_p50_ms,reconnect_p99_ms,resync_p50_ms,resync_p99_ms,stale_connections_max,double_held_consumers_max" > "$csv"

# part scenario: runs it, appends its row(s).
run() {
  local part="$1" scenario="$2"
  echo "== $part: $scenario, $agents agents" >&2
  set +e
  "$release"/fleetsim run "$scenario" --agents "$agents" --out "$work/$part" >/dev/null
  local code=$?
  set -e
  local dir
  dir="$(ls -td "$work/$part"/*/ | head -n 1)"
  echo "   exit code $code, run dir $dir" >&2
  python3 - "$dir" "$part" "$scenario" "$agents" >> "$csv" <<'PY'
import csv, json, os, sys, datetime
d, part, scenario, agents = sys.argv[1:5]
m = json.load(open(os.path.join(d, "manifest.json")))
def rows(name):
    path = os.path.join(d, name)
    return list(csv.DictReader(open(path))) if os.path.exists(path) else []
summary, recovery, counts = rows("summary.csv"), rows("recovery.csv"), rows("counts.csv")
broker = rows("broker.csv")  # an A/B directory's has a `variant` column
def broker_max(variant, phase, col):
    values = [int(r[col]) for r in broker
              if r.get("variant", "") == variant and r["step"] == phase and r.get(col)]
    return max(values) if values else ""
# An A/B directory has a `variant` column; a single run has none.
variants = sorted({r.get("variant", "") for r in summary}) or [""]
def fault_phase(variant):
    for r in summary:
        if r.get("variant", "") == variant and r["phase"].split(":", 1)[-1] in ("network_cut", "churn", "broker_restart"):
            return r["phase"]
    return ""
def stat(variant, phase, metric, col):
    for r in summary:
        if r.get("variant", "") == variant and r["phase"] == phase and r["metric"] == metric:
            return r[col]
    return ""
for variant in variants:
    phase = fault_phase(variant)
    rec = next((r for r in recovery if r.get("variant", "") == variant and r["step"] == phase), {})
    flaps = sum(int(float(r["total"] or 0)) for r in counts
                if r.get("variant", "") == variant and r["phase"] == phase and r["figure"] == "churn.flaps_per_agent")
    print(",".join(str(x) for x in [
        datetime.date.today().isoformat(), part, os.path.basename(scenario), variant or "-", agents,
        m.get("status", ""), rec.get("agents", ""), rec.get("detected", ""),
        stat(variant, phase, "detect", "p50"), stat(variant, phase, "detect", "p99"),
        stat(variant, phase, "recovery", "p50"), stat(variant, phase, "recovery", "p99"),
        rec.get("spared", ""), stat(variant, phase, "recovery_spared", "p99"),
        flaps or "",
        stat(variant, phase, "reconnect", "p50"), stat(variant, phase, "reconnect", "p99"),
        stat(variant, phase, "resync", "p50"), stat(variant, phase, "resync", "p99"),
        broker_max(variant, phase, "stale_connections"),
        broker_max(variant, phase, "double_held_consumers"),
    ]))
PY
}

for part in $only; do
  case "$part" in
    reset) run reset scenarios/network-cut-herd.toml ;;
    blackhole) run blackhole scenarios/blackhole-herd.toml ;;
    partial) run partial scenarios/partial-cut.toml ;;
    churn) run churn scenarios/splay-cost-churn.toml ;;
    herd) run herd scenarios/splay-ab.toml ;;
    *) echo "unknown part $part; use reset, blackhole, partial, churn, herd" >&2; exit 2 ;;
  esac
done
column -s, -t < "$csv"
