#!/usr/bin/env bash
# The JavaScript SDK's and the browser console's tests (clients/js, clients/console), against the real
# gateway binary: Node's test runner for the SDK, then headless Chromium for the console.
#
# Installs what is missing first: Debian's chromium (apt) when /usr/bin/chromium is absent, the npm
# devDependencies (npm ci: ws, playwright-core), and builds target/release/imgate (the console and the
# SDK are embedded in it, so it is rebuilt when they change; cargo decides). IMGATE_BIN=path uses
# another binary and skips the build. Prints a closing "js: N passed, N failed" line; exits non-zero
# on any failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
JS="$ROOT/clients/js"

step() { printf '\n==> %s\n' "$*"; }
die() {
    echo "test-js: ERROR: $*" >&2
    exit 1
}
T0=$SECONDS

# ---- tools ------------------------------------------------------------------------------------
command -v node >/dev/null 2>&1 || die "node (>= 20) is needed"
command -v npm >/dev/null 2>&1 || die "npm is needed"
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || die "node >= 20 is needed, found $(node --version)"

CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$CHROMIUM" ]; then
    step "installing Debian's chromium (apt) for the browser test"
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || die "chromium is missing and this is not root: apt-get install chromium"
        SUDO=sudo
    fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
    [ -x "$CHROMIUM" ] || die "apt installed chromium but $CHROMIUM is not there"
fi
export CHROMIUM
echo "$("$CHROMIUM" --version 2>/dev/null | head -1)"

step "npm ci (clients/js devDependencies: ws, playwright-core)"
if [ ! -d "$JS/node_modules/ws" ] || [ ! -d "$JS/node_modules/playwright-core" ] ||
    [ "$JS/package-lock.json" -nt "$JS/node_modules/.package-lock.json" ]; then
    (cd "$JS" && npm ci --no-audit --no-fund --loglevel=error)
else
    echo "up to date"
fi

if [ -z "${IMGATE_BIN:-}" ]; then
    step "cargo build --release --bin imgate (embeds the console and the SDK)"
    cargo build --release --bin imgate
    export IMGATE_BIN="$ROOT/target/release/imgate"
fi
[ -x "$IMGATE_BIN" ] || die "no gateway binary at $IMGATE_BIN"

# ---- tests ------------------------------------------------------------------------------------
logdir="$(mktemp -d)"
trap 'rm -rf "$logdir"' EXIT
status=0
run() { # name, files...
    local name=$1
    shift
    step "node --test: $name"
    local t=$SECONDS
    (cd "$JS" && node --test --test-concurrency=3 \
        --test-reporter=spec --test-reporter-destination=stdout \
        --test-reporter=tap --test-reporter-destination="$logdir/$name.tap" "$@") || status=1
    echo "$name: $((SECONDS - t)) s"
}

mapfile -t node_tests < <(cd "$JS" && ls test/*.test.js | grep -v '^test/browser\.test\.js$')
run sdk "${node_tests[@]}"
run browser test/browser.test.js

passed=$(cat "$logdir"/*.tap | awk '/^# pass / { p += $3 } END { print p + 0 }')
failed=$(cat "$logdir"/*.tap | awk '/^# fail / { f += $3 } END { print f + 0 }')
[ "$failed" -eq 0 ] || status=1
[ "$passed" -gt 0 ] || status=1

step "JavaScript tests done in $((SECONDS - T0)) s (screenshots in clients/js/test-output/)"
echo "js: ${passed} passed, ${failed} failed"
exit "$status"
