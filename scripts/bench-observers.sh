#!/usr/bin/env bash
# Benchmark: what fleetsim's observers cost, fleetsim and the broker.
#
# One scenario (scenarios/bench-observers.toml: kanade agents started at 200/s, a 5 s
# settle, a HOLD-second idle hold), run with every observer off (`minimal`), with each
# one of the API tap, the broker sampler, the 100 ms time series and the progress line
# on alone (`+api_tap` ...), and with all four on (`all-on`); ROUNDS rounds, the configs'
# order rotated each round, and each build of BUILDS run in every round (their order
# alternates too), so before/after and on/off share the machine's conditions.
#
# CPU is read from outside, the same way for every config (the broker sampler, which
# fills counts.csv's CPU figures, is one of the observers measured): this script runs
# fleetsim with its log on a pipe and reads utime + stime of fleetsim's process and of
# its embedded nats-server from /proc the moment each "step begins" / "step ends" line
# arrives. Per run: CPU per agent over the cold start (1:start and 2:wait_ready, from
# the start step's beginning to the settle's) and per agent per minute over the idle
# hold (4:hold, from its beginning to its end, the broker's counts after it included).
#
# Writes results/bench/observers.csv (one row per run; rows of builds not run this time
# are kept, so a `before` and an `after` invocation end up in one file) and
# results/bench/observers-summary.csv (per build and config: the median and min-max of
# each figure over the rounds, and the config's cost over `minimal`: the median and
# min-max of the paired per-round differences), and prints the summary.
#
#   ./scripts/bench-observers.sh                          # this tree as `after`, 3 rounds
#   BUILDS="before=/tmp/old/release after=target/release" ./scripts/bench-observers.sh
#   AGENTS=300 ROUNDS=1 HOLD=10 ./scripts/bench-observers.sh
#   BENCH_LOCK=/path/to/lock ./scripts/bench-observers.sh # flock it for each round only
#   ROUNDS=0 ./scripts/bench-observers.sh                 # only re-summarise observers.csv
#   ROUND_FROM=2 ROUNDS=1 BUILDS=... ./scripts/bench-observers.sh # add round 2 to the file
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
NATS_SERVER_BIN="$(./scripts/provision-nats.sh | tail -n 1)"
export NATS_SERVER_BIN
release="${CARGO_TARGET_DIR:-$root/target}/release"
builds="${BUILDS:-after=$release}"
if [[ -z "${BUILDS:-}" && "${ROUNDS:-3}" != 0 ]]; then
  cargo build --release --quiet --bin fleetsim
fi

agents="${AGENTS:-1000}"
rounds="${ROUNDS:-3}"
hold="${HOLD:-20}"
out_dir="results/bench"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$out_dir"
configs="minimal +api_tap +broker +timeseries +progress all-on"
for c in $configs; do
  on() { [[ "$c" == all-on || "$c" == "+$1" ]] && echo true || echo false; }
  {
    sed "s/^duration = \"20s\" # HOLD$/duration = \"${hold}s\"/" scenarios/bench-observers.toml
    printf '\n[observe]\napi_tap = %s\nbroker = %s\ntimeseries = %s\nprogress = %s\n' \
      "$(on api_tap)" "$(on broker)" "$(on timeseries)" "$(on progress)"
  } > "$work/$c.toml"
done

python3 - "$work" "$agents" "$rounds" "$out_dir" "$builds" "$configs" <<'PY'
import csv, datetime, fcntl, os, statistics, subprocess, sys, time

work, agents, rounds, out_dir, builds, configs = sys.argv[1:7]
agents, rounds = int(agents), int(rounds)
builds = [b.split("=", 1) for b in builds.split()]
configs = configs.split()
tick = os.sysconf("SC_CLK_TCK")
lock_path = os.environ.get("BENCH_LOCK", "")
COLUMNS = ["date", "build", "agents", "config", "round", "exit",
           "fleetsim_cold_start_cpu_ms_per_agent", "broker_cold_start_cpu_ms_per_agent",
           "fleetsim_idle_cpu_ms_per_agent_per_min", "broker_idle_cpu_ms_per_agent_per_min",
           "cold_start_secs", "hold_secs"]
FIGURES = COLUMNS[6:10]


def cpu(pid):
    """utime + stime of every thread of `pid`, in seconds; None once it is gone."""
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / tick


