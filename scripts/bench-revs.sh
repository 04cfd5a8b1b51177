#!/usr/bin/env bash
# Before/after benchmark of a change: scripts/bench.sh's cold-start rows for another
# commit (REV, built into its own target dir) and for this working tree, in ONE
# invocation, alternating old/new ROUNDS times so both builds share the machine's
# conditions (the machine is shared and noisy: compare the two builds' ratios within
# this file, not with another day's numbers). The paced 3,000-agent row is skipped.
#
# Writes results/bench/revs.csv: bench.sh's core.csv columns behind `build,round`, and
# prints it with each build's median CPU and RSS per agent.
#
#   ./scripts/bench-revs.sh 2d14d75            # 1,000 agents, 3 rounds
#   ROUNDS=5 ./scripts/bench-revs.sh HEAD~3 1000 3000
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
rev="${1:?usage: scripts/bench-revs.sh REV [SIZES...]  (REV: the commit to compare with)}"
shift
sha="$(git rev-parse --verify "$rev^{commit}")" || {
  echo "error: '$rev' is not a commit of this repository" >&2
  exit 2
}
sizes=("$@")
[[ ${#sizes[@]} -eq 0 ]] && sizes=(1000)
rounds="${ROUNDS:-3}"
target="${CARGO_TARGET_DIR:-$root/target}"
old_tree="$target/bench-revs/${sha:0:12}/tree"
old_target="$target/bench-revs/${sha:0:12}/target"

# The old commit's binaries, from a detached worktree (removed again on exit).
rm -rf "$old_tree"
mkdir -p "$(dirname "$old_tree")"
git worktree add --quiet --detach "$old_tree" "$sha"
trap 'git worktree remove --force "$old_tree" 2>/dev/null || true' EXIT
echo "== building $rev (${sha:0:12}) into $old_target" >&2
(cd "$old_tree" && CARGO_TARGET_DIR="$old_target" cargo build --release --quiet --bin fleetsim --example bare_agents)
echo "== building the working tree" >&2
cargo build --release --quiet --bin fleetsim --example bare_agents

out="results/bench/revs.csv"
mkdir -p results/bench
rows="$(mktemp)"
trap 'rm -f "$rows"; git worktree remove --force "$old_tree" 2>/dev/null || true' EXIT
header=""
for round in $(seq 1 "$rounds"); do
  for build in "old:$old_target/release" "new:$target/release"; do
    name="${build%%:*}"
    one="$(mktemp)"
    echo "== round $round, $name build" >&2
    BENCH_CSV="$one" REPS=1 RATE_AGENTS=0 FLEETSIM_RELEASE_DIR="${build#*:}" ./scripts/bench.sh "${sizes[@]}" >/dev/null
    header="$(head -n 1 "$one")"
    tail -n +2 "$one" | sed "s/^/$name-${sha:0:12},$round,/;" | sed "s/^new-${sha:0:12}/new-$(git rev-parse --short=12 HEAD)+tree/" >> "$rows"
    rm -f "$one"
  done
done
{ echo "build,round,$header"; cat "$rows"; } > "$out"
column -s, -t < "$out"
python3 - "$out" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
print()
for start in sorted({r["start"] for r in rows}):
    for build in dict.fromkeys(r["build"] for r in rows):
        rs = [r for r in rows if r["build"] == build and r["start"] == start and r["cpu_ms_per_agent"]]
        if not rs:
            continue
        cpu = statistics.median(float(r["cpu_ms_per_agent"]) for r in rs)
        rss = statistics.median(float(r["rss_kib_per_agent"]) for r in rs)
        print(f"{start:18} {build:32} median CPU {cpu:.3f} ms/agent, RSS {rss:.1f} KiB/agent ({len(rs)} runs)")
PY
