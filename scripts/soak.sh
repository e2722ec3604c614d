#!/usr/bin/env bash
# The soak (issue 13): one gateway, N sockets of continuous churn for SECS seconds, every outcome
# checked, then everyone leaves and the gateway must be empty and give its memory back.
#
#   ./scripts/soak.sh            # 19,000 sockets, 600 s of churn (release build)
#   ./scripts/soak.sh 60         # the same, 60 s of churn
#   NODES=2 ./scripts/soak.sh    # the same on a two-node cluster (one Redis)
#   N=500 RATE=100 SETTLE=5 SHORT_MIN=3 SHORT_MAX=6 BIN=target/debug/imgate ./scripts/soak.sh 15   # the smoke of scripts/test.sh
#
# It starts `imgate serve` (a config of its own: max_connections 19,600; max_pending_per_ip off so
# that 8 source addresses can churn; the rest of §16 at its defaults, and the default timeouts: login
# 10 s, ping 25 s, idle 60 s), samples the gateway every SAMPLE seconds into a CSV (time, phase,
# VmRSS, and the /metrics gauges: connections, sessions, pending sockets, outbound bytes), idles
# IDLE seconds for a baseline, runs `imgate load --mode soak` ROUNDS times (each: fill N sockets at
# concurrency 200, SECS of churn at RATE operations/s, everyone leaves; see load/src/soak/), then
# samples SETTLE more seconds. It fails when the soak saw an unexpected outcome, when a gauge is not
# back to 0 or a user still online after the clients left, or when the RSS did not return: SETTLE s
# after the clients left, RSS − idle RSS must be at most RETURN_PCT (25) % of the spike (peak RSS −
# idle RSS), or RETURN_MB (8) MB if that is more — set RETURN_PCT=0 to report without failing on
# it (the allocator comparison does). glibc as it is keeps ~100% of the spike; with the gateway's
# malloc_trim task 12–18% stay, which is fragmentation, not live memory: the gateway logs the heap
# in use after each trim (mallinfo2; RUST_LOG imgate::heap=debug, the default here) and the
# summary prints it.
#
# Environment: N (19000), SECS (the argument; 600), RATE (300), WORKERS (32), SEED (1), ROUNDS (1),
# SHORT_MIN and SHORT_MAX (20 and 60: lifetimes of the short tickets, s; none start in the last
# SHORT_MAX + 3 s of the churn), EXPIRY_SLACK_MS (500: how late past the contract's 1.5 s a
# user_sig_expired may be read, for the client's own scheduling),
# NODES (1; more: a cluster of NODES gateways on a redis-server of the run's own, the sockets
# round-robin over the nodes, RSS, CPU and gauges summed over them, Redis's used_memory sampled too),
# SAMPLE (5 s), IDLE (10 s), SETTLE (60 s), RETURN_PCT (25), RETURN_MB (8 per node), BIN (default: build and use
# target/release/imgate), LABEL (a name for the run), OUT (directory kept with the CSV, the soak's
# JSON and the gateway's log; default target/soak/LABEL-TIME). The gateway inherits the
# environment: IMGATE_MALLOC_TRIM=0 turns its malloc_trim task off (glibc as it is).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

SECS=${1:-${SECS:-600}}
N=${N:-19000}
RATE=${RATE:-300}
WORKERS=${WORKERS:-32}
SEED=${SEED:-1}
ROUNDS=${ROUNDS:-1}
SAMPLE=${SAMPLE:-5}
IDLE=${IDLE:-10}
SETTLE=${SETTLE:-60}
RETURN_PCT=${RETURN_PCT:-25}
RETURN_MB=${RETURN_MB:-$((8 * ${NODES:-1}))}
SHORT_MIN=${SHORT_MIN:-20}
SHORT_MAX=${SHORT_MAX:-60}
EXPIRY_SLACK_MS=${EXPIRY_SLACK_MS:-500}
LABEL=${LABEL:-soak}
APP=1400000000
KEY=soak-key-$RANDOM$RANDOM
TOKEN=soak-token-$RANDOM$RANDOM$RANDOM

