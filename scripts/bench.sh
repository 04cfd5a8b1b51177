#!/usr/bin/env bash
# Benchmarks: cold-start herds (all agents released at once) of 1,000 and 3,000 kanade
# agents against the embedded broker, each paired with the same herd of bare agents
# (examples/bare_agents.rs: only the profile's async-nats calls, none of fleetsim's
# machinery) so the pair, measured back to back, shows what fleetsim itself adds.
# bare_agents links async-nats 0.51 only, so both of these rows run the kanade profile on
# 0.51 (scenarios/bench-cold-start-051.toml); then one paced start of the profile as
# shipped, on 0.50 (3,000 agents at 200/s, scenarios/bench-rate-start.toml) whose CPU per
# agent carries no herd retries. For each run it records the wall time to all-ready,
# ready p50/p99, the failed calls (`errors`: each one was retried, or was a connect
# attempt), and the process's own whole-process CPU seconds and peak RSS per agent (read
# by the process itself with getrusage; the broker is a separate process and not
# included). fleetsim's rows also record how sharply the start fired: each agent's
# `fire_skew` (its first connect attempt minus the instant the start released it) p50
# and p99, and the spread from the first to the last agent's first connect attempt
# (`connect_attempt_at` max - min); the bare rows leave those empty.
#
# The machine is shared and noisy, so one run proves little: the whole set is repeated
# REPS times (default 3), interleaved: in each repetition every size runs its fleetsim
# row and its bare row back to back, the order swapped from one repetition to the next so
# a drift of the machine's speed falls on both sides alike. The paced row runs once per
# repetition too, so its figures get the same median and spread as the others.
#
# At the sizes in MINIMAL_SIZES (default 1000; empty: none) each repetition also runs
# fleetsim with every observer off (`[observe]` api_tap, broker, timeseries and progress
# false: the `all_at_once_minimal` rows, and their `minimal/bare` ratios), between the
# other two: the gap between it and the full row is what measuring costs fleetsim, the
# gap between it and bare is fleetsim's machinery itself.
#
# Writes results/bench/core.csv (one row per run, with its repetition `rep`) and
# results/bench/core-summary.csv (per start kind and size: the median, min and max over
# the repetitions of CPU and RSS per agent, wall time to all-ready, ready p99, errors and
# the fleetsim rows' start sharpness; and the fleetsim/bare ratios of CPU and of RSS per
# agent, each taken within one repetition, then their median, min and max), and prints
# both as tables. Sizes of the all-at-once runs can be given; RATE_AGENTS sets the paced
# run's size (0 skips it):
#   ./scripts/bench.sh 1000 3000
#   REPS=5 RATE_AGENTS=0 ./scripts/bench.sh 500
#   REPS=2 REP_FIRST=2 BENCH_CSV=/tmp/b.csv ./scripts/bench.sh 3000   # repetitions 2 and 3
#   ./scripts/bench.sh --summary    # only (re)write the summary of the rows already there
# BENCH_CSV writes the per-run rows elsewhere (then no summary file is written unless
# BENCH_SUMMARY_CSV names one; the table is printed either way). `--summary` reads the
# rows of BENCH_CSV (or core.csv) instead of running: sizes measured by separate
# invocations, their rows concatenated into one file, are summarised together.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
summary_only=""
if [[ "${1:-}" == "--summary" ]]; then
  summary_only=1
  shift
fi
out_dir="results/bench"
mkdir -p "$out_dir"
if [[ -n "${BENCH_CSV:-}" ]]; then
  csv="$BENCH_CSV"
  summary="${BENCH_SUMMARY_CSV:-}"
else
  csv="$out_dir/core.csv"
  summary="${BENCH_SUMMARY_CSV:-$out_dir/core-summary.csv}"
fi

