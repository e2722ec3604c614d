# Sourced by the bench scripts (bench-side-by-side, bench-before-after, bench-tls, bench-cluster):
# the work directory, the child processes (killed and waited for at exit), servers started and
# waited for, a Redis of the run's own, the gateway config they share.
#
#   source "$ROOT/scripts/bench-lib.sh"
#   bench_work imgate-bench          # WORK=/tmp/imgate-bench.XXXXXX, removed at exit with the children

# bench_work PREFIX: makes WORK and sets the EXIT trap that stops every pid in PIDS and removes WORK.
bench_work() {
    WORK=$(mktemp -d "/tmp/$1.XXXXXX")
    PIDS=()
    SERVER_PID=
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}

bench_cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}

# A free TCP port on 127.0.0.1.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_server NAME CMD...: runs CMD with stdout and stderr in $WORK/NAME.out and .err and waits for
# its `listening on ws://` (or wss://) line and, from a gateway, its `admin listening on http://`
# line. Sets SERVER_PID, SERVER_URL (ws[s]://HOST:PORT/ws) and SERVER_ADMIN (HOST:PORT, or empty
# for the baseline, which has no admin listener).
start_server() {
    local name=$1 admin_line=
    shift
    [[ " $* " == *" serve "* ]] && admin_line=1
    "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    for _ in $(seq 100); do
        SERVER_URL=$(grep -o 'listening on wss\?://[^ ]*' "$WORK/$name.out" | head -1 | sed 's/listening on //' || true)
        SERVER_ADMIN=$(grep -o 'admin listening on http://[^ ]*' "$WORK/$name.out" | head -1 | sed 's|.*http://||' || true)
        if [ -n "$SERVER_URL" ] && { [ -z "$admin_line" ] || [ -n "$SERVER_ADMIN" ]; }; then
            return 0
        fi
        kill -0 "$SERVER_PID" 2>/dev/null || { echo "$name exited:" >&2; cat "$WORK/$name.err" >&2; exit 1; }
        sleep 0.1
    done
    echo "$name did not announce its address" >&2
    exit 1
}

# wait_pid PID: waits for a child to exit and forgets it.
wait_pid() {
    local p keep=()
    wait "$1" 2>/dev/null || true
    for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

# stop_pid PID: SIGTERM (a gateway drains and, in a cluster, gives up its lease), then wait_pid.
stop_pid() {
    kill "$1" 2>/dev/null || true
    wait_pid "$1"
}

# stop_server: stop_pid on the last start_server.
stop_server() {
    stop_pid "$SERVER_PID"
    SERVER_PID=
}

# start_redis: a redis-server of the run's own on a free port, no persistence, in $WORK. Sets
# REDIS_PORT, REDIS_URL and REDIS_PID, and waits for its PONG.
start_redis() {
    REDIS_PORT=$(free_port)
    REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$WORK" \
        >"$WORK/redis.log" 2>&1 &
    REDIS_PID=$!
    PIDS+=("$REDIS_PID")
    for _ in $(seq 50); do
        [ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null || true)" = PONG ] && return 0
        sleep 0.1
    done
    cat "$WORK/redis.log" >&2
    echo "redis-server did not answer PING" >&2
    exit 1
}

# gateway_toml [MAX_CONNECTIONS]: the top of a bench gateway's config (ephemeral ports, timeouts
# out of the way of a long hold; default 25,000 connections), without the [[app]] table.
gateway_toml() {
    cat <<TOML
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
max_connections = ${1:-25000}
login_timeout_secs = 600
idle_timeout_secs = 600
ping_interval_secs = 300
TOML
}

# app_toml: the [[app]] table of $APP with $KEY.
app_toml() {
    printf '[[app]]\nsdk_app_id = %s\nkey = "%s"\n' "$APP" "$KEY"
}
