#!/usr/bin/env bash
# Benchmark: what fleetsim's observers cost, fleetsim and the broker. One scenario
# (scenarios/bench-observers.toml: kanade agents started at 200/s, a 5 s settle, a 20 s hold),
# run with every observer on, and with each of the API tap, the 100 ms time series and
# the progress line turned off ([observe]), and with all three off; ROUNDS rounds,
# interleaved. The broker sampler stays on in every run: it is what reads both
# processes' CPU (/proc) into counts.csv. Per run: fleetsim's and the broker's CPU per
# agent during the cold start (1:start + wait_ready) and per agent per minute during
# the 20 s hold. Writes results/bench/observers.csv and prints it.
#
#   ./scripts/bench-observers.sh                 # 1000 agents, 2 rounds
#   AGENTS=300 ROUNDS=1 ./scripts/bench-observers.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
release="${CARGO_TARGET_DIR:-$root/target}/release"
NATS_SERVER_BIN="$(./scripts/provision-nats.sh | tail -n 1)"
export NATS_SERVER_BIN
cargo build --release --quiet

agents="${AGENTS:-1000}"
rounds="${ROUNDS:-2}"
out_dir="results/bench"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$out_dir"
configs="all-on no-api-tap no-timeseries no-progress minimal"
for c in $configs; do
  case "$c" in
    all-on) table="" ;;
    no-api-tap) table=$'[observe]\napi_tap = false\n' ;;
    no-timeseries) table=$'[observe]\ntimeseries = false\n' ;;
    no-progress) table=$'[observe]\nprogress = false\n' ;;
    minimal) table=$'[observe]\napi_tap = false\ntimeseries = false\nprogress = false\n' ;;
  esac
  { cat scenarios/bench-observers.toml; printf '\n%s' "$table"; } > "$work/$c.toml"
done
csv="$out_dir/observers.csv"
echo "date,agents,config,round,status,fleetsim_cold_start_cpu_ms_per_agent,broker_cold_start_cpu_ms_per_agent,fleetsim_idle_cpu_ms_per_agent_per_min,broker_idle_cpu_ms_per_agent_per_min" > "$csv"
for round in $(seq 1 "$rounds"); do
  for c in $configs; do
    echo "== observers: $c, $agents agents, round $round" >&2
    set +e
    "$release"/fleetsim run "$work/$c.toml" --agents "$agents" --out "$work/$c-$round" >/dev/null 2>&1
    set -e
    dir="$(ls -d "$work/$c-$round"/*/ | head -n 1)"
    python3 - "$dir" "$agents" "$c" "$round" >> "$csv" <<'PY'
import csv, json, sys, datetime
d, n, config, rnd = sys.argv[1:5]
status = json.load(open(d + "manifest.json")).get("status", "")
steps = {r["step"]: r for r in csv.DictReader(open(d + "steps.csv"))}
hold = "4:hold"
secs = float(steps[hold]["ended_secs"]) - float(steps[hold]["began_secs"])
counts = {(r["phase"], r["figure"]): float(r["value"]) for r in csv.DictReader(open(d + "counts.csv"))}
f = lambda phase, fig, scale=1.0: "" if (phase, fig) not in counts else f"{counts[(phase, fig)] * scale:.4f}"
print(",".join([datetime.date.today().isoformat(), n, config, rnd, status,
                f("1:start", "fleetsim.cpu_ms_per_agent"), f("1:start", "broker.cpu_ms_per_agent"),
                f(hold, "fleetsim.cpu_ms_per_agent", 60 / secs), f(hold, "broker.cpu_ms_per_agent", 60 / secs)]))
PY
  done
done
column -s, -t < "$csv"
