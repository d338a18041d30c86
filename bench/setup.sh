#!/usr/bin/env bash
# Installs what the benchmarks need (issue 9): the networked peers from Debian (tarantool,
# redis-server, redis-tools for redis-benchmark), stdb with its `bench` extra from PyPI (the
# Redis and Tarantool Python clients, matplotlib), and the Node load generator's npm packages.
# Idempotent: installs only what is missing.  Run as root (or with sudo) on Debian bookworm:
#
#     bash bench/setup.sh
#
# The benchmark starts its own tarantool and redis-server processes on free ports, each with its
# own work directory, so the Debian services are not wanted: they are kept from starting while
# apt installs the packages, then stopped and disabled should they be running anyway.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python}

SUDO=""
if [ "$(id -u)" != 0 ]; then
    SUDO=sudo
fi

need=()
command -v tarantool >/dev/null 2>&1 || need+=(tarantool)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-benchmark >/dev/null 2>&1 || need+=(redis-tools)

if [ ${#need[@]} -gt 0 ]; then
    echo "== apt-get install ${need[*]}"
    # policy-rc.d exit 101: invoke-rc.d starts no service while the packages install
    blocker=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        blocker=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$blocker" >/dev/null
        $SUDO chmod +x "$blocker"
        trap '$SUDO rm -f "$blocker"' EXIT
    fi
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need[@]}"
    if [ -n "$blocker" ]; then
        $SUDO rm -f "$blocker"
        trap - EXIT
    fi
else
    echo "== tarantool, redis-server and redis-benchmark are installed"
fi

# The Debian services must not hold port 6379 / 3301 or use the benchmark's CPUs.
for svc in redis-server tarantool; do
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        if systemctl list-unit-files "$svc.service" >/dev/null 2>&1; then
            $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true
        fi
    elif [ -x "/etc/init.d/$svc" ]; then
        $SUDO service "$svc" stop >/dev/null 2>&1 || true
        if command -v update-rc.d >/dev/null 2>&1; then
            $SUDO update-rc.d "$svc" disable >/dev/null 2>&1 || true
        fi
    fi
done

echo "== pip install -e '.[bench]'"
$PY -m pip install -q -e '.[bench]'

echo "== npm packages of bench/loadgen"
if command -v node >/dev/null 2>&1; then
    $PY -c 'from bench.network import ensure_node; ensure_node()'
else
    echo "node is not installed: the networked benchmark will use its Python load generator" \
         "(apt-get install nodejs npm for the Node one)"
fi

echo "== versions"
tarantool --version | head -1
redis-server --version
echo "bench/setup.sh: done"
