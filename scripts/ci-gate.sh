#!/usr/bin/env bash
# fleetsim as a CI perf gate: run scenarios/ci-gate.toml against a nats-server and fail
# the build when the broker's behaviour regresses.
#
#   scripts/ci-gate.sh                    # nats-server in docker (docker/docker-compose.yml)
#   scripts/ci-gate.sh --no-docker        # fleetsim's embedded nats-server instead
#   scripts/ci-gate.sh --update-baseline  # also store this run as the new baseline
#   scripts/ci-gate.sh --no-docker --candidate pr.toml     # same-runner A/B (fleetsim gate)
#   scripts/ci-gate.sh --no-docker --reference-server old/nats-server \
#                      --candidate-server new/nats-server   # a nats-server upgrade gated
#
# A/B mode (--candidate, --reference, --reference-server, --candidate-server) runs
# `fleetsim gate`: the reference (SCENARIO, or --reference FILE) and the candidate
# interleaved, repeated, in this one job, judged figure by figure (exact counts equal;
# measured figures on a 95% interval against their effect size; docs/ci-gate.md). No
# stored baseline is involved. The servers need the embedded broker (--no-docker); a
# candidate scenario also runs against the container, both sides on the same broker.
#
# Docker mode starts the compose service, waits for /healthz, runs the scenario with
# --server/--monitor pointing at the container and `docker restart` as the herd trigger
# (--herd-command replaces the scenario's broker_restart step), and always tears the
# container and its volume down. --no-docker runs the same scenario against the embedded
# broker, whose broker_restart step kills and restarts it.
#
# Then, unless AGENTS overrides the fleet size, the run is compared with the baseline
# (fleetsim compare; tolerances from the scenario's [thresholds]).
#
# Environment:
#   AGENTS       fleet size override (default: the scenario's); skips the baseline
#                comparison unless BASELINE is set explicitly
#   SCENARIO     scenario file (default scenarios/ci-gate.toml)
#   REPEAT       A/B mode: runs per side (default: the scenario's [gate] repeat)
#   OUT          where run directories and JUnit files go (default results/ci-gate)
#   JUNIT        the run's JUnit file (default $OUT/junit.xml; the comparison's is
#                $OUT/junit-compare.xml)
#   BASELINE     baseline run directory (default results/baseline with --no-docker,
#                results/baseline-docker in docker mode: baselines are per broker setup)
#   FLEETSIM     fleetsim binary (default: cargo build --release, then
#                ${CARGO_TARGET_DIR:-target}/release/fleetsim)
#   NATS_CONTAINER  container name (default fleetsim-nats, as in the compose file)
#   NATS_URL, NATS_MONITOR  the container's ports (default 127.0.0.1:4222 and :8222)
#   NATS_SYS_PASSWORD  the container's system-account password (default: random per
#                run; one you set must start with a letter: nats-server parses it)
#
# Exit codes: 0 the gate passed; 1 the run failed, a threshold failed or a metric
# regressed beyond its tolerance (A/B: the candidate is worse); 2 bad input; 3 broker or
# environment (docker missing, the container never healthy, nats-server missing); 4
# (A/B only) inconclusive: the intervals are too wide to tell, more repeats needed.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

