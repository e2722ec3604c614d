#!/usr/bin/env bash
# Cluster-mode benchmark (contract §12): cross-node vs local kick latency, and the scale-out of 3 nodes
# sharing presence through one Redis, next to a single node without `[cluster]`, in one run.
#
#   ./scripts/bench-cluster.sh                 # N=19000 sessions per node, 3 nodes (57,000 at once)
#   N=3000 HOLD=20 IDLE=12 KICK_USERS=500 KICK_RUNS=1 WRITE=0 ./scripts/bench-cluster.sh   # a quick check
#
# What it does, in order (everything on loopback, every process its own):
#  1. single node, no [cluster]: one `imgate load` of N sessions (--server-pid: VmRSS before the first
#     connect and at the end of the hold, CPU over the connect phase), then KICK_USERS takeovers one at
#     a time on it (the embedded registry's kick, for reference);
#  2. a redis-server of its own on a free port (--save '' --appendonly no), then, if SOLO=1, one
#     cluster node alone with one generator of N sessions (the per-login cost of Redis with the whole
#     machine to itself), stopped again;
#  3. 3 cluster nodes (node ids bench-1..3) and 3 generator processes started together, one per node,
#     N sessions each (users disjoint per generator, sockets bound round-robin to 127.0.0.2-127.0.0.9 by
#     the generator), held HOLD seconds. The script polls every node's /metrics (imgate_sessions) and at
#     the first instant every node holds its N it samples Redis (INFO memory used_memory, DBSIZE),
#     the CPU time of Redis, the nodes and the generators, the machine's busy time and the load average;
#     then again IDLE seconds later, with nothing but the held sessions (heartbeats, reconciliation):
#     what idle sessions cost Redis and the nodes. HOLD must cover the spread of the generators'
#     connect phases plus IDLE;
#  4. after the sessions have left, KICK_RUNS alternating pairs of KICK_USERS takeovers one at a time:
#     local (old and new socket on node 1) and cross-node (old on node 2, new on node 1:
#     `imgate load --mode kick --url NODE2 --kick-url NODE1`).
# The table in BENCHMARKS.md between the cluster markers is replaced with the results (WRITE=0: print
# only). Every process it started is stopped on exit (trap).
#
# Environment: N (19000), CONC (200), HOLD (50), IDLE (36), KICK_USERS (2000), KICK_RUNS (2), SOLO (1),
# LEASE_MS (5000), HEARTBEAT_MS (1000), RECONCILE_SECS (10), REDIS_TIMEOUT_MS (500), WRITE (1).
# CARGO_TARGET_DIR is honoured; the binary is copied into the run's temporary directory so that a
# rebuild by someone else during the run does not change what is measured.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

N=${N:-19000}
CONC=${CONC:-200}
HOLD=${HOLD:-50}
IDLE=${IDLE:-36}
KICK_USERS=${KICK_USERS:-2000}
KICK_RUNS=${KICK_RUNS:-2}
SOLO=${SOLO:-1}
LEASE_MS=${LEASE_MS:-5000}
HEARTBEAT_MS=${HEARTBEAT_MS:-1000}
RECONCILE_SECS=${RECONCILE_SECS:-10}
REDIS_TIMEOUT_MS=${REDIS_TIMEOUT_MS:-500}
WRITE=${WRITE:-1}
APP=1400000000
KEY=bench-key-$RANDOM$RANDOM

source "$ROOT/scripts/bench-lib.sh"
bench_work imgate-bench-cluster

echo "==> cargo build --release (imgate)"
cargo build --release --quiet --bin imgate
TARGET=${CARGO_TARGET_DIR:-target}
cp "$TARGET/release/imgate" "$WORK/imgate"
BIN=$WORK/imgate

loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# gw_config FILE [NODE_ID]: a gateway config; with NODE_ID, a [cluster] table on $REDIS_URL.
gw_config() {
    { gateway_toml 20000; echo; app_toml; } >"$1"
    if [ -n "${2:-}" ]; then
        cat >>"$1" <<EOF

[cluster]
redis_url = "$REDIS_URL"
node_id = "$2"
lease_ms = $LEASE_MS
heartbeat_ms = $HEARTBEAT_MS
reconcile_secs = $RECONCILE_SECS
redis_timeout_ms = $REDIS_TIMEOUT_MS
EOF
    fi
}

