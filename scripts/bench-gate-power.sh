#!/usr/bin/env bash
# Benchmark: the power of the CI gate (`fleetsim gate scenarios/ci-gate.toml`, its
# default 5 repeats per side) on this machine: how much each judged figure varies, the
# smallest change it detects, and whether known, injected changes are flagged while
# identical sides pass.
#
# Gates run, one after another (each about 190 s on 2 cores):
#   aa-1, aa-2        the gate scenario against itself (A/A): must pass; their intervals
#                     measure how wide the gate's 95% CI is at the default repeats
#   extra-consumer    the candidate's agents open one more watch (kanade + 1 consumer):
#                     must fail on the exact counts
#   link-2ms          both sides through the fault proxy, the candidate's links 2 ms
#                     slower each way ([fleet] link_latency): a slower network
#   broker-cpus-0     the candidate's broker pinned to CPU 0 ([broker] cpus): a broker
#                     that shares one core with part of the fleet
#   broker-quota-50   the candidate's broker limited to half a core ([broker] cpu_quota,
#                     CFS bandwidth through a cgroup: needs root)
#   aa-saturation     A/A of the gate scenario with an all-at-once start, judging the
#                     API throughput the broker sustains (count[start].api.rate_per_sec):
#                     the saturation figure's spread (not in the default gate: see
#                     docs/ci-gate.md)
#
# results/bench/gate-power.csv: one row per judged figure (phase, figure): its kind, the
# run-to-run spread over the A/A gates' runs (coefficient of variation of each run's
# value), the widest 95% interval half-width of the A/A gates, the effect size
# ([gate] effects), the smallest change detected (effect + 1.43 x half-width: a true
# change that large puts the interval's lower end above the effect size in 80% of
# gates; for an exact count, any change), and each gate's verdict and measured change.
# results/bench/gate-power-gates.csv: per gate its exit code and wall time, and the
# reference's and the candidate's value of every measured figure (and failed count).
#
#   ./scripts/bench-gate-power.sh
#   ONLY="aa-1 extra-consumer" ./scripts/bench-gate-power.sh   # a subset
#   AGENTS=30 REPEAT=3 ./scripts/bench-gate-power.sh            # a quick look, not the figures
#   WORK=/tmp/gp REUSE=1 ./scripts/bench-gate-power.sh           # run only the gates missing
#                       # from WORK; judge the kept ones again (new effect sizes), then the table
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
release="${CARGO_TARGET_DIR:-$root/target}/release"
NATS_SERVER_BIN="$(./scripts/provision-nats.sh | tail -n 1)"
export NATS_SERVER_BIN
cargo build --release --quiet

gates="${ONLY:-aa-1 aa-2 extra-consumer link-2ms broker-cpus-0 broker-quota-50 aa-saturation}"
out_dir="results/bench"
work="${WORK:-$(mktemp -d)}"
mkdir -p "$out_dir" "$work"
scenario=scenarios/ci-gate.toml

# The candidate scenarios: the gate scenario with one change each.
python3 - "$scenario" "$work" <<'PY'
import re, sys
src, work = sys.argv[1], sys.argv[2]
text = open(src).read()
def put(name, body):
    open(f"{work}/{name}.toml", "w").write(body)
def in_table(body, table, line):
    return body.replace(f"[{table}]\n", f"[{table}]\n{line}\n", 1)