mode=docker
update_baseline=0
gate_args=()
reference=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --no-docker) mode=embedded ;;
    --update-baseline) update_baseline=1 ;;
    --candidate|--reference-server|--candidate-server|--reference)
      if [[ $# -lt 2 ]]; then echo "ci-gate.sh: $1 needs a value" >&2; exit 2; fi
      if [[ "$1" == --reference ]]; then reference="$2"; else gate_args+=("$1" "$2"); fi
      ab=1
      shift ;;
    -h|--help) sed -n '2,48p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "ci-gate.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done
ab="${ab:-0}"

SCENARIO="${SCENARIO:-scenarios/ci-gate.toml}"
OUT="${OUT:-results/ci-gate}"
JUNIT="${JUNIT:-$OUT/junit.xml}"
AGENTS="${AGENTS:-}"
NATS_CONTAINER="${NATS_CONTAINER:-fleetsim-nats}"
NATS_URL="${NATS_URL:-nats://127.0.0.1:4222}"
NATS_MONITOR="${NATS_MONITOR:-http://127.0.0.1:8222}"
compose_file="$root/docker/docker-compose.yml"
baseline_given=1
if [[ -z "${BASELINE:-}" ]]; then
  baseline_given=0
  if [[ "$mode" == embedded ]]; then BASELINE=results/baseline; else BASELINE=results/baseline-docker; fi
fi
mkdir -p "$OUT"

log() { echo "ci-gate: $*" >&2; }

if [[ -z "${FLEETSIM:-}" ]]; then
  log "building fleetsim (release)"
  cargo build --release --quiet
  FLEETSIM="${CARGO_TARGET_DIR:-$root/target}/release/fleetsim"
fi

if [[ "$ab" == 1 ]]; then
  if [[ "$update_baseline" == 1 ]]; then
    echo "ci-gate.sh: --update-baseline records a single run; an A/B gate needs no baseline" >&2
    exit 2
  fi
  run_args=(gate "${reference:-$SCENARIO}" "${gate_args[@]}" --out "$OUT" --junit "$JUNIT")
  if [[ -n "${REPEAT:-}" ]]; then run_args+=(--repeat "$REPEAT"); fi
else
  run_args=(run "$SCENARIO" --out "$OUT" --junit "$JUNIT")
fi
if [[ -n "$AGENTS" ]]; then
  run_args+=(--agents "$AGENTS")
fi

compose() {
  if docker compose version >/dev/null 2>&1; then
    docker compose -f "$compose_file" "$@"
  elif command -v docker-compose >/dev/null 2>&1; then
    docker-compose -f "$compose_file" "$@"
  else
    log "neither 'docker compose' nor docker-compose is installed"
    return 3
  fi
}

# http GET, success on a 2xx: curl, else wget, else python3.
http_ok() {
  if command -v curl >/dev/null 2>&1; then
    curl -fsS -o /dev/null --max-time 2 "$1"
  elif command -v wget >/dev/null 2>&1; then
    wget -q -O /dev/null -T 2 "$1"
  else
    python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' "$1"
  fi
}

if [[ "$mode" == docker ]]; then
  if ! command -v docker >/dev/null 2>&1; then
    log "docker is not installed; use --no-docker to gate against fleetsim's embedded broker"
    exit 3
  fi
  teardown() {
    log "tearing the broker down"
    compose down -v --remove-orphans >/dev/null 2>&1 || true
  }
  trap teardown EXIT
  trap 'exit 130' INT TERM
  # The container's system-account user, so the run counts the API queue's
  # LIMIT_REACHED advisories (broker.api_limit_reached): a random password per run,
  # handed to the container and to fleetsim through the environment, never printed.
  # nats-server reads the variable as a config value, so it must look like a string:
  # a letter, then hex (a leading digit or '-' would parse as a number or a date).
  NATS_SYS_PASSWORD="${NATS_SYS_PASSWORD:-p$(python3 -c 'import secrets; print(secrets.token_hex(16))')}"
  export NATS_SYS_PASSWORD
  hostport="${NATS_URL#*://}"
  FLEETSIM_SYSTEM_URL="$(python3 -c 'import sys, urllib.parse; print("nats://sys:" + urllib.parse.quote(sys.argv[1], safe="") + "@" + sys.argv[2])' "$NATS_SYS_PASSWORD" "${hostport##*@}")"
  export FLEETSIM_SYSTEM_URL
  log "starting nats-server (docker compose)"
  compose up -d || exit 3
  log "waiting for $NATS_MONITOR/healthz"
  healthy=0
  for _ in $(seq 1 60); do
    if http_ok "$NATS_MONITOR/healthz" 2>/dev/null; then healthy=1; break; fi
    sleep 1
  done
  if [[ "$healthy" != 1 ]]; then
    log "nats-server did not become healthy within 60 s"
    compose logs --tail 50 >&2 || true
    exit 3
  fi
  run_args+=(--server "$NATS_URL" --monitor "$NATS_MONITOR"
             --herd-command "docker restart -t 0 $NATS_CONTAINER")
else
  if [[ -z "${NATS_SERVER_BIN:-}" ]]; then
    NATS_SERVER_BIN="$("$root/scripts/provision-nats.sh" | tail -n 1)" || exit 3
    export NATS_SERVER_BIN
  fi
fi

if [[ "$ab" == 1 ]]; then
  log "gating a candidate against ${reference:-$SCENARIO} ($mode broker${AGENTS:+, $AGENTS agents})"
else
  log "running $SCENARIO ($mode broker${AGENTS:+, $AGENTS agents})"
fi
run_log="$OUT/run.log"
set +e
"$FLEETSIM" "${run_args[@]}" | tee "$run_log"
run_rc=${PIPESTATUS[0]}
set -e
run_dir="$(sed -n 's/^results: //p' "$run_log" | tail -n 1)"
log "fleetsim run exited $run_rc; results: ${run_dir:-none}; JUnit: $JUNIT"
if [[ "$run_rc" == 2 || "$run_rc" == 3 || -z "$run_dir" ]]; then
  [[ "$run_rc" == 0 || "$run_rc" == 1 ]] && run_rc=3
  exit "$run_rc"
fi
if [[ "$ab" == 1 ]]; then
  # The gate judged the candidate against its reference in this job: gate.csv in the
  # run directory has every figure; no stored baseline to compare with.
  case "$run_rc" in
    0) log "gate passed (gate.csv in $run_dir)" ;;
    4) log "gate INCONCLUSIVE: the intervals are too wide to tell; rerun with more repeats ([gate] repeat)" ;;
    *) log "GATE FAILED: see gate.csv in $run_dir and the table above" ;;
  esac
  exit "$run_rc"
