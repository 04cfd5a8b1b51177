#!/usr/bin/env bash
# Benchmark: the broker-restart herd (scenarios/broker-restart-herd.toml: SIGKILL, 2 s
# downtime) with the kanade profile as issue 13 rewrote it to the agent's source, and
# with the profile as it was before (scenarios/kanade-before-13.toml: the same seven
# consumers, a [[sync]] of gets and both catalog walks run on every reconnect, fleetsim's
# old 8 KiB read buffer and 10 s connect timeout). Both record every JetStream API
# request the broker received (`[broker] record_api = true`, api.csv), alternated ROUNDS
# times in one invocation so they share the machine's conditions.
#
# Per run: API requests per agent during the herd (the broker_restart step and the hold
# after it), by kind, from api.csv (agents' requests by their connection name, direct
# gets by subject); fleet recovery p50/p99 (recovery.csv) and the re-sync p50. Recording
# stores one message per request on the broker: both profiles pay it. Writes
# results/bench/profiles.csv and prints it.
#
#   ./scripts/bench-profiles.sh              # 1000 agents, 1 round
#   AGENTS=300 ROUNDS=2 ./scripts/bench-profiles.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
release="${CARGO_TARGET_DIR:-$root/target}/release"
NATS_SERVER_BIN="$(./scripts/provision-nats.sh | tail -n 1)"
export NATS_SERVER_BIN
cargo build --release --quiet

agents="${AGENTS:-1000}"
rounds="${ROUNDS:-1}"
out_dir="results/bench"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$out_dir"
csv="$out_dir/profiles.csv"
echo "date,agents,profile,round,status,recovered,recovery_p50_s,recovery_p99_s,resync_p50_ms,api_per_agent,consumer_create_per_agent,consumer_delete_per_agent,stream_info_per_agent,direct_get_per_agent,other_per_agent,api_errors_per_agent" > "$csv"

with_recording() { sed 's/^\[fleet\]$/[broker]\nrecord_api = true\n\n[fleet]/' "$1"; }
with_recording scenarios/broker-restart-herd.toml > "$work/kanade.toml"
with_recording scenarios/kanade-before-13.toml > "$work/before-13.toml"

for round in $(seq 1 "$rounds"); do
  for profile in before-13 kanade; do
    echo "== broker-restart herd, $agents agents, profile $profile, round $round" >&2
    set +e
    "$release"/fleetsim run "$work/$profile.toml" --agents "$agents" --out "$work/runs-$profile-$round" >/dev/null
    set -e
    dir="$(ls -d "$work/runs-$profile-$round"/*/ | head -n 1)"
    python3 - "$dir" "$agents" "$profile" "$round" >> "$csv" <<'PY'
import csv, json, sys, datetime
d, n, profile, rnd = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
m = json.load(open(d + "manifest.json"))
rec = list(csv.DictReader(open(d + "recovery.csv")))[0]
herd = rec["step"]
steps = [r["step"] for r in csv.DictReader(open(d + "steps.csv"))]
phases = set(steps[steps.index(herd):])
rows = [r for r in csv.DictReader(open(d + "api.csv")) if r["phase"] in phases]
ours = [r for r in rows if r["client"].startswith("pc-") or r["request"] == "DIRECT.GET"]
def per(pred):
    return f"{sum(1 for r in ours if pred(r)) / n:.2f}"
summary = list(csv.DictReader(open(d + "summary.csv")))
def p50(metric):
    for r in summary:
        if r["metric"] == metric and r["phase"] == herd:
            return r["p50"]
    return ""
kinds = ("CONSUMER.CREATE", "CONSUMER.DELETE", "STREAM.INFO", "DIRECT.GET")
print(",".join([
    datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    str(n), profile, rnd, m["status"], rec["recovered"],
    rec["recovered_50_secs"], rec["recovered_99_secs"], p50("resync"),
    per(lambda r: True),
    per(lambda r: r["request"] == "CONSUMER.CREATE"),
    per(lambda r: r["request"] == "CONSUMER.DELETE"),
    per(lambda r: r["request"] == "STREAM.INFO"),
    per(lambda r: r["request"] == "DIRECT.GET"),
    per(lambda r: r["request"] not in kinds),
    per(lambda r: r["error"] != ""),
]))
PY
  done
done
column -s, -t < "$csv"