# start_node NAME [NODE_ID]: starts `imgate serve` and waits for its two announce lines.
# Sets PID_<NAME>, URL_<NAME> (ws://.../ws) and ADMIN_<NAME> (host:port).
start_node() {
    local name=$1
    gw_config "$WORK/$name.toml" "${2:-}"
    start_server "$name" "$BIN" serve --config "$WORK/$name.toml"
    printf -v "PID_$name" '%s' "$SERVER_PID"
    printf -v "URL_$name" '%s' "$SERVER_URL"
    printf -v "ADMIN_$name" '%s' "$SERVER_ADMIN"
}

rcli() { redis-cli -p "$REDIS_PORT" "$@"; }

LOAD=(--sdk-app-id "$APP" --key "$KEY" --concurrency "$CONC" --hold "$HOLD" --json)
KICK=(--mode kick --sdk-app-id "$APP" --key "$KEY" --kick-users "$KICK_USERS" --concurrency 1 --json)

# ---- 1. single node, no [cluster] -------------------------------------------------------------------
echo "==> single node (no [cluster]): $N sessions, load average $(loadavg)"
loadavg >"$WORK/single.load"
start_node single
sleep 1
"$BIN" load --url "$URL_single" "${LOAD[@]}" --sessions "$N" --user-prefix single- \
    --server-pid "$PID_single" >"$WORK/single.json" || true
cat "$WORK/single.json"
echo "==> single node: $KICK_USERS takeovers one at a time, load average $(loadavg)"
loadavg >"$WORK/kick-single.load"
"$BIN" load --url "$URL_single" "${KICK[@]}" --user-prefix kick-single- >"$WORK/kick-single.json" || true
cat "$WORK/kick-single.json"
stop_pid "$PID_single"

# ---- 2. Redis, and one cluster node alone ---------------------------------------------------------------
start_redis
echo "==> redis-server $(redis-server --version | grep -o 'v=[0-9.]*') on port $REDIS_PORT (pid $REDIS_PID)"

if [ "$SOLO" = 1 ]; then
    echo "==> one cluster node alone: $N sessions, load average $(loadavg)"
    loadavg >"$WORK/solo.load"
    start_node solo bench-solo
    sleep 1
    "$BIN" load --url "$URL_solo" "${LOAD[@]}" --sessions "$N" --user-prefix solo- \
        --server-pid "$PID_solo" >"$WORK/solo.json" || true
    cat "$WORK/solo.json"
    stop_pid "$PID_solo"
fi

# ---- 3. three nodes, three generators at once -----------------------------------------------------------
for i in 1 2 3; do start_node "n$i" "bench-$i"; done
sleep 2
rcli info memory | tr -d '\r' | grep -E '^used_memory:' | cut -d: -f2 >"$WORK/redis-mem-before"
rcli dbsize >"$WORK/redis-keys-before"
echo "==> 3 nodes x $N sessions at once, load average $(loadavg); redis used_memory $(cat "$WORK/redis-mem-before") B, $(cat "$WORK/redis-keys-before") keys"
loadavg >"$WORK/scale.load"

# snap.py: one JSON line with the machine's busy CPU ms, the load average and, per named pid, its CPU ms
# (utime + stime) and VmRSS kB.
cat >"$WORK/snap.py" <<'PY'
import json, sys
def cpu_ms(pid):
    try:
        s = open(f"/proc/{pid}/stat").read()
        f = s[s.rfind(")") + 1:].split()
        return (int(f[11]) + int(f[12])) * 10
    except Exception:
        return None
def rss_kb(pid):
    try:
        for l in open(f"/proc/{pid}/status"):
            if l.startswith("VmRSS:"):
                return int(l.split()[1])
    except Exception:
        return None
def snap(named):
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    busy = sum(f[i] for i in (0, 1, 2, 5, 6, 7)) * 10
    return {"machine_ms": busy, "loadavg": open("/proc/loadavg").read().split()[:3],
            "pids": {n: {"cpu_ms": cpu_ms(p), "rss_kb": rss_kb(p)} for n, p in named.items()}}
if __name__ == "__main__":
    print(json.dumps(snap(dict(a.split("=", 1) for a in sys.argv[1:]))))
PY

