#!/usr/bin/env bash
# Benchmark: the scale of one fleetsim process.
#
# 1. scenarios/scale-10k.toml: 10,000 agents started at 50/s against the embedded broker,
#    held for a minute, stopped. Records the time to all ready, fleetsim's own CPU and
#    peak RSS per agent (getrusage, whole process), the broker's peak RSS (from /varz in
#    broker.csv) and consumers on the broker.
# 2. How sharp a herd fleetsim can fire: an all-at-once start of 3,000 agents, and the
#    spread between the first and the last agent's first connect attempt
#    (`connect_attempt_at` max - min in summary.csv) and each agent's `fire_skew` (its
#    first attempt minus the instant the start released it) p50 and p99.
#
# Writes results/bench/scale.csv and prints it. Sizes can be changed:
#   AGENTS=5000 SHARP=2000 ./scripts/bench-scale.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# Where cargo puts the release build (CARGO_TARGET_DIR if set).
release="${CARGO_TARGET_DIR:-$root/target}/release"
NATS_SERVER_BIN="$(./scripts/provision-nats.sh | tail -n 1)"
export NATS_SERVER_BIN
cargo build --release --quiet

agents="${AGENTS:-10000}"
sharp="${SHARP:-3000}"
out_dir="results/bench"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$out_dir"
csv="$out_dir/scale.csv"
echo "date,run,agents,status,all_ready_s,ready_p99_ms,connect_attempt_spread_ms,fire_skew_p50_ms,fire_skew_p99_ms,errors,broker_consumers,cpu_ms_per_agent,rss_kib_per_agent,fleetsim_peak_rss_mib,broker_peak_rss_mib" > "$csv"

row() { # run-label agents scenario
  local label="$1" n="$2" scenario="$3"
  echo "== $label: $n agents ($scenario)" >&2
  set +e
  "$release"/fleetsim run "$scenario" --agents "$n" --out "$work/$label" >/dev/null
  local code=$?
  set -e
  local dir
  dir="$(ls -d "$work/$label"/*/ | head -n 1)"
  python3 - "$dir" "$n" "$label" >> "$csv" <<'PY'
import csv, json, sys, datetime
d, n, label = sys.argv[1], int(sys.argv[2]), sys.argv[3]
m = json.load(open(d + "manifest.json"))
summary = list(csv.DictReader(open(d + "summary.csv")))
def stat(metric, col):
    for r in summary:
        if r["metric"] == metric and r["phase"].endswith(":start"):
            return float(r[col])
    return float("nan")
errors = sum(int(r["count"]) for r in csv.DictReader(open(d + "errors.csv")))
steps = list(csv.DictReader(open(d + "steps.csv")))
consumers = max((int(s["broker_consumers_long_lived"] or s["broker_consumers"] or 0) for s in steps), default=0)
broker = [r for r in csv.DictReader(open(d + "broker.csv")) if r["ok"] == "true"]
broker_rss = max((int(r["mem_bytes"] or 0) for r in broker), default=0)
p = m["process"]
cpu = p["cpu_user_secs"] + p["cpu_system_secs"]
print(",".join(str(x) for x in [
    datetime.date.today().isoformat(), label, n, m["status"],
    round(stat("fleet.all_ready", "max") / 1000, 2), stat("ready", "p99"),
    round(stat("connect_attempt_at", "max") - stat("connect_attempt_at", "min"), 1),
    stat("fire_skew", "p50"), stat("fire_skew", "p99"),
    errors, consumers, round(cpu * 1000 / n, 2), round(p["max_rss_kib"] / n, 1),
    round(p["max_rss_kib"] / 1024, 1), round(broker_rss / 2**20, 1),
]))
PY
  echo "   exit code $code" >&2
}

row scale "$agents" scenarios/scale-10k.toml
row sharp "$sharp" scenarios/bench-cold-start.toml
column -s, -t < "$csv"