# The summary of the rows in $csv: written to $summary (if set) and printed.
summarise() {
python3 - "$csv" "$summary" <<'PY'
import csv, math, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
summary_path = sys.argv[2]

def num(r, col):
    try:
        v = float(r[col])
    except (KeyError, ValueError):
        return None
    return None if math.isnan(v) else v

def spread(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return len(values), statistics.median(values), min(values), max(values)

metrics = ["cpu_ms_per_agent", "rss_kib_per_agent", "wall_all_ready_s", "ready_p99_ms", "errors",
           "fire_skew_p50_ms", "fire_skew_p99_ms", "connect_attempt_spread_ms"]
groups = list(dict.fromkeys((r["start"], r["agents"]) for r in rows if r["agents"]))
out = []  # start, agents, metric, n, median, min, max
runs = {}  # (start, agents): runs (pairs for the ratios), of them ok
for start, agents in groups:
    # Every run that has numbers, whatever its status (a `failed` fleetsim run had agents
    # that gave up after their setup retries: its figures are shown, counted apart).
    rs = [r for r in rows if r["start"] == start and r["agents"] == agents]
    runs[(start, agents)] = (len(rs), sum(r["status"] == "ok" for r in rs))
    for m in metrics:
        s = spread(num(r, m) for r in rs)
        if s:
            out.append((start, agents, m, *s))
    # fleetsim/bare within one repetition: the two runs shared the machine's conditions.
    # Only pairs where both runs are `ok`: agents that gave up did less work, so a failed
    # run's CPU per agent is not comparable with a run whose agents all came up.
    ratio_of = {"all_at_once": "fleetsim/bare", "all_at_once_minimal": "minimal/bare"}
    if start in ratio_of:
        name = ratio_of[start]
        bare = {r.get("rep"): r for r in rows if r["start"] == "bare_all_at_once" and r["agents"] == agents}
        pairs = [(r, bare[r.get("rep")]) for r in rs if r.get("rep") in bare]
        ok = [(f, b) for f, b in pairs if f["status"] == "ok" and b["status"] == "ok"]
        runs[(name, agents)] = (len(pairs), len(ok))
        for m in ["cpu_ms_per_agent", "rss_kib_per_agent"]:
            s = spread(num(f, m) / num(b, m) for f, b in ok if num(f, m) is not None and num(b, m))
            if s:
                out.append((name, agents, m + "_ratio", *s))

def fmt(v):
    if float(v).is_integer() or abs(v) >= 1000:
        return f"{v:.0f}"
    return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"

if summary_path:
    with open(summary_path, "w") as f:
        f.write("start,agents,runs,runs_ok,metric,n,median,min,max\n")
        for start, agents, m, n, med, lo, hi in out:
            total, ok = runs[(start, agents)]
            f.write(f"{start},{agents},{total},{ok},{m},{n},{round(med, 4)},{round(lo, 4)},{round(hi, 4)}\n")

cells = {(s, a, m): (n, med, lo, hi) for s, a, m, n, med, lo, hi in out}
heads = ["cpu_ms/agent", "rss_kib/agent", "all_ready_s", "ready_p99_ms", "errors",
         "fire_skew_p50_ms", "fire_skew_p99_ms", "attempt_spread_ms"]
table = [["start", "agents", "runs (ok)"] + heads]
# Each size's fleetsim row, its bare row and their ratios together, the paced row last.
order = {"all_at_once": 0, "all_at_once_minimal": 1, "bare_all_at_once": 2, "fleetsim/bare": 3,
         "minimal/bare": 4}
ratios = {"all_at_once": "fleetsim/bare", "all_at_once_minimal": "minimal/bare"}
shown = groups + [(ratios[s], a) for s, a in groups if s in ratios]
shown.sort(key=lambda g: (g[0] not in order, int(g[1]), order.get(g[0], 5)))
for start, agents in shown:
    ms = metrics if "/" not in start else ["cpu_ms_per_agent_ratio", "rss_kib_per_agent_ratio"]
    got = [cells.get((start, agents, m)) for m in ms]
    total, ok = runs[(start, agents)]
    line = [start, agents, f"{total} ({ok})"] + [f"{fmt(g[1])} ({fmt(g[2])}-{fmt(g[3])})" if g else "" for g in got]
    table.append(line)
print("median (min-max) over the runs, (ok): how many had status ok; the fleetsim/bare rows'")
print("cpu and rss columns hold the ratio of fleetsim's to the bare agents' figure, taken within")
print("each repetition, over the pairs where both runs were ok")
widths = [max(len(r[i]) if i < len(r) else 0 for r in table) for i in range(len(table[0]))]
for r in table:
    print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
if summary_path:
    print(f"\nwritten: {summary_path}")
PY
}

if [[ -n "$summary_only" ]]; then
  if [[ ! -s "$csv" ]]; then
    echo "error: --summary: no rows in $csv" >&2
    exit 2
  fi
  summarise
  exit 0
fi

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
reps="${REPS:-3}"
# The first repetition's number: a set split across invocations (to keep each one short)
# goes on numbering, and alternating, where the previous one stopped.
first="${REP_FIRST:-1}"
for knob in "REPS=$reps" "REP_FIRST=$first"; do
  if ! [[ "${knob#*=}" =~ ^[1-9][0-9]*$ ]]; then
    echo "error: ${knob%%=*} must be a whole number of at least 1, not '${knob#*=}'" >&2
    exit 2
  fi
done
rate_agents="${RATE_AGENTS:-3000}"
read -r -a minimal_sizes <<< "${MINIMAL_SIZES-1000}"
runs="$(mktemp -d)"
trap 'rm -rf "$runs"' EXIT
# The cold start with every observer off, for the `all_at_once_minimal` rows.
minimal_scenario="$runs/bench-cold-start-051-minimal.toml"
{
  cat scenarios/bench-cold-start-051.toml
  printf '\n[observe]\napi_tap = false\nbroker = false\ntimeseries = false\nprogress = false\n'
} > "$minimal_scenario"
echo "date,rep,start,agents,status,wall_all_ready_s,ready_p50_ms,ready_p99_ms,errors,cpu_s,cpu_ms_per_agent,peak_rss_mib,rss_kib_per_agent,broker_version,async_nats,fire_skew_p50_ms,fire_skew_p99_ms,connect_attempt_spread_ms" > "$csv"

row() { # rep start-label agents scenario
  local rep="$1" label="$2" n="$3" scenario="$4"
  echo "== rep $rep: cold start of $n agents ($label)" >&2
  set +e
  "$release"/fleetsim run "$scenario" --agents "$n" --out "$runs/$label-$n-$rep" >/dev/null
  local code=$?
  set -e
  local dir
  dir="$(ls -td "$runs/$label-$n-$rep"/*/ | head -n 1)"
  python3 - "$dir" "$n" "$label" "$rep" >> "$csv" <<'PY'
import csv, json, sys, datetime
d, n, label, rep = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
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
    datetime.date.today().isoformat(), rep, label, n, m["status"],
    round(metric("fleet.all_ready", "max") / 1000, 3),
    metric("ready", "p50"), metric("ready", "p99"), errors,
    round(cpu, 2), round(cpu * 1000 / n, 3),
    round(rss_kib / 1024, 1), round(rss_kib / n, 1),
    m["broker"]["version"], m.get("async_nats_version", ""),
    metric("fire_skew", "p50"), metric("fire_skew", "p99"),
    round(metric("connect_attempt_at", "max") - metric("connect_attempt_at", "min"), 1),
]))
PY
  echo "   exit code $code, run dir $dir" >&2
}