def broker_of(pid):
    """The nats-server process below fleetsim's `pid` (the embedded broker)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            name = stat[stat.index("(") + 1 : stat.rindex(")")]
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append((int(entry), name))
    todo = [pid]
    while todo:
        for child, name in children.get(todo.pop(), []):
            if name == "nats-server":
                return child
            todo.append(child)
    return None


def run(binary, config, rnd, build):
    """One fleetsim run; CPU of both processes at each step line of its log."""
    toml = os.path.join(work, config + ".toml")
    out = os.path.join(work, f"{build}-{config}-{rnd}")
    env = dict(os.environ, FLEETSIM_LOG="info,async_nats=warn", NO_COLOR="1")
    proc = subprocess.Popen([binary, "run", toml, "--agents", str(agents), "--out", out],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True)
    marks, broker = {}, None
    for line in proc.stderr:
        now = time.monotonic()
        for event in ("step begins", "step ends"):
            if event in line and "step=" in line:
                step = line.split("step=", 1)[1].split()[0]
                broker = broker or broker_of(proc.pid)
                marks[(step, event)] = (now, cpu(proc.pid), cpu(broker) if broker else None)
    code = proc.wait()
    row = {"date": datetime.date.today().isoformat(), "build": build, "agents": agents,
           "config": config, "round": rnd, "exit": code}

    def spend(a, b, who, per_min):
        if a not in marks or b not in marks or marks[a][who] is None or marks[b][who] is None:
            return ""
        secs = marks[b][0] - marks[a][0]
        ms = (marks[b][who] - marks[a][who]) * 1000 / agents
        return f"{ms * 60 / secs if per_min else ms:.4f}"

    cold = (("1:start", "step begins"), ("3:hold", "step begins"))
    idle = (("4:hold", "step begins"), ("4:hold", "step ends"))
    row["fleetsim_cold_start_cpu_ms_per_agent"] = spend(*cold, 1, False)
    row["broker_cold_start_cpu_ms_per_agent"] = spend(*cold, 2, False)
    row["fleetsim_idle_cpu_ms_per_agent_per_min"] = spend(*idle, 1, True)
    row["broker_idle_cpu_ms_per_agent_per_min"] = spend(*idle, 2, True)
    for name, (a, b) in (("cold_start_secs", cold), ("hold_secs", idle)):
        row[name] = f"{marks[b][0] - marks[a][0]:.3f}" if a in marks and b in marks else ""
    return row


csv_path = os.path.join(out_dir, "observers.csv")
ran = {name for name, _ in builds} if rounds else set()
first = int(os.environ.get("ROUND_FROM", "1"))
kept = []
if os.path.exists(csv_path):
    with open(csv_path) as f:
        kept = [r for r in csv.DictReader(f) if r.get("build")
                and (r["build"] not in ran or int(r["round"]) < first)]
rows = []


def save():
    """The file as it stands: rows of other builds, then this invocation's so far (an
    interrupted invocation keeps the rounds it finished)."""
    with open(csv_path + ".tmp", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(kept + rows)
    os.replace(csv_path + ".tmp", csv_path)


for rnd in range(first, first + rounds):
    order = configs[(rnd - 1) % len(configs):] + configs[:(rnd - 1) % len(configs)]
    pairs = builds if rnd % 2 else builds[::-1]
    lock = open(lock_path, "a") if lock_path else None
    if lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        for config in order:
            for build, release in pairs:
                print(f"== observers: round {rnd}, {build}, {config}, {agents} agents",
                      file=sys.stderr, flush=True)
                rows.append(run(os.path.join(release, "fleetsim"), config, rnd, build))
                save()
    finally:
        if lock:
            lock.close()

save()
all_rows = kept + rows

# The summary, over every build in the file.
def num(r, k):
    try:
        return float(r[k])
    except (KeyError, ValueError):
        return None

summary = []
names = list(dict.fromkeys(r["build"] for r in all_rows))
for build in names:
    mine = [r for r in all_rows if r["build"] == build]
    base = {r["round"]: r for r in mine if r["config"] == "minimal"}
    for config in configs:
        these = [r for r in mine if r["config"] == config]
        for fig in FIGURES:
            vals = [v for v in (num(r, fig) for r in these) if v is not None]
            diffs = [num(r, fig) - num(base[r["round"]], fig) for r in these
                     if r["round"] in base and num(r, fig) is not None
                     and num(base[r["round"]], fig) is not None]
            if not vals:
                continue
            f3 = lambda v: f"{v:.3f}"
            summary.append({
                "build": build, "config": config, "figure": fig, "runs": len(vals),
                "median": f3(statistics.median(vals)), "min": f3(min(vals)), "max": f3(max(vals)),
                "cost_vs_minimal_median": f3(statistics.median(diffs)) if diffs and config != "minimal" else "",
                "cost_vs_minimal_min": f3(min(diffs)) if diffs and config != "minimal" else "",
                "cost_vs_minimal_max": f3(max(diffs)) if diffs and config != "minimal" else "",
            })
summary_path = os.path.join(out_dir, "observers-summary.csv")
with open(summary_path, "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(summary[0].keys()) if summary else ["build"])
    w.writeheader()
    w.writerows(summary)
print(f"{'build':8} {'config':12} {'figure':42} {'median':>8} {'min-max':>17} {'cost vs minimal (min-max)':>28}")
for s in summary:
    cost = (f"{s['cost_vs_minimal_median']} ({s['cost_vs_minimal_min']}..{s['cost_vs_minimal_max']})"
            if s["cost_vs_minimal_median"] else "")
    print(f"{s['build']:8} {s['config']:12} {s['figure']:42} {s['median']:>8} "
          f"{s['min'] + '-' + s['max']:>17} {cost:>28}")
PY