# poll.py: polls the nodes' /metrics until every node holds N sessions (or every generator is gone),
# then snapshots CPU, load average and Redis; then again IDLE seconds later. Prints one JSON line.
cat >"$WORK/poll.py" <<'PY'
import json, subprocess, sys, time, urllib.request, os
sys.path.insert(0, os.path.dirname(__file__))
from snap import snap
n, idle, redis_port = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
admins, gens = sys.argv[4].split(","), sys.argv[5].split(",")
named = dict(a.split("=", 1) for a in sys.argv[6:])
def sessions(admin):
    try:
        body = urllib.request.urlopen(f"http://{admin}/metrics", timeout=2).read().decode()
    except Exception:
        return None
    return sum(float(l.split()[-1]) for l in body.splitlines() if l.startswith("imgate_sessions{"))
def alive(pid):
    try:
        os.kill(int(pid), 0)
        s = open(f"/proc/{pid}/stat").read()
        return s[s.rfind(")") + 2] != "Z"
    except Exception:
        return False
def redis(*args):
    return subprocess.run(["redis-cli", "-p", redis_port, *args], capture_output=True, text=True).stdout
def info(section, field):
    for l in redis("info", section).splitlines():
        if l.startswith(field + ":"):
            return int(l.split(":")[1])
    return None
best, start = None, time.monotonic()
while True:
    per = [sessions(a) for a in admins]
    total = sum(x or 0 for x in per)
    t = time.monotonic() - start
    if best is None or total > best["total"]:
        best = {"total": total, "per_node": per, "at_s": round(t, 2), "snap": snap(named)}
        best["redis_used_memory"] = info("memory", "used_memory")
        best["redis_keys"] = int(redis("dbsize").strip() or 0)
        best["redis_commands"] = info("stats", "total_commands_processed")
    if all(x is not None and x >= n for x in per):
        best["all_held"] = True
        break
    if not any(alive(g) for g in gens) or t > 600:
        best["all_held"] = False
        break
    time.sleep(0.2)
key = redis("--scan", "--pattern", "im:{*}").split()
best["sample_user_key"] = key[0] if key else None
if key:
    best["sample_user_key_bytes"] = int(redis("memory", "usage", key[0]).strip() or 0)
if best["all_held"] and idle > 0:
    t0 = time.monotonic()
    while time.monotonic() - t0 < idle and all(alive(g) for g in gens):
        time.sleep(0.5)
    per = [sessions(a) for a in admins]
    best["idle"] = {"secs": round(time.monotonic() - t0, 2), "snap": snap(named),
                    "per_node": per, "total": sum(x or 0 for x in per),
                    "redis_commands": info("stats", "total_commands_processed"),
                    "redis_used_memory": info("memory", "used_memory")}
print(json.dumps(best))
PY

NAMED=(redis="$REDIS_PID" n1="$PID_n1" n2="$PID_n2" n3="$PID_n3")
python3 "$WORK/snap.py" "${NAMED[@]}" >"$WORK/scale.snap0"
GENS=()
for i in 1 2 3; do
    url_var=URL_n$i
    pid_var=PID_n$i
    "$BIN" load --url "${!url_var}" "${LOAD[@]}" --sessions "$N" --user-prefix "g$i-" \
        --server-pid "${!pid_var}" >"$WORK/scale.$i.json" 2>"$WORK/scale.$i.err" &
    GENS+=("$!")
    PIDS+=("$!")
done
python3 "$WORK/poll.py" "$N" "$IDLE" "$REDIS_PORT" "$ADMIN_n1,$ADMIN_n2,$ADMIN_n3" "$(IFS=,; echo "${GENS[*]}")" \
    "${NAMED[@]}" g1="${GENS[0]}" g2="${GENS[1]}" g3="${GENS[2]}" >"$WORK/scale.poll" || true
cat "$WORK/scale.poll"
for i in 1 2 3; do
    wait_pid "${GENS[$((i - 1))]}"
    cat "$WORK/scale.$i.json"
    if [ -s "$WORK/scale.$i.err" ]; then cat "$WORK/scale.$i.err" >&2; fi
done

# The sessions leave presence as the generators close their sockets; wait for that before the kicks.
for _ in $(seq 300); do
    keys=$(rcli dbsize)
    [ "$keys" -le "$(($(cat "$WORK/redis-keys-before") + 16))" ] && break
    sleep 0.2
