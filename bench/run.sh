#!/usr/bin/env bash
# `make bench`: install the peers and load tools if missing, then run the Python driver.
# Knobs (environment): BENCH_DURATION (15), BENCH_LARGE_MIB (256), BENCH_ROUNDS (2),
# BENCH_ONLY=nginx,varnish,mediaproxy, BENCH_PURGE=1, BENCH_HERD_CLIENTS (50),
# BENCH_HERD_RATE (50000000 B/s), BENCH_WRK_THREADS (2; small hits also run at -t1),
# BENCH_SCALING=0, BENCH_SCALING_WORKERS (1,2,4), BENCH_ZIPF=0, BENCH_ZIPF_OBJECTS (40000),
# BENCH_ZIPF_MEMORY_MIB (8), BENCH_ZIPF_FILL (bulk|http), BENCH_ADMIN_TOKEN,
# BENCH_MEDIAPROXY_EXTRA_TOML, BENCH_LOG. bench/README.md lists them all.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

# command -> Debian package
declare -A packages=([nginx]=nginx-light [varnishd]=varnish [wrk]=wrk [curl]=curl)
missing=()
for cmd in "${!packages[@]}"; do
    if ! PATH="$PATH:/usr/sbin:/sbin" command -v "$cmd" >/dev/null 2>&1; then
        missing+=("${packages[$cmd]}")
    fi
done
if ((${#missing[@]})); then
    sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null || { echo "bench: need root or sudo to install ${missing[*]}" >&2; exit 1; }
        sudo=(sudo)
    fi
    echo "bench: installing ${missing[*]}" >&2
    "${sudo[@]}" apt-get update -qq
    # policy-rc.d is not touched: on a systemd host the packages' own services may start.
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"
fi
export PATH="$PATH:/usr/sbin:/sbin"

python="$repo/.venv/bin/python"
if [[ ! -x $python ]]; then
    echo "bench: $python missing; run 'make bench' (it creates .venv)" >&2
    exit 1
fi
mkdir -p bench/work bench/results
exec "$python" -m bench.driver "$@"
