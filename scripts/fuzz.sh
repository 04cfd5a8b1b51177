#!/usr/bin/env bash
# Fuzzes the scenario parser and validator (fuzz/fuzz_targets/parse_scenario.rs) with
# libFuzzer through cargo-fuzz: no panic, no hang, every rejection located at file:line.
#
#   scripts/fuzz.sh              # 100,000 executions (a quick check)
#   scripts/fuzz.sh 1000000      # one million
#   scripts/fuzz.sh -1 -max_total_time=600  # ten minutes (-1: no limit on runs)
#   scripts/fuzz.sh cmin         # minimize the kept corpus
#
# New inputs go to a scratch corpus under the build directory; the kept corpus
# (fuzz/corpus/parse_scenario, seeded with scenarios/*.toml and the invalid examples
# under tests/scenarios/invalid) is only read, so it stays small. A crash is written to
# fuzz/artifacts/parse_scenario/; replay it with
#   cargo +nightly fuzz run -s none parse_scenario fuzz/artifacts/parse_scenario/<file>
# and add it as a regression case to the scenario tests.
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`) and a nightly toolchain; without one,
# stable is used with RUSTC_BOOTSTRAP=1. One job, one core. FUZZ_TARGET_DIR sets the
# build directory (default fuzz/target).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root/fuzz"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz is missing: cargo install cargo-fuzz" >&2
  exit 2
fi
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  cargo=(cargo +nightly)
else
  export RUSTC_BOOTSTRAP=1
  cargo=(cargo)
fi
# The fuzzed parser is the shipped one: the same versions of toml and every other crate
# as the root Cargo.lock (cargo adds libfuzzer-sys to the copy).
cp "$root/Cargo.lock" "$root/fuzz/Cargo.lock"
target_dir="${FUZZ_TARGET_DIR:-$root/fuzz/target}"
kept="$root/fuzz/corpus/parse_scenario"
fuzz=("${cargo[@]}" fuzz)
# No sanitizer: the parser is safe Rust, and panics are what the target looks for.
build=(-s none --target-dir "$target_dir" parse_scenario)

if [ "${1:-}" = cmin ]; then
  exec "${fuzz[@]}" cmin "${build[@]}" "$kept"
fi

runs="${1:-100000}"
shift || true
scratch="$target_dir/corpus-scratch"
mkdir -p "$scratch"
"${fuzz[@]}" run "${build[@]}" "$scratch" "$kept" -- \
  -dict="$root/fuzz/parse_scenario.dict" -runs="$runs" -timeout=10 -max_len=16384 -rss_limit_mb=2048 -print_final_stats=1 "$@"
