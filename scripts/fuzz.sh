#!/usr/bin/env bash
# Fuzzes every cargo-fuzz target of fuzz/ for SECONDS_PER_TARGET seconds (default 60), one after
# another, over its seed corpus (fuzz/corpus/<target>, never grown: new inputs go to a temp dir).
# Prints per target the executions (libFuzzer's stat::number_of_executed_units) and crashes; exits
# non-zero if any target crashed (the crashing input is kept in fuzz/artifacts/<target>/).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]
#   FUZZ_TARGETS="upgrade proxy" scripts/fuzz.sh 30     only these targets
#   FUZZ_SMOKE=1 scripts/fuzz.sh 5                      CI: a short run of every target
#   FUZZ_RUNS=10000000 scripts/fuzz.sh 3600             stop a target at 10M executions
#
# Needs the nightly toolchain (`cargo +nightly`); without it the script says so and exits 0.
# Builds without a sanitizer (the crates forbid unsafe code) but with debug assertions and overflow
# checks, so an arithmetic overflow is a crash.
set -uo pipefail

secs="${1:-60}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root/fuzz"

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz: skipped (no nightly toolchain)"
    exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz"
    nice -n 19 cargo install cargo-fuzz --locked || { echo "fuzz: cannot install cargo-fuzz"; exit 1; }
fi

build=(nice -n 19 cargo +nightly fuzz build --sanitizer none)
if [[ "${FUZZ_SMOKE:-0}" == 1 ]]; then
    # CI: a short run of each target (at most 10 s), the same build (cached under fuzz/target).
    (( secs > 10 )) && secs=10
fi
started=$(date +%s)
if ! "${build[@]}"; then
    echo "fuzz: build failed"
    exit 1
fi
echo "fuzz: built in $(( $(date +%s) - started ))s"

targets="${FUZZ_TARGETS:-$(cargo +nightly fuzz list)}"
bin_dir="$root/fuzz/target/x86_64-unknown-linux-gnu/release"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

failed=0
printf '%-14s %14s %8s\n' target executions crashes > "$work/summary"
for t in $targets; do
    seeds="$root/fuzz/corpus/$t"
    mkdir -p "$work/$t" "$root/fuzz/artifacts/$t"
    corpus=("$work/$t")
    [[ -d "$seeds" ]] && corpus+=("$seeds")
    echo "fuzz: $t for ${secs}s"
    runs=()
    [[ -n "${FUZZ_RUNS:-}" ]] && runs=(-runs="$FUZZ_RUNS")
    nice -n 19 "$bin_dir/$t" "${corpus[@]}" "${runs[@]}" \
        -max_total_time="$secs" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$root/fuzz/artifacts/$t/" >"$work/$t.log" 2>&1
    rc=$?
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work/$t.log" | grep -o '[0-9]*$' | tail -1)
    crashes=$(find "$root/fuzz/artifacts/$t" -newer "$work/summary" -type f | wc -l)
    if [[ $rc -ne 0 && $crashes -eq 0 ]]; then crashes=1; fi
    if [[ $crashes -ne 0 ]]; then
        failed=1
        echo "fuzz: $t CRASHED (exit $rc); last lines of its log:"
        grep -v '^#' "$work/$t.log" | tail -40
        ls "$root/fuzz/artifacts/$t"
    fi
    printf '%-14s %14s %8s\n' "$t" "${execs:-?}" "$crashes" >> "$work/summary"
done
cat "$work/summary"
if [[ $failed -ne 0 ]]; then
    echo "fuzz: FAILED"
    exit 1
fi
echo "fuzz: ok"