put("reference", text)
proxied = in_table(text, "fleet", "proxy = true")
put("proxied", proxied)
put("link-2ms", in_table(proxied, "fleet", 'link_latency = "2ms"'))
put("broker-cpus-0", in_table(text, "broker", 'cpus = "0"'))
put("broker-quota-50", in_table(text, "broker", 'cpu_quota = "50%"'))
# All at once: every agent asks as fast as the broker answers until the last is ready.
saturation = text.replace('mode = "rate"\nrate = 60\n', 'mode = "all_at_once"\n', 1)
assert saturation != text, "the gate scenario's paced start"
start = saturation.index("figures = [")
end = saturation.index("]\n", start) + 2
saturation = saturation[:start] + 'figures = ["count[start].api.rate_per_sec"]\n' + saturation[end:]
saturation = re.sub(r"^effects = .*\n", "", saturation, flags=re.M)
# Its spread is about 30 % (half-width) at 5 runs a side: an effect size of twice that.
saturation = re.sub(r'^effect = ".*"$', 'effect = "60%"', saturation, flags=re.M)
put("aa-saturation", saturation)
# kanade with one more watch, opened by the freeze watch task (as tests/counts.rs).
kanade = open("src/profiles/kanade.toml").read()
profile = []
for line in kanade.splitlines():
    if line.startswith("[["):
        line = "[[profiles.eight." + line[2:]
    elif line.startswith("[") and "=" not in line:
        line = "[profiles.eight." + line[1:]
    profile.append(line)
profile = "\n".join(profile) + "\n"
opened = '  { open = "freeze" },\n'
assert profile.count(opened) == 1, "one freeze open to add to"
profile = profile.replace(opened, opened + '  { open = "extra" },\n')
profile += '[[profiles.eight.consumers]]\nname = "extra"\nwatch = { bucket = "fleet_config", key = "freeze" }\n'
put("extra-consumer", in_table(text, "fleet", 'profile = "eight"') + "\n" + profile)
PY

for gate in $gates; do
  case "$gate" in
    aa-saturation) ref=aa-saturation; cand=aa-saturation ;;
    aa-*) ref=reference; cand=reference ;;
    link-2ms) ref=proxied; cand=link-2ms ;;
    *) ref=reference; cand="$gate" ;;
  esac
  if [[ -n "${REUSE:-}" && -f "$work/$gate.rc" ]]; then
    # Kept: judged again with the scenario's [gate] as it is now (fleetsim gate --judge).
    echo "== gate $gate: kept from $work, judged again" >&2
    set +e
    "$release"/fleetsim gate "$work/$ref.toml" --judge "$(ls -d "$work/$gate"/*/ | head -n 1)" \
      > "$work/$gate.judged.log" 2>&1
    echo "$?" > "$work/$gate.rc"
    set -e
    continue
  fi
  echo "== gate $gate: $ref vs $cand" >&2
  rm -rf "${work:?}/$gate"
  set +e
  "$release"/fleetsim gate "$work/$ref.toml" --candidate "$work/$cand.toml" --out "$work/$gate" \
    ${AGENTS:+--agents "$AGENTS"} ${REPEAT:+--repeat "$REPEAT"} > "$work/$gate.log" 2>&1
  rc=$?
  set -e
  echo "$rc" > "$work/$gate.rc"
  echo "   exit $rc; $(tail -n 2 "$work/$gate.log" | head -n 1)" >&2
done

python3 - "$work" "$out_dir/gate-power.csv" "$gates" <<'PY'
import csv, glob, math, os, statistics, sys, datetime
work, out, gates = sys.argv[1], sys.argv[2], sys.argv[3].split()

def gate_dir(g):
    dirs = glob.glob(f"{work}/{g}/*/")
    return dirs[0] if dirs else None

def gate_rows(g):
    d = gate_dir(g)
    if not d or not os.path.exists(d + "gate.csv"):
        return {}
    return {(r["phase"], r["figure"]): r for r in csv.DictReader(open(d + "gate.csv"))}

def run_value(run, phase, figure, kind):
    """One run's value of a judged figure: a count, or a latency's p50/p99 (ms)."""
    if figure.startswith("count."):
        for r in csv.DictReader(open(run + "/counts.csv")):
            if r["phase"] == phase and r["figure"] == figure[len("count."):]:
                return float(r["value"])
        return None
    metric, stat = figure.rsplit(".", 1)
    for r in csv.DictReader(open(run + "/summary.csv")):
        if r["phase"] == phase and r["metric"] == metric:
            return float(r[stat])
    return None

