#!/usr/bin/env bash
# Side-by-side benchmark: the gateway against the bare tokio-tungstenite baseline (examples/baseline.rs),
# same machine, same run, same load generator (`imgate load`), reported as ratios.
#
#   ./scripts/bench-side-by-side.sh            # N=19000 sessions each, then the kick runs
#   N=5000 CONC=100 HOLD=3 ./scripts/bench-side-by-side.sh
#
# For each server: start it, let the load generator open N WebSocket sessions (login frames, minted
# UserSigs; the baseline answers any first frame) at concurrency CONC over 127.0.0.2-127.0.0.9, hold
# them HOLD seconds, and sample the server from /proc/PID (the generator does it with --server-pid, at
# the right moments): VmRSS before the first connect and at the end of the hold (per-session delta),
# utime+stime over the connect phase (CPU per login). Then the kick latency on the gateway: KICK_USERS
# takeovers one at a time, and again KICK_CONC at a time. The table in BENCHMARKS.md between the
# side-by-side markers is replaced with the results (set WRITE=0 to only print them).
#
# Environment: N (19000), CONC (200), HOLD (5), RUNS (2 alternating gateway/baseline pairs),
# KICK_USERS (2000), KICK_CONC (50), READ_BUFFER (read_buffer_bytes of both servers; default: the
# gateway's default), WRITE (1).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

N=${N:-19000}
CONC=${CONC:-200}
HOLD=${HOLD:-5}
KICK_USERS=${KICK_USERS:-2000}
KICK_CONC=${KICK_CONC:-50}
READ_BUFFER=${READ_BUFFER:-}
RUNS=${RUNS:-2}
WRITE=${WRITE:-1}
APP=1400000000
KEY=bench-key-$RANDOM$RANDOM

source "$ROOT/scripts/bench-lib.sh"
bench_work imgate-bench

echo "==> cargo build --release (imgate, examples/baseline)"
cargo build --release --quiet --bin imgate --example baseline
TARGET=${CARGO_TARGET_DIR:-target}
BIN=$TARGET/release/imgate
BASELINE=$TARGET/release/examples/baseline

{
    gateway_toml
    [ -n "$READ_BUFFER" ] && echo "read_buffer_bytes = $READ_BUFFER"
    echo
    app_toml
} >"$WORK/gateway.toml"

LOAD=(--sessions "$N" --concurrency "$CONC" --hold "$HOLD" --json)

# RUNS pairs, alternating gateway and baseline so that a burst of other work on the shared machine
# hits both sides alike; the table gives medians and the ratio of each pair.
for run in $(seq "$RUNS"); do
    echo "==> run $run/$RUNS: gateway, $N sessions"
    start_server gateway "$BIN" serve --config "$WORK/gateway.toml"
    sleep 1
    "$BIN" load --url "$SERVER_URL" --sdk-app-id $APP --key "$KEY" "${LOAD[@]}" --server-pid "$SERVER_PID" \
        >"$WORK/gateway.$run.json" || true
    cat "$WORK/gateway.$run.json"
    stop_server

    echo "==> run $run/$RUNS: baseline, $N sessions"
    start_server baseline "$BASELINE" ${READ_BUFFER:+--read-buffer "$READ_BUFFER"}
    sleep 1
    "$BIN" load --baseline --url "$SERVER_URL" "${LOAD[@]}" --server-pid "$SERVER_PID" \
        >"$WORK/baseline.$run.json" || true
    cat "$WORK/baseline.$run.json"
    stop_server
done

echo "==> gateway: kick latency, $KICK_USERS takeovers one at a time, then $KICK_CONC at a time"
start_server gateway "$BIN" serve --config "$WORK/gateway.toml"
sleep 1
"$BIN" load --mode kick --url "$SERVER_URL" --sdk-app-id $APP --key "$KEY" \
    --kick-users "$KICK_USERS" --concurrency 1 --json >"$WORK/kick1.json" || true
cat "$WORK/kick1.json"
"$BIN" load --mode kick --url "$SERVER_URL" --sdk-app-id $APP --key "$KEY" --user-prefix churn \
    --kick-users "$KICK_USERS" --concurrency "$KICK_CONC" --json >"$WORK/kickc.json" || true
cat "$WORK/kickc.json"
stop_server

MACHINE="$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), Linux $(uname -r)"
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || COMMIT="$COMMIT + uncommitted changes"
DATE=$(date -u +%Y-%m-%dT%H:%MZ)

python3 - "$WORK" "$MACHINE" "$COMMIT" "$DATE" "$N" "$CONC" "$HOLD" "$KICK_USERS" "$KICK_CONC" "$WRITE" "${READ_BUFFER:-default}" "$RUNS" <<'PY'
import json, sys, re, pathlib, statistics
work, machine, commit, date, n, conc, hold, kusers, kconc, write, rbuf, runs = sys.argv[1:]
runs = int(runs)
def load(name):
    try:
        return json.loads(pathlib.Path(work, name).read_text().strip().splitlines()[-1])
    except Exception as e:
        return {"error": str(e)}