fi

compare_rc=0
if [[ -n "$AGENTS" && "$baseline_given" == 0 ]]; then
  log "baseline comparison skipped: AGENTS=$AGENTS changes the fleet the baseline measured"
elif [[ ! -e "$BASELINE" ]]; then
  log "baseline comparison skipped: no baseline at $BASELINE (create one with --update-baseline on the machine class CI runs on)"
else
  set +e
  "$FLEETSIM" compare "$run_dir" --baseline "$BASELINE" --junit "$OUT/junit-compare.xml"
  compare_rc=$?
  set -e
  log "fleetsim compare exited $compare_rc; JUnit: $OUT/junit-compare.xml"
  if [[ "$compare_rc" -ge 2 ]]; then exit "$compare_rc"; fi
fi

if [[ "$update_baseline" == 1 ]]; then
  if [[ "$run_rc" != 0 ]]; then
    log "not updating the baseline: the run did not pass"
  elif [[ -n "$AGENTS" ]]; then
    log "not updating the baseline: AGENTS=$AGENTS is not the scenario's fleet"
  else
    mkdir -p "$BASELINE"
    for f in summary.csv manifest.json thresholds.csv recovery.csv writes.csv errors.csv steps.csv counts.csv; do
      if [[ -f "$run_dir/$f" ]]; then cp "$run_dir/$f" "$BASELINE/$f"; fi
    done
    log "baseline updated: $BASELINE (from $run_dir)"
  fi
fi

if [[ "$run_rc" != 0 || "$compare_rc" != 0 ]]; then
  log "GATE FAILED (run exit $run_rc, compare exit $compare_rc): see thresholds.csv in $run_dir and the tables above"
  exit 1
fi
log "gate passed"
