#!/usr/bin/env bash
# Benchmark: what a zester fleet (the built-in `zester` profile, written from seed 001)
# costs the broker in messages and bytes, per peel, beside the seed's "Network Bandwidth
# Estimates" table.
#
# For each fleet size (200 and 1,000 peels by default) and round, one `fleetsim run` of
# a scenario written below: the peels start at 200/s and settle, HOLD seconds of hold
# (heartbeats only: every peel's fact sync comes at its start, the next 4 to 6 minutes
# later, so a hold shorter than 240 s holds none), then the master's settings push, one
# 5 KB write to settings-files/<peel> for every peel (reconciled against the deliveries
# of the peel's watch), 5 s more, then a broker-restart herd (SIGKILL, 2 s down) and a
# wait until every peel is ready again. Each run is made twice, over plain TCP and over
# TLS (`[broker] tls = true`: the embedded broker's run-time CA and certificate, every
# peel's connection TLS), alternated (plain first in odd rounds, TLS first in even).
#
# From the run's broker.csv (nats-server's /varz counters: docs/measurements.md) it
# records, per peel:
#   - the hold's messages and bytes per second in and out (the hold's rows without its
#     first, whose interval began in the step before), beside the seed's ~100 B/s
#     heartbeat (and its ~2 KB / 5 min fact sync, ~6.8 B/s, which the hold leaves out);
#   - the start's bytes in per peel (its connection, its JetStream API requests, its
#     first fact sync of 2 KB and its heartbeats until the fleet is ready);
#   - the settings push's bytes in and out per peel (less the hold's rate over the same
#     seconds), beside the seed's ~5 KB per peel;
#   - the broker's mean CPU % during the hold;
#   - the herd: recovery p99 (recovery.csv) and the broker's CPU seconds from the herd's
#     first sample of the restarted server until the fleet was ready again (its /varz
#     `cpu`, a percentage, times the time between samples: an estimate at the samples'
#     250 ms grain; scripts/bench-tls.sh reads /proc for kanade's herd instead).
# nats-server counts a message's headers and payload, not the protocol line, TCP/IP or
# TLS, so the wire carries more (relatively most for the 100 B heartbeats).
#
# Writes results/bench/zester.csv (one row per size and round) and prints it.
#   ./scripts/bench-zester.sh                     # 200 and 1000 peels, 2 rounds, 60 s hold
#   AGENTS="200 1000" ROUNDS=2 HOLD=30 ./scripts/bench-zester.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# Where cargo puts the release build (CARGO_TARGET_DIR if set). FLEETSIM_RELEASE_DIR
# names an already built one instead (as in scripts/bench.sh).
NATS_SERVER_BIN="$(./scripts/provision-nats.sh | tail -n 1)"
export NATS_SERVER_BIN
if [[ -n "${FLEETSIM_RELEASE_DIR:-}" ]]; then
  release="$FLEETSIM_RELEASE_DIR"
else
  release="${CARGO_TARGET_DIR:-$root/target}/release"
  cargo build --release --quiet --bin fleetsim
fi

read -r -a sizes <<< "${AGENTS:-200 1000}"
rounds="${ROUNDS:-2}"
hold="${HOLD:-60}"
out_dir="results/bench"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$out_dir"
csv="${BENCH_CSV:-$out_dir/zester.csv}"


echo "date,round,agents,transport,status,hold_s,in_msgs_per_s_per_peel,in_bytes_per_s_per_peel,out_msgs_per_s_per_peel,out_bytes_per_s_per_peel,seed_heartbeat_bytes_per_s,seed_facts_bytes_per_s,start_in_bytes_per_peel,seed_facts_bytes_per_event,push_in_bytes_per_peel,push_out_bytes_per_peel,seed_settings_bytes_per_peel,push_missed,broker_cpu_pct_hold,recovery_p99_s,broker_cpu_herd_s,errors,broker_version" > "$csv"

scenario() { # agents hold-seconds transport
  local tls=false
  [[ "$3" == tls ]] && tls=true
  cat <<EOF
name = "bench-zester"
description = "zester peels: start, hold, a settings push to every peel, a restart herd"

[broker]
tls = $tls

[fleet]
agents = $1
profile = "zester"

[[steps]]
kind = "start"
mode = "rate"
rate = 200

[[steps]]
kind = "wait_ready"
timeout = "180s"

[[steps]]
kind = "hold"
duration = "${2}s"

[[steps]]
kind = "write"
target = "key"
bucket = "settings-files"
key = "{pc}"
value_size = 5120
count = $1
rate = 200
drain_timeout = "30s"

[[steps]]
kind = "hold"
duration = "5s"

[[steps]]
kind = "broker_restart"
signal = "kill"
downtime = "2s"
recover_timeout = "180s"

[[steps]]
kind = "wait_ready"
timeout = "180s"
EOF
}