done
echo "==> redis keys after the generators left: $(rcli dbsize)"
rcli dbsize >"$WORK/redis-keys-after"
rcli info memory | tr -d '\r' | grep -E '^used_memory:' | cut -d: -f2 >"$WORK/redis-mem-after"

# ---- 4. kick latency: local vs cross-node ---------------------------------------------------------------
for r in $(seq "$KICK_RUNS"); do
    echo "==> kick run $r/$KICK_RUNS: local (node 1 -> node 1), load average $(loadavg)"
    loadavg >"$WORK/kick-local.$r.load"
    "$BIN" load --url "$URL_n1" "${KICK[@]}" --user-prefix "kl$r-" >"$WORK/kick-local.$r.json" || true
    cat "$WORK/kick-local.$r.json"
    echo "==> kick run $r/$KICK_RUNS: cross-node (old on node 2, new on node 1), load average $(loadavg)"
    loadavg >"$WORK/kick-cross.$r.load"
    "$BIN" load --url "$URL_n2" --kick-url "$URL_n1" "${KICK[@]}" --user-prefix "kx$r-" \
        >"$WORK/kick-cross.$r.json" || true
    cat "$WORK/kick-cross.$r.json"
done
for i in 1 2 3; do
    curl -s "http://$(eval echo "\$ADMIN_n$i")/metrics" >"$WORK/n$i.metrics" || true
done
for i in 1 2 3; do pid_var=PID_n$i; stop_pid "${!pid_var}"; done

MACHINE="$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), Linux $(uname -r)"
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || COMMIT="$COMMIT + uncommitted changes"
DATE=$(date -u +%Y-%m-%dT%H:%MZ)
REDIS_VERSION=$(redis-server --version | grep -o 'v=[0-9.]*' | cut -c3-)

python3 - "$WORK" "$MACHINE" "$COMMIT" "$DATE" "$N" "$CONC" "$HOLD" "$IDLE" "$KICK_USERS" "$KICK_RUNS" "$SOLO" "$WRITE" \
    "$REDIS_VERSION" "$LEASE_MS/$HEARTBEAT_MS/$RECONCILE_SECS/$REDIS_TIMEOUT_MS" <<'PY'
import json, sys, re, pathlib, statistics
(work, machine, commit, date, n, conc, hold, idle, kusers, kruns, solo, write, rver, ctimes) = sys.argv[1:]
n, kruns = int(n), int(kruns)
W = pathlib.Path(work)
def load(name):
    try:
        return json.loads((W / name).read_text().strip().splitlines()[-1])
    except Exception as e:
        return {"error": f"{name}: {e}"}
def text(name):
    try:
        return (W / name).read_text().strip()
    except Exception:
        return "—"
def get(r, path):
    for k in path.split("."):
        r = r.get(k) if isinstance(r, dict) else None
    return r
def num(x, unit=""):
    return "—" if x is None else f"{round(x):,}{unit}"
def ratio(a, b):
    return f"{a / b:.2f}" if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else "—"
def errs(r):
    e = dict(r.get("errors") or {})
    for k, v in (r.get("dropped_during_hold") or {}).items():
        e["dropped " + k] = v
    if "error" in r:
        e["no result"] = r["error"]
    return ", ".join(f"{k}: {v}" for k, v in e.items()) or "none"

single = load("single.json")
solo_r = load("solo.json") if solo == "1" else None
gens = [load(f"scale.{i}.json") for i in (1, 2, 3)]
poll = load("scale.poll")
snap0 = load("scale.snap0")
out = []
out.append(f"Run {date} on {machine}, commit `{commit}`, redis-server {rver}: N = {n} sessions per node, "
           f"concurrency {conc} per generator, hold {hold} s, `[cluster]` lease/heartbeat/reconcile/redis timeout = "
           f"{ctimes} (ms/ms/s/ms). Command: `N={n} CONC={conc} HOLD={hold} IDLE={idle} KICK_USERS={kusers} KICK_RUNS={kruns} "
           f"./scripts/bench-cluster.sh`. Load average (1/5/15 min) at the start of each phase in the tables.")
out.append("")
out.append("Scale-out: each generator holds N sessions on its own node; the single node and the lone "
           "cluster node each ran alone on the machine, the 3 cluster nodes ran together with their 3 "
           "generators and Redis.")