if [ -z "${BIN:-}" ]; then
    echo "==> cargo build --release --bin imgate"
    nice -n 5 cargo build --release --quiet --bin imgate
    BIN=${CARGO_TARGET_DIR:-target}/release/imgate
fi
OUT=${OUT:-target/soak/$LABEL-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
# A copy, so that a rebuild during the run does not change what is measured.
cp "$BIN" "$OUT/imgate"
BIN=$OUT/imgate

# NODES > 1: a cluster of that many nodes on a redis-server of the run's own (node i: node_id
# soak-i, files gateway-i.*; node 1 keeps gateway.*), the soak's sockets round-robin over them.
NODES=${NODES:-1}
REDIS_PID=
REDIS_PORT=
if [ "$NODES" -gt 1 ]; then
    REDIS_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$OUT" \
        >"$OUT/redis.log" 2>&1 &
    REDIS_PID=$!
    for _ in $(seq 50); do
        [ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null || true)" = PONG ] && break
        sleep 0.1
    done
    [ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null || true)" = PONG ] || { cat "$OUT/redis.log" >&2; exit 1; }
fi
node_file() { if [ "$1" = 1 ]; then echo "$OUT/gateway"; else echo "$OUT/gateway-$1"; fi; }
for i in $(seq "$NODES"); do
    {
        cat <<EOF
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
admin_token = "$TOKEN"
max_connections = 19600
max_pending = 4000
max_pending_per_ip = 0

[[app]]
sdk_app_id = $APP
key = "$KEY"
EOF
        if [ "$NODES" -gt 1 ]; then
            printf '\n[cluster]\nredis_url = "redis://127.0.0.1:%s"\nnode_id = "soak-%s"\n' "$REDIS_PORT" "$i"
        fi
    } >"$(node_file "$i").toml"
done

GW_PIDS=()
SAMPLER_PID=
cleanup() {
    local p
    [ -n "$SAMPLER_PID" ] && kill "$SAMPLER_PID" 2>/dev/null || true
    for p in "${GW_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${GW_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    if [ -n "$REDIS_PID" ]; then
        kill "$REDIS_PID" 2>/dev/null || true
        wait "$REDIS_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
WS_URLS=()
ADMINS=()
for i in $(seq "$NODES"); do
    f=$(node_file "$i")
    RUST_LOG=${RUST_LOG:-info,imgate::heap=debug} \
        "$BIN" serve --config "$f.toml" >"$f.out" 2>"$f.err" &
    pid=$!
    GW_PIDS+=("$pid")
    ws=
    admin=
    for _ in $(seq 200); do
        ws=$(grep -o 'listening on ws://[^ ]*' "$f.out" | head -1 | sed 's/listening on //' || true)
        admin=$(grep -o 'admin listening on http://[^ ]*' "$f.out" | head -1 | sed 's/admin listening on //' || true)
        [ -n "$ws" ] && [ -n "$admin" ] && break
        kill -0 "$pid" 2>/dev/null || { cat "$f.err" >&2; exit 1; }
        sleep 0.1
    done
    [ -n "$ws" ] && [ -n "$admin" ] || { echo "node $i did not announce its addresses" >&2; exit 1; }
    WS_URLS+=("$ws")
    ADMINS+=("$admin")
    echo "==> gateway $i/$NODES: pid $pid on $ws, admin $admin${REDIS_PORT:+, redis 127.0.0.1:$REDIS_PORT}; output in $OUT"
done
GW_PID=${GW_PIDS[0]}
WS=${WS_URLS[0]}
ADMIN=${ADMINS[0]}
# One node: the fill's CPU per login and RSS per socket from /proc (imgate load --server-pid); on
# a cluster they would be one node's over all the sockets, so they are left out.
ALSO=()
[ "$NODES" = 1 ] && ALSO+=(--server-pid "$GW_PID")
for i in $(seq 2 "$NODES"); do
    ALSO+=(--also-url "${WS_URLS[$((i - 1))]}" --also-admin-url "${ADMINS[$((i - 1))]}")
done

# The sampler: one CSV line every SAMPLE seconds; the phase comes from $OUT/phase. RSS and gauges
# are summed over the nodes; redis_used_kb is Redis's used_memory (0 without a cluster).
echo idle >"$OUT/phase"
CSV=$OUT/samples.csv
echo "t_s,phase,rss_kb,connections,sessions,pending_sockets,outbound_bytes,redis_used_kb" >"$CSV"
(
    t0=$(date +%s.%N)
    while kill -0 "$GW_PID" 2>/dev/null; do
        rss=0
        m=
        for i in "${!GW_PIDS[@]}"; do
            r=$(awk '/^VmRSS:/ { print $2 }' "/proc/${GW_PIDS[$i]}/status" 2>/dev/null || echo 0)
            rss=$((rss + ${r:-0}))
            m+=$(curl -s --max-time 2 "${ADMINS[$i]}/metrics" || true)$'\n'
        done
        g=$(printf '%s\n' "$m" | awk '
            /^imgate_connections /      { c += $2 }
            /^imgate_sessions\{/        { s += $2 }
            /^imgate_pending_sockets /  { p += $2 }
            /^imgate_outbound_bytes /   { o += $2 }
            END { printf "%d,%d,%d,%d", c, s, p, o }')
        redis_kb=0
        if [ -n "$REDIS_PORT" ]; then
            redis_kb=$(redis-cli -p "$REDIS_PORT" info memory 2>/dev/null | tr -d '\r' \
                | awk -F: '/^used_memory:/ { printf "%d", $2 / 1024 }')
        fi
        t=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
        echo "$t,$(cat "$OUT/phase"),$rss,$g,${redis_kb:-0}" >>"$CSV"
        sleep "$SAMPLE"
    done
) &
SAMPLER_PID=$!

sleep "$IDLE"
status=0
for round in $(seq "$ROUNDS"); do
    echo "soak-$round" >"$OUT/phase"
    echo "==> round $round/$ROUNDS: $N sockets, $SECS s of churn at $RATE operations/s (seed $SEED)"
    "$BIN" load --mode soak --url "$WS" --admin-url "$ADMIN" --admin-token "$TOKEN" "${ALSO[@]}" \
        --sdk-app-id "$APP" --key "$KEY" --sessions "$N" --secs "$SECS" --rate "$RATE" \
        --workers "$WORKERS" --short-min "$SHORT_MIN" --short-max "$SHORT_MAX" \
        --expiry-slack-ms "$EXPIRY_SLACK_MS" --seed "$((SEED + round - 1))" --json \
        >"$OUT/soak-$round.json" 2> >(tee "$OUT/soak-$round.err" >&2) || status=1
    echo "left-$round" >"$OUT/phase"
    sleep "$SETTLE"
done
sleep "$SAMPLE"
kill "$SAMPLER_PID" 2>/dev/null || true
wait "$SAMPLER_PID" 2>/dev/null || true
SAMPLER_PID=
if [ -n "$REDIS_PORT" ]; then
    # What Redis still holds once everyone left, by key kind (src/presence/redis/keys.rs: a user's
    # hash im:{A:U} must be gone with its last session; its tombstones :k and its revocation :nb
    # expire by themselves), for $OUT/redis-keys.txt.
    {
        echo "dbsize $(redis-cli -p "$REDIS_PORT" dbsize)"
        redis-cli -p "$REDIS_PORT" --scan \
            | sed -E 's/^im:\{[^}]*\}/im:{A:U}/; s/^(im:[a-z]+)[:].*/\1:.../' | sort | uniq -c
        for k in $(redis-cli -p "$REDIS_PORT" --scan --pattern 'im:node:*'); do
            echo "$k: $(redis-cli -p "$REDIS_PORT" scard "$k") members"
        done
        redis-cli -p "$REDIS_PORT" info memory | tr -d '\r' | grep -E '^(used_memory|used_memory_dataset|used_memory_overhead|mem_fragmentation_ratio):'
    } >"$OUT/redis-keys.txt" 2>&1 || true
fi
GW_CPU_MS=0
for p in "${GW_PIDS[@]}"; do
    GW_CPU_MS=$((GW_CPU_MS + $(awk '{ print ($14 + $15) * 10 }' "/proc/$p/stat")))
done

MACHINE="$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), Linux $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$OUT" "$ROUNDS" "$RETURN_PCT" "$RETURN_MB" "$LABEL" "$MACHINE" "$GW_CPU_MS" "$SECS" "$N" "$RATE" "$NODES" <<'PY' || status=1
import csv, json, pathlib, re, sys
out, rounds, return_pct, return_mb, label, machine, gw_cpu_ms, secs, n, rate, nodes = sys.argv[1:]
nodes = int(nodes)
out = pathlib.Path(out); rounds = int(rounds); return_pct = float(return_pct); return_mb = float(return_mb)
rows = list(csv.DictReader(open(out / "samples.csv")))
for r in rows:
    for k in ("rss_kb", "connections", "sessions", "pending_sockets", "outbound_bytes", "redis_used_kb"):
        r[k] = int(r[k] or 0)
    r["t_s"] = float(r["t_s"])
idle = [r for r in rows if r["phase"] == "idle"]
base = idle[-1]["rss_kb"] if idle else rows[0]["rss_kb"]
peak = max(r["rss_kb"] for r in rows)
last = rows[-1]
ok = True
reports = []
for i in range(1, rounds + 1):
    try:
        reports.append(json.loads((out / f"soak-{i}.json").read_text().strip().splitlines()[-1]))
    except Exception as e:
        reports.append({"error": str(e)}); ok = False
unexpected = sum(r.get("unexpected_total", 1) for r in reports)
gauges_zero = all(last[k] == 0 for k in ("connections", "sessions", "pending_sockets", "outbound_bytes"))
online = [r.get("users_online_at_end") for r in reports]
returned_kb = last["rss_kb"] - base
allowed_kb = max(return_mb * 1024, return_pct / 100 * (peak - base))
returned = return_pct <= 0 or returned_kb <= allowed_kb
# The heap in use (mallinfo2) the gateway logged after each malloc_trim.
log = re.sub(r"\x1b\[[0-9;]*m", "", (out / "gateway.err").read_text(errors="replace"))
heap = [int(x) for x in re.findall(r"malloc_trim after sockets left.*?heap_in_use=(\d+)", log)]
heap_start = re.findall(r"heap at start heap_in_use=(\d+)", log)
ok = ok and unexpected == 0 and gauges_zero and all(o == 0 for o in online) and returned
# Per round: the RSS once the clients had left, just before the next round (or at the end).
after = []
for i in range(1, rounds + 1):
    left = [r for r in rows if r["phase"] == f"left-{i}"]
    after.append(left[-1]["rss_kb"] if left else None)
fill = [r.get("fill") or {} for r in reports]
summary = {
    "label": label, "machine": machine, "sessions": int(n), "churn_secs": int(secs), "rate": int(rate),
    "rounds": rounds, "nodes": nodes, "rss_idle_kb": base, "rss_peak_kb": peak, "rss_end_kb": last["rss_kb"],
    "rss_after_each_round_kb": after, "rss_end_minus_idle_kb": returned_kb, "return_mb": return_mb,
    "returned": returned, "returned_allowed_kb": round(allowed_kb), "return_pct": return_pct,
    "heap_in_use_start_bytes": int(heap_start[0]) if heap_start else None,
    "heap_in_use_after_trims_bytes": heap, "unexpected": unexpected, "gauges_at_end": {k: last[k] for k in
    ("connections", "sessions", "pending_sockets", "outbound_bytes")}, "users_online_at_end": online,
    "fill": fill, "gateway_cpu_ms_total": int(gw_cpu_ms),
    "redis_used_kb_idle_peak_end": [idle[-1]["redis_used_kb"] if idle else rows[0]["redis_used_kb"],
                                    max(r["redis_used_kb"] for r in rows), last["redis_used_kb"]],
    "churn_ops": [r.get("churn_ops") for r in reports], "expected": [r.get("expected") for r in reports],
    "ok": ok,
}
(out / "summary.json").write_text(json.dumps(summary) + "\n")
where = f"a cluster of {nodes} nodes on one Redis" if nodes > 1 else "one gateway"
print(f"\n==> soak {label}: {n} sockets on {where}, {secs} s of churn at {rate} ops/s, {rounds} round(s); {machine}")
for i, r in enumerate(reports, 1):
    f = r.get("fill") or {}
    print(f"round {i}: filled {r.get('filled')} in {r.get('fill_secs')} s ({f.get('logins_per_sec')} logins/s"
          + (f", gateway {f.get('server_cpu_per_login_us')} µs CPU per login, {f.get('rss_per_session_bytes')} B RSS per socket), "
             if f.get('server_cpu_per_login_us') is not None else "), ") +
          f"{r.get('churn_ops')} churn operations, {r.get('sockets_opened')} sockets opened, "
          f"unexpected {r.get('unexpected_total')}; user_sig_expired read after expire_at (µs): "
          f"{r.get('expiry_after_expire_at_us')}")
    for k, v in sorted((r.get("expected") or {}).items()):
        print(f"  {v:>9}  {k}")
    for k, v in sorted((r.get("unexpected") or {}).items()):
        print(f"  {v:>9}  UNEXPECTED {k}")
print(f"after everyone left: gauges {summary['gauges_at_end']} ({'all 0' if gauges_zero else 'NOT 0'}), "
      f"users online {online}")
print(f"RSS: idle {base / 1024:.1f} MB, peak {peak / 1024:.1f} MB, end {last['rss_kb'] / 1024:.1f} MB "
      f"(end − idle {returned_kb / 1024:+.1f} MB = {100 * returned_kb / max(1, peak - base):.0f}% of the spike; "
      f"returned = at most {allowed_kb / 1024:.1f} MB (max of {return_pct:g}% of the spike, {return_mb:g} MB): "
      f"{'yes' if returned else 'NO'}); after each round: "
      + ", ".join(f"{a / 1024:.1f} MB" for a in after if a))
if heap:
    print(f"heap in use (mallinfo2): {int(heap_start[0]) / 1048576 if heap_start else 0:.1f} MB at start; after each "
          f"malloc_trim: " + ", ".join(f"{h / 1048576:.1f} MB" for h in heap))
# The RSS curve: about 24 rows, always including the peak and the phase changes.
keep = set()
step = max(1, len(rows) // 24)
keep.update(range(0, len(rows), step))
keep.add(len(rows) - 1)
keep.add(max(range(len(rows)), key=lambda i: rows[i]["rss_kb"]))
for i in range(1, len(rows)):
    if rows[i]["phase"] != rows[i - 1]["phase"]:
        keep.update((i - 1, i))
if nodes > 1:
    ri, rp, re_ = summary["redis_used_kb_idle_peak_end"]
    print(f"Redis used_memory: idle {ri / 1024:.1f} MB, peak {rp / 1024:.1f} MB, end {re_ / 1024:.1f} MB")
redis_col = " Redis MB |" if nodes > 1 else ""
print(f"\n| t (s) | phase | connections | sessions | pending | outbound B | RSS MB{' (sum)' if nodes > 1 else ''} |{redis_col}")
print("|---|---|---|---|---|---|---|" + ("---|" if nodes > 1 else ""))
for i in sorted(keep):
    r = rows[i]
    redis = f" {r['redis_used_kb'] / 1024:.1f} |" if nodes > 1 else ""
    print(f"| {r['t_s']:.0f} | {r['phase']} | {r['connections']:,} | {r['sessions']:,} | {r['pending_sockets']:,} "
          f"| {r['outbound_bytes']:,} | {r['rss_kb'] / 1024:.1f} |{redis}")
print(f"\n{'PASS' if ok else 'FAIL'}: {out}/summary.json")
sys.exit(0 if ok else 1)
PY
exit "$status"