bare_row() { # rep agents: the same cold start by examples/bare_agents.rs
  local rep="$1" n="$2"
  echo "== rep $rep: cold start of $n bare agents (async-nats calls only)" >&2
  local line status=ok
  if ! line="$("$release"/examples/bare_agents scenarios/bench-cold-start-051.toml "$n")"; then
    status=partial
  fi
  python3 - "$line" "$status" "$("$NATS_SERVER_BIN" --version | sed 's/^nats-server: v//')" "$rep" "$n" >> "$csv" <<'PY'
import sys, datetime
f = dict(kv.split("=", 1) for kv in sys.argv[1].split())
status, version, rep, asked = sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
if "agents" not in f:  # it printed nothing: a row that says so, not a crash
    print(f"{datetime.date.today().isoformat()},{rep},bare_all_at_once,{asked},failed,,,,,,,,,{version},0.51,,,")
    sys.exit(0)
n = int(f["agents"])
cpu, rss_kib = float(f["cpu_s"]), int(f["peak_rss_kib"])
print(",".join(str(x) for x in [
    datetime.date.today().isoformat(), rep, "bare_all_at_once", n, status,
    f["wall_all_ready_s"], f["ready_p50_ms"], f["ready_p99_ms"], f["errors"],
    round(cpu, 2), round(cpu * 1000 / n, 3),
    round(rss_kib / 1024, 1), round(rss_kib / n, 1), version, "0.51", "", "", "",
]))
PY
}

minimal_row() { # rep agents: fleetsim with every observer off, at MINIMAL_SIZES only
  local n
  for n in "${minimal_sizes[@]}"; do
    if [[ "$n" == "$2" ]]; then
      row "$1" all_at_once_minimal "$2" "$minimal_scenario"
    fi
  done
}

for rep in $(seq "$first" $((first + reps - 1))); do
  for n in "${sizes[@]}"; do
    # Odd repetitions run fleetsim first, even ones the bare agents first; the minimal
    # run (if any) always between them.
    if (( rep % 2 == 1 )); then
      row "$rep" all_at_once "$n" scenarios/bench-cold-start-051.toml
      minimal_row "$rep" "$n"
      bare_row "$rep" "$n"
    else
      bare_row "$rep" "$n"
      minimal_row "$rep" "$n"
      row "$rep" all_at_once "$n" scenarios/bench-cold-start-051.toml
    fi
  done
  if [[ "$rate_agents" -gt 0 ]]; then
    row "$rep" rate_200 "$rate_agents" scenarios/bench-rate-start.toml
  fi
done
column -s, -t < "$csv"
echo
summarise