# The A/A gates of the gate scenario (aa-saturation judges another scenario's figure
# and stands in for its own spread only).
aa = [g for g in gates if g.startswith("aa-") and g != "aa-saturation"]
rows = {}
for g in gates:
    for key, r in gate_rows(g).items():
        rows.setdefault(key, {})[g] = r
today = datetime.date.today().isoformat()
fields = ["date", "phase", "figure", "kind", "aa_runs", "mean", "cv_pct", "ci_half_width_pct",
          "effect_pct", "min_detectable_pct"]
for g in gates:
    fields += [f"{g}_verdict", f"{g}_change_pct"]
with open(out, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(fields)
    for (phase, figure), by_gate in rows.items():
        first = next(iter(by_gate.values()))
        kind = first["kind"]
        own_aa = ["aa-saturation"] if set(by_gate) == {"aa-saturation"} else aa
        values = []
        for g in own_aa:
            d = gate_dir(g)
            if not d:
                continue
            for run in sorted(glob.glob(d + "runs/*")):
                v = run_value(run, phase, figure, kind)
                if v is not None:
                    values.append(v)
        mean = statistics.fmean(values) if values else None
        cv = (statistics.stdev(values) / mean * 100) if len(values) > 1 and mean else None
        half = []
        for g in own_aa:
            r = by_gate.get(g)
            if r and r["ci_low"] and r["ci_high"]:
                half.append((float(r["ci_high"]) - float(r["ci_low"])) / 2 * 100)
        half_width = max(half) if half else None
        effect = float(first["effect"]) * 100 if first["effect"] else None
        if kind in ("exact", "stable"):
            mdc = "any change"
        elif effect is not None and half_width is not None:
            mdc = f"{effect + 1.43 * half_width:.1f}"
        else:
            mdc = ""
        fmt = lambda x, p=1: "" if x is None else f"{x:.{p}f}"
        row = [today, phase, figure, kind, len(values), fmt(mean, 3), fmt(cv), fmt(half_width),
               fmt(effect), mdc]
        for g in gates:
            r = by_gate.get(g)
            if r is None:
                row += ["", ""]
            else:
                ch = r["change"]
                row += [r["verdict"], f"{float(ch) * 100:.1f}" if ch else ""]
        w.writerow(row)
# Per gate: its exit code and wall time, and each measured figure's values (and every
# failed count): the figures the docs quote.
import json
def secs(stamp):
    return datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
with open(out.replace(".csv", "-gates.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["gate", "exit", "wall_secs", "phase", "figure", "kind", "reference",
                "candidate", "change_pct", "ci_low_pct", "ci_high_pct", "verdict"])
    for g in gates:
        rc = open(f"{work}/{g}.rc").read().strip() if os.path.exists(f"{work}/{g}.rc") else "?"
        print(f"{g}: exit {rc}", file=sys.stderr)
        d = gate_dir(g)
        wall = ""
        if d and os.path.exists(d + "manifest.json"):
            m = json.load(open(d + "manifest.json"))
            if m.get("started_at") and m.get("ended_at"):
                wall = f"{(secs(m['ended_at']) - secs(m['started_at'])).total_seconds():.0f}"
        pct = lambda x: f"{float(x) * 100:.1f}" if x else ""
        for (phase, figure), r in gate_rows(g).items():
            if r["kind"] in ("exact", "stable") and r["verdict"] != "fail":
                continue
            w.writerow([g, rc, wall, phase, figure, r["kind"], r["reference"], r["candidate"],
                        pct(r["change"]), pct(r["ci_low"]), pct(r["ci_high"]), r["verdict"]])
PY
echo "wrote $out_dir/gate-power.csv and $out_dir/gate-power-gates.csv (gates kept in $work)" >&2
column -s, -t < "$out_dir/gate-power.csv" | cut -c1-220
