#!/usr/bin/env bash
# Which allocator gives the memory of a spike back: the same soak spike (scripts/soak.sh: N sockets
# filled, SECS of churn, everyone leaves, SETTLE s idle; ROUNDS times on one gateway process) against
#   glibc        glibc's malloc as it is (IMGATE_MALLOC_TRIM=0: the gateway's trim task off)
#   trim         glibc with the gateway's malloc_trim task (src/heap.rs; the default)
#   jemalloc     jemalloc as the global allocator, as it is (needs JEMALLOC_BIN, see below)
#   jemalloc-bg  the same with background purging threads (_RJEM_MALLOC_CONF=background_thread:true)
# one after the other, RUNS times alternating, on the same machine. Prints a Markdown table: RSS per
# socket at the first fill, RSS after the clients left (each round), logins/s and the gateway's CPU
# per login over the fills (medians), with ratios to glibc.
#
#   ./scripts/bench-alloc.sh                  # N=19000, SECS=30, ROUNDS=3, RUNS=1; glibc and trim
#   JEMALLOC_BIN=/tmp/imgate-jemalloc VARIANTS="glibc trim jemalloc jemalloc-bg" ./scripts/bench-alloc.sh
#
# The jemalloc build is not part of the tree (only the winner landed): add
# `tikv-jemallocator = "0.7"` to [dependencies] of Cargo.toml and, in src/main.rs,
# `#[global_allocator] static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;`,
# build release and copy target/release/imgate to JEMALLOC_BIN.
#
# Environment: N, SECS, ROUNDS, RUNS, SETTLE (30), RATE (300), VARIANTS ("glibc trim", or with
# jemalloc and jemalloc-bg when JEMALLOC_BIN is set), JEMALLOC_BIN, BIN (default: build release).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

N=${N:-19000}
SECS=${SECS:-30}
ROUNDS=${ROUNDS:-3}
RUNS=${RUNS:-1}
SETTLE=${SETTLE:-30}
RATE=${RATE:-300}
if [ -n "${JEMALLOC_BIN:-}" ]; then
    VARIANTS=${VARIANTS:-glibc trim jemalloc jemalloc-bg}
else
    VARIANTS=${VARIANTS:-glibc trim}
fi
if [ -z "${BIN:-}" ]; then
    echo "==> cargo build --release --bin imgate"
    nice -n 5 cargo build --release --quiet --bin imgate
    BIN=${CARGO_TARGET_DIR:-target}/release/imgate
fi

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
RESULTS=${CARGO_TARGET_DIR:-target}/soak/alloc-$STAMP
mkdir -p "$RESULTS"
for run in $(seq "$RUNS"); do
    for v in $VARIANTS; do
        conf=
        case $v in
            glibc) bin=$BIN; trim=0 ;;
            trim) bin=$BIN; trim=1 ;;
            jemalloc) bin=${JEMALLOC_BIN:?jemalloc needs JEMALLOC_BIN}; trim=0 ;;
            jemalloc-bg) bin=${JEMALLOC_BIN:?jemalloc-bg needs JEMALLOC_BIN}; trim=0; conf=background_thread:true ;;
            *) echo "unknown variant $v" >&2; exit 2 ;;
        esac
        echo "==> run $run/$RUNS: $v"
        _RJEM_MALLOC_CONF=$conf IMGATE_MALLOC_TRIM=$trim BIN=$bin LABEL=$v N=$N ROUNDS=$ROUNDS SETTLE=$SETTLE RATE=$RATE \
            RETURN_PCT=0 OUT="$RESULTS/$v-$run" ./scripts/soak.sh "$SECS" >"$RESULTS/$v-$run.log" 2>&1 || true
        grep -E '^(round|RSS|after everyone|PASS|FAIL)' "$RESULTS/$v-$run.log" || tail -5 "$RESULTS/$v-$run.log"
    done
done

python3 - "$RESULTS" "$RUNS" "$VARIANTS" "$N" "$SECS" "$ROUNDS" "$SETTLE" <<'PY'
import json, pathlib, statistics, sys
res, runs, variants, n, secs, rounds, settle = sys.argv[1:]
res = pathlib.Path(res); runs = int(runs); variants = variants.split()
def summaries(v):
    out = []
    for i in range(1, runs + 1):
        p = res / f"{v}-{i}" / "summary.json"
        if p.exists():
            out.append(json.loads(p.read_text()))
    return out
def med(xs):
    xs = [x for x in xs if isinstance(x, (int, float))]
    return statistics.median(xs) if xs else None
rows = {}
for v in variants:
    s = summaries(v)
    fills = [f for x in s for f in x.get("fill", [])]
    rows[v] = {
        "per_socket": med([x["fill"][0].get("rss_per_session_bytes") for x in s if x.get("fill")]),
        "idle": med([x["rss_idle_kb"] for x in s]),
        "peak": med([x["rss_peak_kb"] for x in s]),
        "after": [med([x["rss_after_each_round_kb"][r] for x in s if len(x["rss_after_each_round_kb"]) > r])
                  for r in range(int(rounds))],
        "lps": med([f.get("logins_per_sec") for f in fills]),
        "cpu": med([f.get("server_cpu_per_login_us") for f in fills]),
        "unexpected": sum(x.get("unexpected", 0) for x in s),
        "machine": s[0]["machine"] if s else "",
    }
base = rows.get("glibc") or next(iter(rows.values()))
def r(a, b):
    return f"{a / b:.2f}×" if a and b else "—"
def mb(kb):
    return "—" if kb is None else f"{kb / 1024:.1f} MB"
print(f"\nN = {n} sockets, {secs} s of churn, {rounds} rounds per gateway process, {settle} s idle after each, "
      f"{runs} run(s) (medians); {next(iter(rows.values()))['machine']}\n")
print("| allocator | RSS per socket (first fill) | idle before | peak | " +
      " | ".join(f"after round {i + 1}" for i in range(int(rounds))) +
      " | after last − idle | logins/s (fills) | gateway CPU per login | unexpected |")
print("|---|---|---|---|" + "---|" * int(rounds) + "---|---|---|---|")
for v, x in rows.items():
    last = x["after"][-1] if x["after"] else None
    held = None if last is None or x["idle"] is None else last - x["idle"]
    bheld = None if not base["after"] or base["after"][-1] is None else base["after"][-1] - base["idle"]
    print(f"| {v} | {x['per_socket'] or 0:,.0f} B ({r(x['per_socket'], base['per_socket'])}) | {mb(x['idle'])} | "
          f"{mb(x['peak'])} ({r(x['peak'], base['peak'])}) | " +
          " | ".join(mb(a) for a in x["after"]) +
          f" | {mb(held)} ({r(held, bheld)}) | {x['lps'] or 0:,.0f} ({r(x['lps'], base['lps'])}) | "
          f"{x['cpu'] or 0:.0f} µs ({r(x['cpu'], base['cpu'])}) | {x['unexpected']} |")
print(f"\nresults: {res}")
PY
