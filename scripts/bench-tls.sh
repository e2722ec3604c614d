#!/usr/bin/env bash
# TLS side by side (contract §14): the gateway with `[tls]` against the bare TLS stack, tokio-rustls
# + tokio-tungstenite with the same settings (examples/baseline.rs --tls-cert/--tls-key: the same
# rustls server config, ring, the same read buffer), and both again without TLS, in one run,
# alternating, driven by the same load generator (`imgate load --tls-ca`).
#
#   ./scripts/bench-tls.sh                 # N=19000 sessions per server, 2 runs
#   N=3000 RUNS=1 ./scripts/bench-tls.sh    # a quick check
#
# Each server: N sessions (TLS handshake + upgrade + login) at concurrency CONC over
# 127.0.0.2-127.0.0.9, held HOLD seconds; VmRSS before the first connect and at the end of the hold
# (per-session delta), utime+stime over the connect phase (CPU per login). The certificate is a
# self-signed ECDSA P-256 one made with openssl for the run. Prints a Markdown table.
#
# Environment: N (19000), CONC (200), HOLD (5), RUNS (2).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

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
bench_work imgate-bench-tls
cp "$TARGET/release/imgate" "$WORK/imgate"
cp "$TARGET/release/examples/baseline" "$WORK/baseline"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -addext "basicConstraints=critical,CA:FALSE" \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" >/dev/null 2>&1

common=$(gateway_toml)
app=$(app_toml)
printf '%s\n%s\n' "$common" "$app" >"$WORK/plain.toml"
printf '%s\n[tls]\ncert = "%s"\nkey = "%s"\n%s\n' "$common" "$WORK/cert.pem" "$WORK/key.pem" "$app" \
    >"$WORK/tls.toml"

LOAD=(--sessions "$N" --concurrency "$CONC" --hold "$HOLD" --json --tls-ca "$WORK/cert.pem")
for run in $(seq "$RUNS"); do
    for v in gateway-tls baseline-tls gateway-plain baseline-plain; do
        echo "==> run $run/$RUNS: $v, $N sessions"
        case $v in
            gateway-tls) start_server "$v" "$WORK/imgate" serve --config "$WORK/tls.toml" ;;
            gateway-plain) start_server "$v" "$WORK/imgate" serve --config "$WORK/plain.toml" ;;
            baseline-tls) start_server "$v" "$WORK/baseline" --tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem" ;;
            baseline-plain) start_server "$v" "$WORK/baseline" ;;
        esac
        sleep 1
        # The certificate names localhost: connect by name (127.0.0.1 resolves the same).
        url=${SERVER_URL/127.0.0.1/localhost}
        case $v in
            gateway-*) "$WORK/imgate" load --url "$url" --sdk-app-id $APP --key "$KEY" "${LOAD[@]}" \
                --server-pid "$SERVER_PID" >"$WORK/$v.$run.json" || true ;;
            baseline-*) "$WORK/imgate" load --baseline --url "$url" "${LOAD[@]}" \
                --server-pid "$SERVER_PID" >"$WORK/$v.$run.json" || true ;;
        esac
        tail -1 "$WORK/$v.$run.json"
        stop_server
    done
done

MACHINE="$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), Linux $(uname -r)"
python3 - "$WORK" "$RUNS" "$N" "$CONC" "$HOLD" "$MACHINE" <<'PY'
import json, sys, pathlib, statistics
work, runs, n, conc, hold, machine = sys.argv[1:]
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
    v = [get(load(name, i), path) for i in range(1, runs + 1)]
    v = [x for x in v if isinstance(x, (int, float))]
    return statistics.median(v) if v else None
def f(x, unit=""):
    return "—" if x is None else f"{round(x):,}{unit}"
def r(a, b):
    return f"{a / b:.2f}×" if a and b else "—"
def each(a, b, path):
    return " / ".join(r(get(load(a, i), path), get(load(b, i), path)) for i in range(1, runs + 1))
print(f"\nN = {n} sessions per server, concurrency {conc}, hold {hold} s, {runs} run(s) (medians), {machine}.\n")
print("| measure | gateway TLS | bare TLS stack | gateway / bare (each run) | gateway plain | bare plain | TLS cost, gateway / bare |")
print("|---|---|---|---|---|---|---|")
for label, path, unit in [("RSS per idle session", "server.rss_per_session_bytes", " B"),
                          ("server CPU per login", "server.cpu_per_login_us", " µs"),
                          ("logins/s", "logins_per_sec", "")]:
    gt, bt, gp, bp = (med(x, path) for x in ("gateway-tls", "baseline-tls", "gateway-plain", "baseline-plain"))
    cost = f"{f(gt - gp if gt and gp else None, unit)} / {f(bt - bp if bt and bp else None, unit)}"
    print(f"| {label} | {f(gt, unit)} | {f(bt, unit)} | {r(gt, bt)} ({each('gateway-tls', 'baseline-tls', path)}) | {f(gp, unit)} | {f(bp, unit)} | {cost} |")
held = {k: [get(load(k, i), "held") for i in range(1, runs + 1)] for k in
        ("gateway-tls", "baseline-tls", "gateway-plain", "baseline-plain")}
errors = {k: [get(load(k, i), "errors") for i in range(1, runs + 1)] for k in held}
print("\nsessions held, per run:", held)
print("errors, per run:", errors)
PY
