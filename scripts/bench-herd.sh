#!/usr/bin/env bash
# Benchmark: the broker-restart herd (scenarios/broker-restart-herd.toml: SIGKILL, 2 s
# downtime) at 1,000 agents, with the startup splay off and with `splay = "5s"` in each
# placement. All runs happen in one invocation, one after the other, so they share the
# machine's conditions; compare them with each other, not with another day's numbers.
#
# For each run it records fleet recovery (trigger -> 50/99/100 % of agents with every
# consumer delivering the probe), the agents' reconnect and re-sync p50, and from the
# broker's JetStream advisories the peak consumer creates per 100 ms and the API
# requests during the herd step, and from its monitoring port (broker.csv, every 250 ms
# during the herd) the peak of JetStream API requests in flight. Writes results/bench/herd.csv and prints it.
#
#   ./scripts/bench-herd.sh            # 1000 agents, window 5s
#   AGENTS=300 SPLAY=3s ./scripts/bench-herd.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
# Where cargo puts the release build (CARGO_TARGET_DIR if set).
release="${CARGO_TARGET_DIR:-$root/target}/release"
NATS_SERVER_BIN="$(./scripts/provision-nats.sh | tail -n 1)"
export NATS_SERVER_BIN
cargo build --release --quiet

agents="${AGENTS:-1000}"
splay="${SPLAY:-5s}"
out_dir="results/bench"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$out_dir"
csv="$out_dir/herd.csv"
echo "date,agents,splay,placement,status,recovered,recovery_p50_s,recovery_p99_s,recovery_p100_s,reconnect_p50_ms,resync_p50_ms,peak_consumers_created_per_100ms,peak_create_requests_per_100ms,api_requests_in_herd,peak_api_inflight,api_limit_reached,errors" > "$csv"

for placement in off before_gets reopen_watches reconnect_delay; do
  scenario="$work/herd-$placement.toml"
  if [[ "$placement" == off ]]; then
    cp scenarios/broker-restart-herd.toml "$scenario"
  else
    # Insert the splay settings at the top of [fleet].
    sed "s/^\[fleet\]$/[fleet]\nsplay = \"$splay\"\nsplay_placement = \"$placement\"/" \
      scenarios/broker-restart-herd.toml > "$scenario"
  fi
  echo "== broker-restart herd, $agents agents, splay: $placement" >&2
  set +e
  "$release"/fleetsim run "$scenario" --agents "$agents" --out "$work/runs-$placement" >/dev/null
  code=$?
  set -e
  dir="$(ls -d "$work/runs-$placement"/*/ | head -n 1)"
  python3 - "$dir" "$agents" "$splay" "$placement" >> "$csv" <<'PY'
import csv, json, sys, datetime
d, n, splay, placement = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
m = json.load(open(d + "manifest.json"))
rec = list(csv.DictReader(open(d + "recovery.csv")))[0]
summary = list(csv.DictReader(open(d + "summary.csv")))
def p50(metric):
    for r in summary:
        if r["metric"] == metric and r["phase"] == rec["step"]:
            return r["p50"]
    return ""
ts = [r for r in csv.DictReader(open(d + "timeseries.csv")) if r["step"] == rec["step"]]
col = lambda c: [int(r[c]) for r in ts]
api = sum(sum(col(c)) for c in ["api_consumer_create", "api_consumer_delete", "api_stream_info", "api_other"])
errors = sum(int(r["count"]) for r in csv.DictReader(open(d + "errors.csv")))
inflight = [int(r["api_inflight"]) for r in csv.DictReader(open(d + "broker.csv"))
            if r["step"] == rec["step"] and r["ok"] == "true" and r["api_inflight"]]
print(",".join(str(x) for x in [
    datetime.date.today().isoformat(), n, splay if placement != "off" else "0s", placement,
    m["status"], rec["recovered"], rec["recovered_50_secs"], rec["recovered_99_secs"],
    rec["recovered_100_secs"], p50("reconnect"), p50("resync"),
    max(col("consumers_created"), default=0), max(col("api_consumer_create"), default=0),
    api, max(inflight, default=0), sum(col("api_limit_reached")), errors,
]))
PY
  echo "   exit code $code" >&2
done
column -s, -t < "$csv"
