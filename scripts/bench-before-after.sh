#!/usr/bin/env bash
# Before/after benchmark of a change, in one run: two gateway binaries (BEFORE and AFTER), each with
# the embedded store and as a one-node cluster (its own redis-server), next to the bare
# tokio-tungstenite baseline (examples/baseline.rs), driven by the same load generator (AFTER's
# `imgate load`), alternating so that a burst of other work on the shared machine hits all alike.
#
#   git worktree add --detach /tmp/before <commit> && (cd /tmp/before && cargo build --release --bin imgate)
#   BEFORE=/tmp/before/target/release/imgate ./scripts/bench-before-after.sh
#   N=5000 RUNS=1 BEFORE=... ./scripts/bench-before-after.sh      # a quick check
#
# Each server: N sessions opened at concurrency CONC over 127.0.0.2-127.0.0.9, logged in, held HOLD
# seconds; the generator samples the server's VmRSS before the first connect and at the end of the
# hold (per-session delta) and its utime+stime over the connect phase (CPU per login).
# Prints a Markdown table (medians over RUNS, ratios after/before and against the baseline).
#
# Environment: BEFORE (required), AFTER (default: this tree's release build), N (19000), CONC (200),
# HOLD (5), RUNS (2), LABEL_BEFORE, LABEL_AFTER.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

BEFORE=${BEFORE:?set BEFORE to the imgate binary built at the earlier commit}
N=${N:-19000}
CONC=${CONC:-200}
HOLD=${HOLD:-5}
RUNS=${RUNS:-2}
APP=1400000000
KEY=bench-key-$RANDOM$RANDOM

echo "==> cargo build --release (imgate, examples/baseline)"
cargo build --release --quiet --bin imgate --example baseline
TARGET=${CARGO_TARGET_DIR:-target}
source "$ROOT/scripts/bench-lib.sh"
bench_work imgate-before-after
# Copies, so that a rebuild during the run does not change what is measured.
cp "$BEFORE" "$WORK/before"
cp "${AFTER:-$TARGET/release/imgate}" "$WORK/after"
cp "$TARGET/release/examples/baseline" "$WORK/baseline"
LABEL_BEFORE=${LABEL_BEFORE:-before}
LABEL_AFTER=${LABEL_AFTER:-after}

start_redis

common="$(gateway_toml)
$(app_toml)"
printf '%s\n' "$common" >"$WORK/embedded.toml"
printf '%s\n[cluster]\nredis_url = "redis://127.0.0.1:%s"\nnode_id = "bench"\n' "$common" "$REDIS_PORT" \
    >"$WORK/cluster.toml"

LOAD=(--sessions "$N" --concurrency "$CONC" --hold "$HOLD" --json)
for run in $(seq "$RUNS"); do
    for variant in before:embedded after:embedded baseline before:cluster after:cluster; do
        name=${variant/:/-}
        echo "==> run $run/$RUNS: $name, $N sessions"
        redis-cli -p "$REDIS_PORT" flushall >/dev/null
        if [ "$variant" = baseline ]; then
            start_server "$name" "$WORK/baseline"
            sleep 1
            "$WORK/after" load --baseline --url "$SERVER_URL" "${LOAD[@]}" --server-pid "$SERVER_PID" \
                >"$WORK/$name.$run.json" || true
        else
            bin=${variant%%:*}
            store=${variant##*:}
            start_server "$name" "$WORK/$bin" serve --config "$WORK/$store.toml"
            sleep 1
            "$WORK/after" load --url "$SERVER_URL" --sdk-app-id $APP --key "$KEY" "${LOAD[@]}" \
                --server-pid "$SERVER_PID" >"$WORK/$name.$run.json" || true
        fi
        tail -1 "$WORK/$name.$run.json"
        stop_server
    done
done

MACHINE="$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), Linux $(uname -r)"
python3 - "$WORK" "$RUNS" "$N" "$CONC" "$HOLD" "$MACHINE" "$LABEL_BEFORE" "$LABEL_AFTER" <<'PY'
import json, sys, pathlib, statistics
work, runs, n, conc, hold, machine, lb, la = sys.argv[1:]
runs = int(runs)
def load(name, i):
    try:
        return json.loads(pathlib.Path(work, f"{name}.{i}.json").read_text().strip().splitlines()[-1])
    except Exception:
        return {}
def get(r, path):
    for k in path.split("."):
        r = r.get(k) if isinstance(r, dict) else None
    return r
def med(name, path):
    # a run that did not establish every session (a server that failed) does not count
    v = [get(load(name, i), path) for i in range(1, runs + 1)
         if get(load(name, i), "established") == int(n)]
    v = [x for x in v if isinstance(x, (int, float))]
    return statistics.median(v) if v else None
def f(x, unit=""):
    return "—" if x is None else f"{round(x):,}{unit}"
def r(a, b):
    return f"{a / b:.2f}×" if a and b else "—"
rows = [("RSS per idle session", "server.rss_per_session_bytes", " B"),
        ("server CPU per login", "server.cpu_per_login_us", " µs"),
        ("logins/s", "logins_per_sec", "")]
print(f"\nN = {n} sessions per server, concurrency {conc}, hold {hold} s, {runs} run(s) (medians), {machine}.\n")
print(f"| measure | store | {lb} | {la} | {la} / {lb} | {la} / baseline | baseline |")
print("|---|---|---|---|---|---|---|")
for label, path, unit in rows:
    base = med("baseline", path)
    for store in ("embedded", "cluster"):
        b, a = med(f"before-{store}", path), med(f"after-{store}", path)
        print(f"| {label} | {store} | {f(b, unit)} | {f(a, unit)} | {r(a, b)} | {r(a, base)} | {f(base, unit)} |")
held = {k: [get(load(k, i), "held") for i in range(1, runs + 1)] for k in
        ("before-embedded", "after-embedded", "before-cluster", "after-cluster", "baseline")}
print("\nsessions held at the end of the hold, per run:", held)
PY
