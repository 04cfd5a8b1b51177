#!/usr/bin/env bash
# Benchmarks: cold-start herds (all agents released at once) of 1,000 and 3,000 kanade
# agents against the embedded broker. For each size it records the wall time to all-ready,
# ready p50/p99, and fleetsim's own whole-process CPU seconds and peak RSS per agent (read
# by fleetsim itself with getrusage; the broker is a separate process and not included).
#
# Writes results/bench/core.csv (one row per run) and prints it. Sizes can be given:
#   ./scripts/bench.sh 1000 3000
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
NATS_SERVER_BIN="$(./scripts/provision-nats.sh | tail -n 1)"
export NATS_SERVER_BIN
cargo build --release --quiet

sizes=("$@")
[[ ${#sizes[@]} -eq 0 ]] && sizes=(1000 3000)
out_dir="results/bench"
runs="$(mktemp -d)"
mkdir -p "$out_dir"
csv="$out_dir/core.csv"
echo "date,agents,status,wall_all_ready_s,ready_p50_ms,ready_p99_ms,errors,cpu_s,cpu_ms_per_agent,peak_rss_mib,rss_kib_per_agent,broker_version" > "$csv"

for n in "${sizes[@]}"; do
  echo "== cold start of $n agents" >&2
  set +e
  ./target/release/fleetsim run scenarios/bench-cold-start.toml --agents "$n" --out "$runs" >/dev/null
  code=$?
  set -e
  dir="$(ls -td "$runs"/*/ | head -n 1)"
  python3 - "$dir" "$n" "$code" >> "$csv" <<'PY'
import csv, json, sys, datetime
d, n, code = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
m = json.load(open(d + "manifest.json"))
rows = list(csv.DictReader(open(d + "summary.csv")))
def metric(name, col):
    for r in rows:
        if r["metric"] == name and r["phase"].endswith(":start"):
            return float(r[col])
    return float("nan")
errors = sum(int(r["count"]) for r in csv.DictReader(open(d + "errors.csv")))
p = m["process"]
cpu = p["cpu_user_secs"] + p["cpu_system_secs"]
rss_kib = p["max_rss_kib"]
print(",".join(str(x) for x in [
    datetime.date.today().isoformat(), n, m["status"],
    round(metric("fleet.all_ready", "max") / 1000, 3),
    metric("ready", "p50"), metric("ready", "p99"), errors,
    round(cpu, 2), round(cpu * 1000 / n, 3),
    round(rss_kib / 1024, 1), round(rss_kib / n, 1),
    m["broker"]["version"],
]))
PY
  echo "   exit code $code, run dir $dir" >&2
done
rm -rf "$runs"
column -s, -t < "$csv"