out.append("")
cols = [("single node, no `[cluster]`", single, text("single.load"))]
if solo_r is not None:
    cols.append(("1 cluster node alone", solo_r, text("solo.load")))
for i, g in enumerate(gens, 1):
    cols.append((f"cluster node {i} of 3", g, text("scale.load")))
out.append("| measure | " + " | ".join(c[0] for c in cols) + " |")
out.append("|---|" + "---|" * len(cols))
def row(label, path, unit="", rat=True):
    base = get(single, path)
    cells = []
    for i, (_, r, _) in enumerate(cols):
        v = get(r, path)
        cell = num(v, unit)
        if rat and i > 0 and v is not None and base:
            cell += f" ({ratio(v, base)}×)"
        cells.append(cell)
    out.append(f"| {label} | " + " | ".join(cells) + " |")
row("sessions held at the end of the hold (of N)", "held", rat=False)
row("logins/s: N / the generator's connect phase", "logins_per_sec")
row("server RSS per session: (VmRSS held − before) / held", "server.rss_per_session_bytes", " B")
row("server VmRSS before the first connect", "server.rss_before_kb", " kB", rat=False)
row("server VmRSS with N held", "server.rss_held_kb", " kB")
row("server CPU per login (utime+stime over the connect phase / N)", "server.cpu_per_login_us", " µs")
def hold_rate(r):
    v = get(r, "server.cpu_hold_ms")
    return None if v is None or not int(hold) else v / int(hold)
def row_fn(label, f, unit=""):
    base = f(single)
    cells = []
    for i, (_, r, _) in enumerate(cols):
        v = f(r)
        cell = "—" if v is None else f"{v:,.1f}{unit}"
        if i > 0 and v is not None and base:
            cell += f" ({ratio(v, base)}×)"
        cells.append(cell)
    out.append(f"| {label} | " + " | ".join(cells) + " |")
row_fn("server CPU while the N sessions sit idle (over the hold / hold)", hold_rate, " ms/s")
row("setup p50 (connect + upgrade + login)", "setup_us.p50", " µs")
row("setup p99", "setup_us.p99", " µs")
row("login round trip p99", "login_us.p99", " µs")
row("load generator CPU per login (its connect phase)", "cpu.client_per_login_us", " µs")
out.append("| load average at the start | " + " | ".join(c[2] for c in cols) + " |")
out.append("| errors | " + " | ".join(errs(c[1]) for c in cols) + " |")
out.append("")

# The concurrent phase as a whole.
total = poll.get("total")
s1 = poll.get("snap") or {}
def d(path):
    a, b = get(snap0, path), get(s1, path)
    return b - a if isinstance(a, (int, float)) and isinstance(b, (int, float)) else None
secs = [get(g, "connect_secs") for g in gens]
secs = [s for s in secs if isinstance(s, (int, float))]
agg = 3 * n / max(secs) if secs else None
redis_mem0 = int(text("redis-mem-before")) if text("redis-mem-before").isdigit() else None
redis_mem = poll.get("redis_used_memory")
redis_per = (redis_mem - redis_mem0) / total if redis_mem and redis_mem0 is not None and total else None
redis_cpu = d("pids.redis.cpu_ms")
nodes_cpu = sum(x for x in (d(f"pids.n{i}.cpu_ms") for i in (1, 2, 3)) if x is not None)
gens_cpu = sum(x for x in (get(s1, f"pids.g{i}.cpu_ms") for i in (1, 2, 3)) if x is not None)
machine = d("machine_ms")
other = machine - (redis_cpu or 0) - nodes_cpu - gens_cpu if machine is not None else None
per_node = poll.get("per_node") or []
out.append("The 3-node phase as a whole (Redis and CPU sampled at the first instant every node held its N, "
           f"{poll.get('at_s', '—')} s after the generators started):")
out.append("")
out.append("| measure | value |")
out.append("|---|---|")
out.append(f"| sessions held at once (sum of the nodes' `imgate_sessions` at one instant) | {num(total)} of {3 * n:,} "
           f"({' + '.join(num(x) for x in per_node)}){'' if poll.get('all_held') else ' — not all at once'} |")
out.append(f"| aggregate logins/s: 3N / the slowest generator's connect phase | {num(agg)} "
           f"({ratio(agg, get(single, 'logins_per_sec'))}× the single node) |")
