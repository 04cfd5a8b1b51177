#!/usr/bin/env bash
# Benchmark: what TLS costs the broker in a reconnect herd. The same broker-restart herd
# (SIGKILL, 2 s down, no splay) of AGENTS agents runs over plain TCP and over TLS
# (`[broker] tls = true`: the embedded broker's run-time CA and ECDSA P-256 certificate),
# alternated ROUNDS times in one invocation (plain first in odd rounds, TLS first in even
# ones), so both share the machine's conditions; compare rows with each other, not with
# another day's.
#
# The broker's CPU is read from /proc/<pid>/stat of the embedded nats-server (utime +
# stime, 10 ms ticks), polled every 100 ms and snapshotted when fleetsim logs that the
# herd step begins and ends: broker_cpu_herd_s is the CPU the restarted server spent
# from its start until every agent had recovered (TLS handshakes, consumer recreation,
# re-sync), broker_cpu_start_s the first server's CPU until the fleet was ready (the
# paced cold start, AGENTS handshakes too). fleetsim_cpu_herd_s is the simulator's (the
# clients' side of the handshakes) over the herd step. Recovery and reconnect figures
# come from the run directory (recovery.csv, summary.csv).
#
# PROFILE is a comma-separated list of kanade, legacy and light (one watch and one get per
# agent, as in docs/scenarios.md): with light the herd is mostly reconnects, so the
# difference between plain and TLS is mostly the handshakes.
#
#   ./scripts/bench-tls.sh                       # 1000 kanade agents, 3 rounds
#   PROFILE=kanade,light ./scripts/bench-tls.sh  # what results/bench/tls.csv holds
#   AGENTS=300 ROUNDS=2 PROFILE=legacy ./scripts/bench-tls.sh
#   OUT=results/bench/tls-other.csv ./scripts/bench-tls.sh   # another CSV
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
release="${CARGO_TARGET_DIR:-$root/target}/release"
NATS_SERVER_BIN="$(./scripts/provision-nats.sh | tail -n 1)"
export NATS_SERVER_BIN
cargo build --release --quiet

agents="${AGENTS:-1000}"
rounds="${ROUNDS:-3}"
profiles="${PROFILE:-kanade}"
csv="${OUT:-results/bench/tls.csv}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$(dirname "$csv")"
echo "date,round,transport,agents,profile,status,recovered,recovery_p50_s,recovery_p99_s,recovery_p100_s,reconnect_p50_ms,reconnect_p99_ms,broker_cpu_herd_s,broker_cpu_ms_per_agent_herd,broker_cpu_start_s,fleetsim_cpu_herd_s,errors" > "$csv"

scenario() { # $1 = true|false (tls), $2 = profile
  cat <<EOF
name = "tls-herd"
description = "bench-tls.sh: a broker-restart herd, tls = $1"
[broker]
tls = $1
[fleet]
agents = $agents
groups = 10
profile = "$2"
[profiles.light]
[[profiles.light.consumers]]
name = "freeze"
watch = { bucket = "fleet_config", key = "freeze" }
[[profiles.light.sync]]
get = { bucket = "fleet_config", keys = ["freeze"] }
[[steps]]
kind = "start"
mode = "rate"
rate = 200
[[steps]]
kind = "wait_ready"
timeout = "180s"
[[steps]]
kind = "hold"
duration = "3s"
[[steps]]
kind = "broker_restart"
signal = "kill"
downtime = "2s"
recover_timeout = "180s"
EOF
}
for profile in ${profiles//,/ }; do
scenario false "$profile" > "$work/plain-$profile.toml"
scenario true "$profile" > "$work/tls-$profile.toml"
for round in $(seq 1 "$rounds"); do
  if (( round % 2 )); then order="plain tls"; else order="tls plain"; fi
  for transport in $order; do
    echo "== round $round: $transport, $agents $profile agents" >&2
    python3 - "$release/fleetsim" "$work/$transport-$profile.toml" \
      "$work/runs-$profile-$round-$transport" \
      "$round" "$transport" "$agents" "$profile" >> "$csv" <<'PY'
import csv, datetime, glob, os, subprocess, sys, threading, time
exe, scenario, out, rnd, transport, agents, profile = sys.argv[1:]
env = dict(os.environ, FLEETSIM_LOG="info")
proc = subprocess.Popen([exe, "run", scenario, "--out", out], env=env,
                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
tick = os.sysconf("SC_CLK_TCK")

def stat(pid):
    """(comm, ppid, cpu seconds) of a process, or None once it is gone."""
    try:
        s = open(f"/proc/{pid}/stat").read()
    except OSError:
        return None
    comm = s[s.index("(") + 1:s.rindex(")")]
    f = s[s.rindex(")") + 2:].split()
    return comm, int(f[1]), (int(f[11]) + int(f[12])) / tick

brokers = {}  # nats-server pid -> last CPU seconds seen
lock = threading.Lock()
def poll():
    while proc.poll() is None:
        for p in os.listdir("/proc"):
            if p.isdigit():
                st = stat(int(p))
                if st and st[0] == "nats-server" and st[1] == proc.pid:
                    with lock:
                        brokers[int(p)] = st[2]
        time.sleep(0.1)
threading.Thread(target=poll, daemon=True).start()

def snapshot():
    with lock:
        for pid in list(brokers):
            st = stat(pid)
            if st:
                brokers[pid] = st[2]
        own = stat(proc.pid)
        return dict(brokers), own[2] if own else None

marks = {}
for line in proc.stderr:
    if "broker_restart" in line and "step begins" in line:
        marks["herd_begin"] = snapshot()
    elif "broker_restart" in line and "step ends" in line:
        marks["herd_end"] = snapshot()
    elif "wait_ready" in line and "step ends" in line:
        marks["ready"] = snapshot()
code = proc.wait()

def cpu_between(a, b):
    """Broker CPU spent between two snapshots, over every server process seen."""
    (before, _), (after, _) = marks[a], marks[b]
    return sum(after.get(p, 0) - before.get(p, 0) for p in set(before) | set(after))

d = glob.glob(out + "/*/")[0]
rec = list(csv.DictReader(open(d + "recovery.csv")))[0]
summary = list(csv.DictReader(open(d + "summary.csv")))
def pct(metric, p):
    for r in summary:
        if r["metric"] == metric and r["phase"] == rec["step"]:
            return r[p]
    return ""
status = __import__("json").load(open(d + "manifest.json"))["status"]
errors = sum(int(r["count"]) for r in csv.DictReader(open(d + "errors.csv")))
herd = cpu_between("herd_begin", "herd_end") if "herd_end" in marks else float("nan")
start = sum(marks["ready"][0].values()) if "ready" in marks else float("nan")
sim = (marks["herd_end"][1] - marks["herd_begin"][1]) if "herd_end" in marks else float("nan")
print(",".join(str(x) for x in [
    datetime.date.today().isoformat(), rnd, transport, agents, profile, status,
    rec["recovered"], rec["recovered_50_secs"], rec["recovered_99_secs"],
    rec["recovered_100_secs"], pct("reconnect", "p50"), pct("reconnect", "p99"),
    f"{herd:.2f}", f"{1000 * herd / int(agents):.2f}", f"{start:.2f}", f"{sim:.2f}", errors,
]))
print(f"   exit code {code}", file=sys.stderr)
PY
  done
done
done
column -s, -t < "$csv"
