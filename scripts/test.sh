#!/usr/bin/env bash
# The project's test command (README): ./scripts/test.sh
# Installs what the tests need, then runs the format check, clippy and the whole test suite.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

step() { printf '\n==> %s\n' "$*"; }
T0=$SECONDS

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

step "all checks passed in $((SECONDS - T0)) s"
echo "${passed} passed, ${failed} failed"