out.append(f"| Redis `used_memory` before → with all held | {num(redis_mem0)} → {num(redis_mem)} B |")
out.append(f"| Redis memory per session: used_memory delta / sessions held | {num(redis_per, ' B')} |")
out.append(f"| Redis keys (DBSIZE) before → with all held → after the generators left | "
           f"{text('redis-keys-before')} → {num(poll.get('redis_keys'))} → {text('redis-keys-after')} |")
out.append(f"| `MEMORY USAGE` of one user's hash (`{poll.get('sample_user_key')}`) | {num(poll.get('sample_user_key_bytes'), ' B')} |")
out.append(f"| Redis CPU per login (utime+stime / sessions) | {num(redis_cpu * 1000 / total if redis_cpu is not None and total else None, ' µs')} |")
out.append(f"| CPU from the generators' start to that instant: machine / nodes / generators (including minting their UserSigs before connecting) / Redis / the rest (other people, this script) | "
           f"{num(machine)} / {num(nodes_cpu)} / {num(gens_cpu)} / {num(redis_cpu)} / {num(other)} ms |")
out.append(f"| load average at the start / at that instant | {text('scale.load')} / {' '.join(s1.get('loadavg') or ['—'])} |")
idle_r = poll.get("idle")
if idle_r:
    s2 = idle_r["snap"]
    def di(path):
        a, b = get(s1, path), get(s2, path)
        return b - a if isinstance(a, (int, float)) and isinstance(b, (int, float)) else None
    secs_i = idle_r["secs"] or 1
    rate = lambda x: None if x is None else x / secs_i
    nodes_i = [rate(di(f"pids.n{i}.cpu_ms")) for i in (1, 2, 3)]
    cmds = (idle_r.get("redis_commands") or 0) - (poll.get("redis_commands") or 0)
    out.append(f"| idle window: {secs_i:.0f} s right after, sessions still held | {num(idle_r.get('total'))} |")
    out.append(f"| idle: Redis CPU | {num(rate(di('pids.redis.cpu_ms')), ' ms/s')} |")
    out.append(f"| idle: Redis commands/s (total_commands_processed delta) | {num(cmds / secs_i)} |")
    out.append(f"| idle: CPU of nodes 1 / 2 / 3 | {' / '.join(num(x) for x in nodes_i)} ms/s |")
    out.append(f"| idle: machine busy / load average at the end | {num(rate(di('machine_ms')), ' ms/s')} / {' '.join(s2.get('loadavg') or ['—'])} |")
else:
    out.append("| idle window | not measured (not every node held its N at one instant, or IDLE=0) |")
out.append("")

def kick_row(label, r, la):
    if "kick_us" not in r:
        return f"| {label} | — | — | — | {r.get('error', 'no result')} | {la} |"
    k, l = r["kick_us"], r["relogin_us"]
    return (f"| {label} | {r['kicked']:,} of {r['users']:,} | {k['p50']:,} / {k['p99']:,} / {k['max']:,} µs | "
            f"{l['p50']:,} / {l['p99']:,} µs | {errs(r)} | {la} |")
out.append(f"Kick latency, {kusers} takeovers one at a time (new login sent → the old socket reads "
           "`kicked_offline`; then the old socket must be closed with 4501):")
out.append("")
out.append("| where | kicked | kick p50 / p99 / max | new login's own response p50 / p99 | errors | load average |")
out.append("|---|---|---|---|---|---|")
out.append(kick_row("single node, no `[cluster]`", load("kick-single.json"), text("kick-single.load")))
for r in range(1, kruns + 1):
    out.append(kick_row(f"cluster, local (node 1 → node 1), run {r}", load(f"kick-local.{r}.json"), text(f"kick-local.{r}.load")))
    out.append(kick_row(f"cluster, cross-node (new on node 1 → old on node 2), run {r}", load(f"kick-cross.{r}.json"), text(f"kick-cross.{r}.load")))
table = "\n".join(out)
print()
print(table)
if write == "1":
    p = pathlib.Path("BENCHMARKS.md")
    body = p.read_text() if p.exists() else ""
    begin, end = "<!-- cluster:begin -->", "<!-- cluster:end -->"
    block = f"{begin}\n{table}\n{end}"
    if begin in body and end in body:
        body = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, body, flags=re.S)
    else:
        body += "\n" + block + "\n"
    p.write_text(body)
    print("\nBENCHMARKS.md updated")
PY