gws = [load(f"gateway.{i}.json") for i in range(1, runs + 1)]
bls = [load(f"baseline.{i}.json") for i in range(1, runs + 1)]
k1, kc = load("kick1.json"), load("kickc.json")
def get(r, path):
    for k in path.split("."):
        r = (r or {}).get(k) if isinstance(r, dict) else None
    return r
def med(rs, path):
    v = [get(r, path) for r in rs]
    v = [x for x in v if isinstance(x, (int, float))]
    return statistics.median(v) if v else None
def num(x, unit=""):
    return "—" if x is None else f"{round(x):,}{unit}"
def ratio(a, b):
    return f"{a / b:.2f}" if a and b else "—"
def row(label, path, unit="", with_ratio=True):
    g, b = med(gws, path), med(bls, path)
    per = " / ".join(ratio(get(x, path), get(y, path)) for x, y in zip(gws, bls))
    return (label, num(g, unit), num(b, unit), ratio(g, b) if with_ratio else "", per if with_ratio else "")
def errs(rs):
    e = {}
    for r in rs:
        for k, v in list((r.get("errors") or {}).items()) + [("dropped " + k, v) for k, v in (r.get("dropped_during_hold") or {}).items()]:
            e[k] = e.get(k, 0) + v
        if "error" in r:
            e["no result"] = e.get("no result", 0) + 1
    return ", ".join(f"{k}: {v}" for k, v in e.items()) or "none"
rows = [
    row("sessions held at the end of the hold (of N)", "held", with_ratio=False),
    row("server RSS per session: (VmRSS held − VmRSS before) / held", "server.rss_per_session_bytes", " B"),
    row("server VmRSS before the first connect", "server.rss_before_kb", " kB", with_ratio=False),
    row("server VmRSS with all N held", "server.rss_held_kb", " kB"),
    row("server CPU per login: utime+stime over the connect phase / N", "server.cpu_per_login_us", " µs"),
    row("logins/s: N / connect phase (connect + upgrade + login + response)", "logins_per_sec"),
    row("setup latency p50", "setup_us.p50", " µs"),
    row("setup latency p99", "setup_us.p99", " µs"),
    row("load generator CPU per login", "cpu.client_per_login_us", " µs"),
    row("CPU taken by other processes during the connect phase", "cpu.other_ms", " ms", with_ratio=False)[:4]
    + (" / ".join(f"{num(get(x, 'cpu.other_ms'))} vs {num(get(y, 'cpu.other_ms'))} ms" for x, y in zip(gws, bls)),),
    ("errors (all runs)", errs(gws), errs(bls), "", ""),
]
out = []
out.append(f"Run {date} on {machine}, commit `{commit}`: N = {n} sessions per server, concurrency {conc}, hold {hold} s, "
           f"read buffer {rbuf}, {runs} alternating gateway/baseline pair(s); medians over the runs. "
           f"Command: `N={n} CONC={conc} HOLD={hold} RUNS={runs} ./scripts/bench-side-by-side.sh`.")
out.append("")
out.append("| measure | gateway | baseline | gateway / baseline | ratio in each run |")
out.append("|---|---|---|---|---|")
for r in rows:
    out.append("| " + " | ".join(r) + " |")
out.append("")
def kick_row(r, label):
    if "kick_us" not in r:
        return f"| {label} | — | — | — | {r.get('error', 'no result')} |"
    k, l = r["kick_us"], r["relogin_us"]
    return (f"| {label} | {r['kicked']:,} of {r['users']:,} | {k['p50']:,} / {k['p99']:,} / {k['max']:,} µs | "
            f"{l['p50']:,} / {l['p99']:,} µs | {', '.join(f'{a}: {b}' for a, b in r['errors'].items()) or 'none'} |")
out.append("Kick latency on the same gateway (new login sent → the old socket reads `kicked_offline`; "
           "`imgate load --mode kick --kick-users U --concurrency C`):")
out.append("")
out.append("| takeovers | kicked | kick p50 / p99 / max | new login's own response p50 / p99 | errors |")
out.append("|---|---|---|---|---|")
out.append(kick_row(k1, f"{kusers} one at a time (C = 1)"))
out.append(kick_row(kc, f"{kusers}, {kconc} at a time"))
table = "\n".join(out)
print()
print(table)
if write == "1":
    p = pathlib.Path("BENCHMARKS.md")
    text = p.read_text() if p.exists() else ""
    begin, end = "<!-- side-by-side:begin -->", "<!-- side-by-side:end -->"
    block = f"{begin}\n{table}\n{end}"
    if begin in text and end in text:
        text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text += "\n" + block + "\n"
    p.write_text(text)
    print("\nBENCHMARKS.md updated")
PY
