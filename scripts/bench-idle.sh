#!/usr/bin/env bash
# Benchmark: the idle cost of a settled fleet (scenarios/bench-idle.toml: kanade agents
# up, then a 10 s settle and a 60 s hold), ROUNDS times, one after another. From each
# run's counts.csv, the 60 s hold's CPU per agent per minute of the embedded broker's
# process (broker.cpu_ms_per_agent) and of fleetsim's own process
# (fleetsim.cpu_ms_per_agent: its agents, their async-nats clients and its observers),
# both read from /proc by the broker sampler. Writes results/bench/idle.csv and prints it.
#
#   ./scripts/bench-idle.sh                 # 1000 agents, 3 rounds
#   AGENTS=3000 ROUNDS=1 ./scripts/bench-idle.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
release="${CARGO_TARGET_DIR:-$root/target}/release"
NATS_SERVER_BIN="$(./scripts/provision-nats.sh | tail -n 1)"
export NATS_SERVER_BIN
cargo build --release --quiet

agents="${AGENTS:-1000}"
rounds="${ROUNDS:-3}"
out_dir="results/bench"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$out_dir"
csv="$out_dir/idle.csv"
echo "date,agents,round,status,hold_secs,broker_cpu_ms_per_agent_per_min,fleetsim_cpu_ms_per_agent_per_min,fleetsim_over_broker" > "$csv"
for round in $(seq 1 "$rounds"); do
  echo "== idle, $agents agents, round $round" >&2
  set +e
  "$release"/fleetsim run scenarios/bench-idle.toml --agents "$agents" --out "$work/$round" >/dev/null 2>&1
  set -e
  dir="$(ls -d "$work/$round"/*/ | head -n 1)"
  python3 - "$dir" "$agents" "$round" >> "$csv" <<'PY'
import csv, json, sys, datetime
d, n, rnd = sys.argv[1], sys.argv[2], sys.argv[3]
status = json.load(open(d + "manifest.json")).get("status", "")
steps = {r["step"]: r for r in csv.DictReader(open(d + "steps.csv"))}
hold = "4:hold"
secs = float(steps[hold]["ended_secs"]) - float(steps[hold]["began_secs"])
counts = {(r["phase"], r["figure"]): float(r["value"]) for r in csv.DictReader(open(d + "counts.csv"))}
broker = counts.get((hold, "broker.cpu_ms_per_agent"))
own = counts.get((hold, "fleetsim.cpu_ms_per_agent"))
per_min = lambda v: "" if v is None else f"{v * 60 / secs:.4f}"
ratio = f"{own / broker:.2f}" if broker and own is not None else ""
print(",".join([datetime.date.today().isoformat(), n, rnd, status, f"{secs:.1f}",
                per_min(broker), per_min(own), ratio]))
PY
done
column -s, -t < "$csv"