for round in $(seq 1 "$rounds"); do
  transports="plain tls"
  (( round % 2 == 0 )) && transports="tls plain"
  for n in "${sizes[@]}"; do
   for transport in $transports; do
    echo "== round $round: $n zester peels, ${hold}s hold ($transport)" >&2
    file="$work/zester-$n-$transport.toml"
    scenario "$n" "$hold" "$transport" > "$file"
    set +e
    "$release"/fleetsim run "$file" --out "$work/runs-$round-$n-$transport" >/dev/null
    code=$?
    set -e
    dir="$(ls -td "$work/runs-$round-$n-$transport"/*/ | head -n 1)"
    python3 - "$dir" "$n" "$round" "$transport" >> "$csv" <<'PY'
import csv, json, sys, datetime
d, n, rnd, transport = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
m = json.load(open(d + "manifest.json"))
rows = list(csv.DictReader(open(d + "broker.csv")))
def f(r, c):
    return float(r[c]) if r.get(c) not in (None, "") else None
def step_rows(kind, nth=1):
    """The rows sampled during the nth step of `kind` (labels like `3:hold`)."""
    labels = []
    for r in rows:
        if r["step"].split(":")[-1] == kind and r["step"] not in labels:
            labels.append(r["step"])
    if len(labels) < nth:
        return []
    return [r for r in rows if r["step"] == labels[nth - 1]]
def rates(sel):
    """Counter differences over seconds for the rows with a rate, the first left out."""
    sel = [r for r in sel if f(r, "interval_secs")][1:]
    secs = sum(f(r, "interval_secs") for r in sel)
    if secs <= 0:
        return None, {}
    tot = {c: sum(f(r, c + "_per_sec") * f(r, "interval_secs") for r in sel)
           for c in ("in_msgs", "in_bytes", "out_msgs", "out_bytes")}
    return secs, tot
hold = step_rows("hold", 1)
secs, tot = rates(hold)
per = lambda c: round(tot[c] / secs / n, 3) if secs else ""
cpu = [f(r, "cpu_percent") for r in hold[1:] if f(r, "cpu_percent") is not None]
def span(sel):
    """A counter's growth and the seconds over `sel`'s rows, from the row before them."""
    i = rows.index(sel[0])
    base = rows[i - 1] if i > 0 else sel[0]
    last = sel[-1]
    grow = {c: f(last, c) - f(base, c) for c in ("in_bytes", "out_bytes")}
    return grow, float(last["t_secs"]) - float(base["t_secs"])
# The start: from its first sample (provisioning, the seeded 5 KB and 10 KB values,
# came before it) through wait_ready and the hold's first row (its interval is the
# start's end).
start = step_rows("start") + step_rows("wait_ready") + hold[:1]
start_in = f(start[-1], "in_bytes") - f(start[0], "in_bytes") if start else None
# The push: its rows and the next step's first (a write step's deliveries can land
# there), less what the hold's rate (heartbeats, idle heartbeats) sends in that time.
push = step_rows("write") + step_rows("hold", 2)[:1]
pin = pout = None
if push and secs:
    grow, t = span(push)
    pin = grow["in_bytes"] - tot["in_bytes"] / secs * t
    pout = grow["out_bytes"] - tot["out_bytes"] / secs * t
missed = sum(int(r["missed"]) for r in csv.DictReader(open(d + "reconcile.csv")))
# The herd: the restarted server's samples (ok) from the restart step through the
# wait_ready after it; CPU % times the time to the next sample.
herd = [r for r in step_rows("broker_restart") + step_rows("wait_ready", 2) if r["ok"] == "true"]
herd_cpu = None
if len(herd) > 1:
    herd_cpu = sum(f(a, "cpu_percent") / 100 * (float(b["t_secs"]) - float(a["t_secs"]))
                   for a, b in zip(herd, herd[1:]) if f(a, "cpu_percent") is not None)
rec = list(csv.DictReader(open(d + "recovery.csv")))
p99 = rec[0]["recovered_99_secs"] if rec else ""
errors = sum(int(r["count"]) for r in csv.DictReader(open(d + "errors.csv")))
r3 = lambda x: "" if x is None else round(x, 1)
print(",".join(str(x) for x in [
    datetime.date.today().isoformat(), rnd, n, transport, m["status"], r3(secs),
    per("in_msgs"), per("in_bytes"), per("out_msgs"), per("out_bytes"),
    100, round(2048 / 300, 2),
    r3(start_in / n if start_in is not None else None), 2048,
    r3(pin / n if pin is not None else None), r3(pout / n if pout is not None else None), 5120,
    missed, r3(sum(cpu) / len(cpu) if cpu else None), p99,
    "" if herd_cpu is None else round(herd_cpu, 2), errors, m["broker"]["version"],
]))
PY
    echo "   exit code $code, run dir $dir" >&2
   done
  done
done
column -s, -t < "$csv" >&2 || cat "$csv" >&2
