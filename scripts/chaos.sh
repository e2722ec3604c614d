#!/usr/bin/env bash
# The cluster chaos run (issue 13, item 5): 3 nodes and Redis, a TCP fault proxy between each node and
# Redis (delays, stalls, dropped connections), nodes SIGSTOPped and SIGKILLed, while 60 clients log the
# same 20 users in on random nodes, platforms and instance ids; then a calm phase and the invariant
# checker (policy, kicked_offline then 4501 once, presence = open sockets). See chaos/src/lib.rs.
#
#   ./scripts/chaos.sh                 # 180 s, a seed from the clock (printed)
#   ./scripts/chaos.sh 300 12345       # 300 s with seed 12345: the same schedule of faults, kills and
#                                      # client decisions as any other run of that seed
#   CHAOS_SMOKE=1 ./scripts/chaos.sh 20 1   # the short run of scripts/test.sh: the debug binaries
#
# Environment: CHAOS_SMOKE (1: debug build, 24 clients over 8 users), CHAOS_NO_BUILD (1, with
# CHAOS_SMOKE: use the debug binaries already there, as scripts/test.sh does after cargo test), CHAOS_ARGS (more imgate-chaos flags, e.g.
# "--clients 100 --keep"), REDIS_SERVER (redis-server binary). CARGO_TARGET_DIR is honoured.
# Exit status: imgate-chaos's (0 no violation, 1 a violation, 2 the harness failed).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

SECS=${1:-180}
SEED=${2:-}
TARGET=${CARGO_TARGET_DIR:-target}
REDIS_SERVER=${REDIS_SERVER:-redis-server}
command -v "$REDIS_SERVER" >/dev/null 2>&1 || ./scripts/redis-setup.sh

if [ "${CHAOS_SMOKE:-0}" = 1 ]; then
    PROFILE=debug
    EXTRA=(--clients 24 --users 8)
    if [ "${CHAOS_NO_BUILD:-0}" = 1 ] && [ -x "$TARGET/debug/imgate" ] && [ -x "$TARGET/debug/imgate-chaos" ]; then
        echo "==> the debug binaries in $TARGET/debug (CHAOS_NO_BUILD=1)"
    else
        echo "==> cargo build -p imgate -p imgate-chaos (debug, smoke run)"
        cargo build --quiet -p imgate -p imgate-chaos --bin imgate --bin imgate-chaos
    fi
else
    echo "==> cargo build --release -p imgate -p imgate-chaos"
    cargo build --release --quiet -p imgate -p imgate-chaos --bin imgate --bin imgate-chaos
    PROFILE=release
    EXTRA=()
fi
ARGS=(--imgate "$TARGET/$PROFILE/imgate" --redis-server "$REDIS_SERVER" --secs "$SECS")
[ -n "$SEED" ] && ARGS+=(--seed "$SEED")
# shellcheck disable=SC2206
[ -n "${CHAOS_ARGS:-}" ] && EXTRA+=(${CHAOS_ARGS})
echo "==> $TARGET/$PROFILE/imgate-chaos ${ARGS[*]} ${EXTRA[*]:-}"
exec "$TARGET/$PROFILE/imgate-chaos" "${ARGS[@]}" "${EXTRA[@]}"
