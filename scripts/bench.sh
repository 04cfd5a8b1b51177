#!/usr/bin/env bash
# Benchmarks: cold-start herds (all agents released at once) of 1,000 and 3,000 kanade
# agents against the embedded broker, each followed by the same herd of bare agents
# (examples/bare_agents.rs: only the profile's async-nats calls, none of fleetsim's
# machinery) so the two rows, measured minutes apart, show what fleetsim itself adds.
# bare_agents links async-nats 0.51 only, so both of these rows run the kanade profile on
# 0.51 (scenarios/bench-cold-start-051.toml); then one paced start of the profile as
# shipped, on 0.50 (3,000 agents at 200/s, scenarios/bench-rate-start.toml) whose CPU per
# agent carries no herd retries. For each
# run it records the wall time to all-ready, ready p50/p99, the failed calls (`errors`:
# each one was retried, or was a connect attempt), and fleetsim's own whole-process CPU
# seconds and peak RSS per agent (read by fleetsim itself with getrusage; the broker is a
# separate process and not included).
#
# Writes results/bench/core.csv (one row per run) and prints it. Sizes of the all-at-once
# runs can be given; RATE_AGENTS sets the paced run's size (0 skips it):
#   ./scripts/bench.sh 1000 3000
#   RATE_AGENTS=0 ./scripts/bench.sh 500
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# Where cargo puts the release build (CARGO_TARGET_DIR if set). FLEETSIM_RELEASE_DIR
# names an already built one instead (scripts/bench-revs.sh measures another commit's).
NATS_SERVER_BIN="$(./scripts/provision-nats.sh | tail -n 1)"
export NATS_SERVER_BIN
if [[ -n "${FLEETSIM_RELEASE_DIR:-}" ]]; then
  release="$FLEETSIM_RELEASE_DIR"
else
  release="${CARGO_TARGET_DIR:-$root/target}/release"
  cargo build --release --quiet --bin fleetsim --example bare_agents
fi

sizes=("$@")
[[ ${#sizes[@]} -eq 0 ]] && sizes=(1000 3000)
out_dir="results/bench"
runs="$(mktemp -d)"
mkdir -p "$out_dir"
csv="${BENCH_CSV:-$out_dir/core.csv}"
echo "date,start,agents,status,wall_all_ready_s,ready_p50_ms,ready_p99_ms,errors,cpu_s,cpu_ms_per_agent,peak_rss_mib,rss_kib_per_agent,broker_version,async_nats" > "$csv"

row() { # start-label agents scenario
  local label="$1" n="$2" scenario="$3"
  echo "== cold start of $n agents ($label)" >&2
  set +e
  "$release"/fleetsim run "$scenario" --agents "$n" --out "$runs/$label-$n" >/dev/null
  local code=$?
  set -e
  local dir
  dir="$(ls -td "$runs/$label-$n"/*/ | head -n 1)"
  python3 - "$dir" "$n" "$label" >> "$csv" <<'PY'
import csv, json, sys, datetime
d, n, label = sys.argv[1], int(sys.argv[2]), sys.argv[3]
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
    datetime.date.today().isoformat(), label, n, m["status"],
    round(metric("fleet.all_ready", "max") / 1000, 3),
    metric("ready", "p50"), metric("ready", "p99"), errors,
    round(cpu, 2), round(cpu * 1000 / n, 3),
    round(rss_kib / 1024, 1), round(rss_kib / n, 1),
    m["broker"]["version"], m.get("async_nats_version", ""),
]))
PY
  echo "   exit code $code, run dir $dir" >&2
}

bare_row() { # agents: the same cold start by examples/bare_agents.rs
  local n="$1"
  echo "== cold start of $n bare agents (async-nats calls only)" >&2
  local line status=ok
  if ! line="$("$release"/examples/bare_agents scenarios/bench-cold-start-051.toml "$n")"; then
    status=partial
  fi
  python3 - "$line" "$status" "$("$NATS_SERVER_BIN" --version | sed 's/^nats-server: v//')" >> "$csv" <<'PY'
import sys, datetime
f = dict(kv.split("=", 1) for kv in sys.argv[1].split())
if "agents" not in f:  # it printed nothing: a row that says so, not a crash
    print(f"{datetime.date.today().isoformat()},bare_all_at_once,,failed,,,,,,,,,{sys.argv[3]},0.51")
    sys.exit(0)
n, status, version = int(f["agents"]), sys.argv[2], sys.argv[3]
cpu, rss_kib = float(f["cpu_s"]), int(f["peak_rss_kib"])
print(",".join(str(x) for x in [
    datetime.date.today().isoformat(), "bare_all_at_once", n, status,
    f["wall_all_ready_s"], f["ready_p50_ms"], f["ready_p99_ms"], f["errors"],
    round(cpu, 2), round(cpu * 1000 / n, 3),
    round(rss_kib / 1024, 1), round(rss_kib / n, 1), version, "0.51",
]))
PY
}

for n in "${sizes[@]}"; do
  row all_at_once "$n" scenarios/bench-cold-start-051.toml
  bare_row "$n"
done
rate_agents="${RATE_AGENTS:-3000}"
if [[ "$rate_agents" -gt 0 ]]; then
  row rate_200 "$rate_agents" scenarios/bench-rate-start.toml
fi
rm -rf "$runs"
column -s, -t < "$csv"
