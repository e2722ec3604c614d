#!/usr/bin/env bash
# The project's test command (README): ./scripts/test.sh
# Installs what the tests need, then runs the format check, clippy and the whole test suite: the Rust
# tests (unit, integration, interop, cluster), a short cluster chaos run, the JavaScript SDK's and the
# browser console's tests, a 15-s soak (scripts/soak.sh) on one gateway and on a two-node cluster,
# and a few seconds of every fuzz target.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

step() { printf '\n==> %s\n' "$*"; }
disk() { df -h . | tail -1 | awk -v at="$1" '{ print "disk " at ": " $4 " free" }'; }
T0=$SECONDS
disk "at the start"

# ---- test dependencies ------------------------------------------------------------------------
step "scripts/interop-setup.sh (official TLSSigAPIv2 generators for tests/interop.rs)"
t=$SECONDS
./scripts/interop-setup.sh
echo "interop setup: $((SECONDS - t)) s"

step "scripts/redis-setup.sh (redis-server for the cluster-mode tests in tests/cluster.rs)"
./scripts/redis-setup.sh

# ---- Rust checks ------------------------------------------------------------------------------
step "cargo fmt --all -- --check"
cargo fmt --all -- --check

step "cargo clippy --workspace --all-targets -- -D warnings"
cargo clippy --workspace --all-targets -- -D warnings

step "cargo test --workspace"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
cargo test --workspace 2>&1 | tee "$log"
passed=$(awk '/^test result:/ { for (i = 1; i < NF; i++) if ($(i+1) ~ /^passed/) p += $i } END { print p + 0 }' "$log")
failed=$(awk '/^test result:/ { for (i = 1; i < NF; i++) if ($(i+1) ~ /^failed/) f += $i } END { print f + 0 }' "$log")
disk "after cargo test"

# ---- cluster chaos: a short seeded run (scripts/chaos.sh; the debug binaries cargo test built) ----
step "CHAOS_SMOKE=1 scripts/chaos.sh 20 1 (3 nodes, Redis behind fault proxies, node stops and kills)"
CHAOS_SMOKE=1 CHAOS_NO_BUILD=1 ./scripts/chaos.sh 20 1
passed=$((passed + 1))

# ---- JavaScript SDK and the browser console ---------------------------------------------------
step "scripts/test-js.sh (clients/js: Node tests, headless Chromium console test)"
jslog="$(mktemp)"
trap 'rm -f "$log" "$jslog"' EXIT
# The debug binary cargo test just built: the console and the SDK are embedded in it.
IMGATE_BIN="$ROOT/target/debug/imgate" ./scripts/test-js.sh 2>&1 | tee "$jslog"
js_passed=$(awk '/^js: [0-9]+ passed/ { print $2 }' "$jslog" | tail -1)
js_failed=$(awk '/^js: [0-9]+ passed/ { print $4 }' "$jslog" | tail -1)
passed=$((passed + ${js_passed:-0}))
failed=$((failed + ${js_failed:-0}))

# ---- the soak, briefly: scripts/soak.sh against the debug binary (the 10-minute run: BENCHMARKS.md)
step "scripts/soak.sh 15 (500 sockets of churn for 15 s, every outcome checked)"
t=$SECONDS
N=500 RATE=100 IDLE=1 SAMPLE=1 SETTLE=3 SHORT_MIN=3 SHORT_MAX=6 EXPIRY_SLACK_MS=1000 LABEL=smoke \
    BIN="$ROOT/target/debug/imgate" ./scripts/soak.sh 15 | grep -E '^(==>|round|RSS|heap|after everyone|PASS|FAIL)|UNEXPECTED'
passed=$((passed + 1))
echo "soak smoke: $((SECONDS - t)) s"

step "NODES=2 scripts/soak.sh 15 (the same churn on a two-node cluster: sockets on both nodes, one Redis)"
t=$SECONDS
NODES=2 N=500 RATE=100 IDLE=1 SAMPLE=1 SETTLE=3 SHORT_MIN=3 SHORT_MAX=6 EXPIRY_SLACK_MS=1000 LABEL=smoke-cluster \
    BIN="$ROOT/target/debug/imgate" ./scripts/soak.sh 15 | grep -E '^(==>|round|RSS|Redis|heap|after everyone|PASS|FAIL)|UNEXPECTED'
passed=$((passed + 1))
echo "cluster soak smoke: $((SECONDS - t)) s"

# ---- fuzzing: every cargo-fuzz target briefly (scripts/fuzz.sh; skipped without nightly) -------
disk "after the soak"
if [[ "${TEST_FREE_DEBUG:-0}" == 1 ]]; then
    # CI (.ci/run): nothing after this point runs the debug build; give its disk to the fuzz build.
    rm -rf "$ROOT/target/debug"
    disk "after freeing target/debug"
fi
step "FUZZ_SMOKE=1 scripts/fuzz.sh 5 (every fuzz target for a few seconds)"
FUZZ_SMOKE=1 ./scripts/fuzz.sh 5

disk "at the end"
step "all checks passed in $((SECONDS - T0)) s"
echo "${passed} passed, ${failed} failed"
