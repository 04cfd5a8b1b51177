#!/usr/bin/env bash
# Benchmark: where the CPU of a cold start goes. `perf record` (Debian's linux-perf;
# needs root or kernel.perf_event_paranoid <= 1 for the kernel's share) samples, in one
# invocation, the same all-at-once cold start of AGENTS kanade agents run by fleetsim
# (scenarios/bench-cold-start-051.toml, every measurement on) and by
# examples/bare_agents.rs (the profile's async-nats calls only: the floor). Each run
# starts its own embedded nats-server, which perf follows as a child, so the broker's
# share is in the same samples.
#
# Every sample is attributed to a process (fleetsim, bare_agents, nats-server) and, in
# the fleet's process, to the crate its function belongs to (fleetsim, async_nats,
# tokio, hdrhistogram, rustls/ring, std/alloc, libc, the kernel...). Writes
# results/bench/profile.md: the commands, the share per process and per crate, and the
# top functions of fleetsim's own code, and prints it.
#
#   ./scripts/bench-profile.sh              # 1000 agents
#   AGENTS=200 ./scripts/bench-profile.sh
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
release="${CARGO_TARGET_DIR:-$root/target}/release"
NATS_SERVER_BIN="$(./scripts/provision-nats.sh | tail -n 1)"
export NATS_SERVER_BIN
if ! command -v perf >/dev/null 2>&1; then
  echo "bench-profile.sh: perf is not installed (Debian: apt-get install linux-perf)" >&2
  exit 3
fi
cargo build --release --quiet --bin fleetsim --example bare_agents

agents="${AGENTS:-1000}"
freq="${FREQ:-999}"
out_dir="results/bench"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$out_dir"
scenario=scenarios/bench-cold-start-051.toml

echo "== perf: fleetsim, $agents agents" >&2
perf record -q -F "$freq" -o "$work/fleetsim.data" -- \
  "$release"/fleetsim run "$scenario" --agents "$agents" --out "$work/runs" >/dev/null 2>&1
echo "== perf: bare_agents, $agents agents" >&2
perf record -q -F "$freq" -o "$work/bare.data" -- \
  "$release"/examples/bare_agents "$scenario" "$agents" >/dev/null 2>&1

for side in fleetsim bare; do
  perf report -i "$work/$side.data" --no-children --sort comm,dso,sym --stdio -g none \
    --percent-limit 0 2>/dev/null > "$work/$side.txt" || true
  perf report -i "$work/$side.data" --stdio --header-only 2>/dev/null \
    | sed -n 's/^# sample duration : *//p; s/^# total samples *//p' > "$work/$side.head" || true
done

python3 - "$work" "$agents" "$freq" > "$out_dir/profile.md" <<'PY'
import re, sys, collections, datetime, subprocess
work, agents, freq = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

CRATES = ["fleetsim", "bare_agents", "async_nats", "tokio", "hdrhistogram", "rustls", "ring",
          "serde_json", "serde", "bytes", "futures", "nkeys", "tracing", "hashbrown", "rand",
          "memchr", "csv", "toml", "governor", "core", "alloc", "std"]

def crate_of(dso, sym):
    if "kernel" in dso:
        return "kernel"
    if "libc" in dso or "ld-linux" in dso:
        return "libc (malloc, syscalls)"
    # `<tokio::x::Y as core::future::Future>::poll`: the first crate path named wins.
    for m in re.finditer(r"([A-Za-z_][A-Za-z0-9_]*)::", sym):
        name = m.group(1)
        if name in ("_", "impl"):
            continue
        if name in CRATES:
            return {"ring": "rustls/ring", "rustls": "rustls/ring"}.get(name, name)
        return "other: " + name
    return "unresolved"

def parse(path):
    rows = []
    for line in open(path, errors="replace"):
        m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+(\S+)\s+\[([.kgu])\]\s+(.*)$", line)
        if m:
            rows.append((float(m.group(1)), m.group(2), m.group(3), m.group(5).strip()))
    return rows

def samples(side):
    try:
        out = subprocess.run(["perf", "report", "-i", f"{work}/{side}.data", "--stdio",
                              "--sort", "comm", "-g", "none", "--no-children"],
                             capture_output=True, text=True).stdout
        m = re.search(r"# Samples: ([\d.]+[KM]?)", out)
        return m.group(1) if m else "?"
    except Exception:
        return "?"

print(f"# Where a cold start's CPU goes\n")
print(f"`./scripts/bench-profile.sh` (AGENTS={agents}), {datetime.date.today().isoformat()}: "
      f"`perf record -F {freq}` of an all-at-once cold start of {agents} kanade agents "
      f"(async-nats 0.51, `scenarios/bench-cold-start-051.toml`), by fleetsim with every "
      f"measurement on, then by `examples/bare_agents` (the profile's async-nats calls "
      f"only), each with its own embedded nats-server (perf follows it as a child). "
      f"Percentages are of each recording's samples (summed from perf's per-function "
      f"rows, each rounded to 0.01 %, so a column may add up to a little over 100 %).\n")
for side, title in [("fleetsim", "fleetsim"), ("bare", "bare_agents")]:
    rows = parse(f"{work}/{side}.txt")
    by_comm = collections.Counter()
    for pct, comm, dso, sym in rows:
        by_comm["nats-server" if comm.startswith("nats-server") else comm] += pct
    print(f"## {title}: samples {samples(side)}\n")
    print("| process (thread name) | share |\n|---|---:|")
    for comm, pct in by_comm.most_common(12):
        print(f"| `{comm}` | {pct:.1f} % |")
    fleet_rows = [r for r in rows if not r[1].startswith("nats-server")]
    total = sum(r[0] for r in fleet_rows) or 1.0
    by_crate = collections.Counter()
    for pct, comm, dso, sym in fleet_rows:
        by_crate[crate_of(dso, sym)] += pct
    print(f"\nThe fleet's process ({total:.1f} % of the samples), by crate:\n")
    print("| crate | share of the fleet's process |\n|---|---:|")
    for crate, pct in by_crate.most_common(14):
        print(f"| {crate} | {pct / total * 100:.1f} % |")
    own = [r for r in fleet_rows if crate_of(r[2], r[3]) in ("fleetsim", "bare_agents")]
    if own:
        print(f"\nTop functions of {title}'s own code:\n")
        print("| share of the fleet's process | function |\n|---|---|")
        for pct, comm, dso, sym in sorted(own, reverse=True)[:12]:
            sym = sym if len(sym) < 110 else sym[:107] + "..."
            print(f"| {pct / total * 100:.2f} % | `{sym}` |")
    print()
PY
cat "$out_dir/profile.md"
