#!/usr/bin/env bash
# Makes sure redis-server (7.0 or later) is on the machine for the cluster-mode tests (tests/cluster.rs).
# Idempotent and quick when present; installs Debian's package with apt-get otherwise; fails loudly.
set -euo pipefail
if command -v redis-server >/dev/null 2>&1; then
    redis-server --version
    exit 0
fi
echo "redis-server is missing: installing Debian's redis-server package"
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q >/dev/null || { echo "redis-setup: ERROR: apt-get update failed" >&2; exit 1; }
$SUDO apt-get install -y -q redis-server >/dev/null || { echo "redis-setup: ERROR: apt-get install redis-server failed" >&2; exit 1; }
# The package may start a system service; the tests start their own servers on free ports.
$SUDO service redis-server stop >/dev/null 2>&1 || true
command -v redis-server >/dev/null 2>&1 || { echo "redis-setup: ERROR: redis-server still missing" >&2; exit 1; }
redis-server --version
