#!/usr/bin/env bash
# Installs the official TLSSigAPIv2 UserSig generators that tests/interop.rs checks imgate against:
#   - PyPI tls-sig-api-v2 1.1   (scripts/interop/requirements.txt, hash-pinned) into .interop/venv
#     (or .interop/pylib with `pip install --target` when venv is unusable);
#   - npm  tls-sig-api-v2 1.0.2 (scripts/interop/package.json + package-lock.json) into .interop/node.
# and writes two launchers that the tests use:
#   .interop/bin/python   runs python3 with the PyPI generator importable
#   .interop/bin/node     runs node with the npm generator requirable
#
# Idempotent and fast when already installed (a stamp of the pinned inputs is checked first).
# Safe to run concurrently (flock, or a mkdir lock when flock is missing).
# Fails loudly: non-zero exit and a message naming what could not be installed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="$ROOT/scripts/interop"
DEST="$ROOT/.interop"
# Bump when this script changes what it installs or how the launchers look.
SETUP_VERSION=1

say() { echo "interop-setup: $*" >&2; }
die() {
    say "ERROR: $*"
    say "the interop tests (tests/interop.rs) need the official generators; see scripts/interop-setup.sh"
    exit 1
}

stamp_of() {
    {
        echo "setup $SETUP_VERSION in $DEST"
        cat "$SRC/requirements.txt" "$SRC/package.json" "$SRC/package-lock.json"
    } | sha256sum | cut -d' ' -f1
}
WANT="$(stamp_of)"
STAMP="$DEST/.stamp"

installed() {
    [[ -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" && -x "$DEST/bin/python" && -x "$DEST/bin/node" ]]
}

# Fast path: nothing to do.
if installed; then
    exit 0
fi

mkdir -p "$DEST"

# ---- lock -------------------------------------------------------------------------------------
LOCKDIR=""
if command -v flock >/dev/null 2>&1; then
    exec 9>"$DEST/.setup.lock"
    flock -w 900 9 || die "timed out waiting for another interop-setup.sh (lock $DEST/.setup.lock)"
else
    LOCKDIR="$DEST/.setup.lockdir"
    waited=0
    until mkdir "$LOCKDIR" 2>/dev/null; do
        holder="$(cat "$LOCKDIR/pid" 2>/dev/null || true)"
        if [[ -n "$holder" ]] && ! kill -0 "$holder" 2>/dev/null; then
            say "removing a stale lock left by pid $holder"
            rm -rf "$LOCKDIR"
            continue
        fi
        ((waited++ < 1800)) || die "timed out waiting for another interop-setup.sh (lock $LOCKDIR)"
        sleep 0.5
    done
    echo $$ >"$LOCKDIR/pid"
    trap 'rm -rf "$LOCKDIR"' EXIT
fi

# Someone else may have finished while we waited.
if installed; then
    exit 0
fi

START=$SECONDS
rm -f "$STAMP"
mkdir -p "$DEST/bin"

as_root() {
    if [[ $(id -u) -eq 0 ]]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"; else return 1; fi
}
APT_UPDATED=0
apt_install() {
    command -v apt-get >/dev/null 2>&1 || return 1
    if ((APT_UPDATED == 0)); then
        say "apt-get update"
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || return 1
        APT_UPDATED=1
    fi
    say "apt-get install $*"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
}

# ---- Python: PyPI tls-sig-api-v2 --------------------------------------------------------------
export PIP_ROOT_USER_ACTION=ignore
PIP_FLAGS=(--disable-pip-version-check --no-input --quiet --require-hashes -r "$SRC/requirements.txt")

command -v python3 >/dev/null 2>&1 || apt_install python3 || die "python3 is missing and could not be installed"

rm -rf "$DEST/venv" "$DEST/pylib"
PY_KIND=""
if [[ -n "${INTEROP_FORCE_PIP_TARGET:-}" ]]; then
    say "INTEROP_FORCE_PIP_TARGET set: skipping venv"
    PY_KIND=target
elif python3 -m venv "$DEST/venv" >&2 2>"$DEST/venv.log"; then
    PY_KIND=venv
else
    say "python3 -m venv failed ($(tail -n1 "$DEST/venv.log")); trying Debian's python3-venv"
    rm -rf "$DEST/venv"
    if apt_install python3-venv && python3 -m venv "$DEST/venv" >&2 2>"$DEST/venv.log"; then
        PY_KIND=venv
    else
        rm -rf "$DEST/venv"
        say "no usable venv; falling back to pip install --target $DEST/pylib"
        PY_KIND=target
    fi
fi

if [[ $PY_KIND == venv ]]; then
    say "installing PyPI tls-sig-api-v2 into $DEST/venv"
    "$DEST/venv/bin/python" -m pip install "${PIP_FLAGS[@]}" >&2 ||
        die "pip could not install tls-sig-api-v2 (PyPI) into $DEST/venv"
    cat >"$DEST/bin/python" <<LAUNCHER
#!/bin/sh
# Written by scripts/interop-setup.sh: python with the PyPI tls-sig-api-v2 generator.
exec "$DEST/venv/bin/python" "\$@"
LAUNCHER
else
    if ! python3 -m pip --version >/dev/null 2>&1; then
        apt_install python3-pip || die "python3 has neither venv nor pip, and python3-pip could not be installed"
    fi
    say "installing PyPI tls-sig-api-v2 into $DEST/pylib"
    python3 -m pip install --target "$DEST/pylib" "${PIP_FLAGS[@]}" >&2 ||
        die "pip could not install tls-sig-api-v2 (PyPI) into $DEST/pylib"
    cat >"$DEST/bin/python" <<LAUNCHER
#!/bin/sh
# Written by scripts/interop-setup.sh: python with the PyPI tls-sig-api-v2 generator.
PYTHONPATH="$DEST/pylib\${PYTHONPATH:+:\$PYTHONPATH}" exec "$(python3 -c 'import sys; print(sys.executable)')" "\$@"
LAUNCHER
fi
chmod +x "$DEST/bin/python"
"$DEST/bin/python" -c 'import TLSSigAPIv2; TLSSigAPIv2.TLSSigAPIv2(1, "k").gen_sig("u", 1)' ||
    die "the PyPI tls-sig-api-v2 generator was installed but does not import or run"

# ---- Node: npm tls-sig-api-v2 -----------------------------------------------------------------
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    apt_install nodejs npm || die "node/npm are missing and could not be installed"
fi
rm -rf "$DEST/node"
mkdir -p "$DEST/node"
cp "$SRC/package.json" "$SRC/package-lock.json" "$DEST/node/"
say "installing npm tls-sig-api-v2 into $DEST/node"
(cd "$DEST/node" && npm ci --no-audit --no-fund --loglevel=error >&2) ||
    die "npm could not install tls-sig-api-v2 into $DEST/node"
cat >"$DEST/bin/node" <<LAUNCHER
#!/bin/sh
# Written by scripts/interop-setup.sh: node with the npm tls-sig-api-v2 generator requirable.
NODE_PATH="$DEST/node/node_modules\${NODE_PATH:+:\$NODE_PATH}" exec "$(command -v node)" "\$@"
LAUNCHER
chmod +x "$DEST/bin/node"
"$DEST/bin/node" -e 'new (require("tls-sig-api-v2").Api)(1, "k").genUserSig("u", 1)' ||
    die "the npm tls-sig-api-v2 generator was installed but does not load or run"

echo "$WANT" >"$STAMP"
say "ready in $((SECONDS - START)) s: $DEST (python: $PY_KIND)"
