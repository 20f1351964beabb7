#!/usr/bin/env bash
# HTTP caching conformance of mediaproxy, measured with http-tests/cache-tests (cache-tests.fyi).
#
#   bench/cache_tests.sh PATH-TO-CACHE-TESTS-CHECKOUT
#
# The suite is not vendored: clone https://github.com/http-tests/cache-tests (tested at b55b8bd)
# somewhere outside this repository and run `npm install --omit=dev` in it; pass its path here.
#
# What it does, everything on 127.0.0.1 with free ports and a temporary directory:
#   1. starts the suite's origin (test-engine/server/server.mjs), bound to 127.0.0.1 by a
#      generated `--import` preload (the server itself listens on all interfaces);
#   2. writes a mediaproxy config (workers = 2 as production runs, cache in the temp dir, no
#      access log), checks it
#      with `mediaproxy check-config`, starts `mediaproxy serve`, waits for /readyz = 200;
#   3. runs the suite's CLI against the proxy (`npm run --silent cli --base=...`);
#   4. stops everything and prints `N passed, M failed`, counted as cache-tests.fyi does
#      (test-engine/lib/results.mjs determineTestResult, depends_on honoured): passed = "pass",
#      failed = failed *required* tests; then the failed required tests, and the counts and ids
#      of optional failures, setup failures, harness failures, dependency failures.
# Exit status: 0 when the suite ran (whatever the score), 1 when it could not run, 2 on bad usage.
#
# Knobs (environment):
#   CACHE_TESTS_ID=TEST-ID        run only that test, verbosely (the suite's --id; dependencies
#                                 are not honoured), and print its requests and responses
#   CACHE_TESTS_WORKERS=N         server.workers (default 2; 1 runs everything in one process)
#   CACHE_TESTS_GRACE=SECONDS     cache.stale_if_error_seconds (default 60, a production grace;
#                                 0: stale copies stand in only with the origin's stale-if-error)
#   CACHE_TESTS_MEMORY_BYTES=N    set cache.memory_bytes (default: the proxy's own default, the
#                                 32 MiB tier; 0 turns it off: the suite scores the same either way,
#                                 copies of a changed key are dropped at once by its change signal)
#   CACHE_TESTS_SAVE=FILE         copy the suite's raw results JSON to FILE
#   CACHE_TESTS_KEEP=1            keep the temp dir (config, logs, results) and print its path
#   CACHE_TESTS_TIMEOUT=SECONDS   bound on the whole suite run (default 600; it takes ~1 min)
#   CACHE_TESTS_ORIGIN_KEEPALIVE=SECONDS  keep-alive timeout of the suite's origin (default: Node's
#                                 5 s, as on cache-tests.fyi). A proxy that reuses an idle origin
#                                 connection after that gets a 502 for the request (setup failure).
#                                 Over ~8 s, headers-store-Transfer-Encoding (a body delimited by
#                                 the connection's close) becomes a harness failure (client timeout)
#   CACHE_TESTS_MEDIAPROXY=PATH   the mediaproxy executable (default: this repo's .venv/bin/mediaproxy)
set -euo pipefail

say() { printf 'cache-tests: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

if [[ $# -ne 1 || $1 == -h || $1 == --help ]]; then
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
    exit 2
fi

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
suite="$(cd "$1" 2>/dev/null && pwd)" || { say "no such directory: $1"; exit 2; }
mediaproxy="${CACHE_TESTS_MEDIAPROXY:-$repo/.venv/bin/mediaproxy}"
memory_bytes="${CACHE_TESTS_MEMORY_BYTES:-}"
workers="${CACHE_TESTS_WORKERS:-2}"
[[ $workers =~ ^[1-9][0-9]?$ ]] || { say "CACHE_TESTS_WORKERS: expected 1-64, got $workers"; exit 2; }
suite_timeout="${CACHE_TESTS_TIMEOUT:-600}"
test_id="${CACHE_TESTS_ID:-}"

# ---------------------------------------------------------------- prerequisites
for f in test-engine/server/server.mjs test-engine/cli.mjs test-engine/lib/results.mjs tests/index.mjs; do
    [[ -f $suite/$f ]] || die "$suite is not a cache-tests checkout (missing $f); get it from https://github.com/http-tests/cache-tests"
done
command -v node >/dev/null 2>&1 ||
    die "node not found: install Node.js >= 20.6 (e.g. apt-get install nodejs npm) to run the suite"
node_version="$(node -p 'process.versions.node' 2>/dev/null)" || die "node does not run"
IFS=. read -r node_major node_minor _ <<<"$node_version"
if ((node_major < 18 || (node_major == 18 && node_minor < 19) || (node_major == 20 && node_minor < 6))); then
    die "node $node_version is too old: need >= 20.6 (or 18.19) for --import"
fi
[[ -d $suite/node_modules/undici ]] ||
    die "the suite's dependencies are missing: run 'npm install --omit=dev' in $suite"
use_npm=1
if ! command -v npm >/dev/null 2>&1 || ! npm --version >/dev/null 2>&1; then
    say "npm not usable; running the suite's CLI with node directly"
    use_npm=0
fi
[[ -x $mediaproxy ]] || die "$mediaproxy not found: run 'make test' or 'make run' once (they create .venv)"
command -v curl >/dev/null 2>&1 || die "curl not found (used to wait for the servers)"
python="$(command -v python3 || true)"
[[ -n $python ]] || python="$repo/.venv/bin/python"
[[ -x $python ]] || die "python3 not found (used to pick free ports)"
command -v timeout >/dev/null 2>&1 || die "timeout (coreutils) not found"

# ---------------------------------------------------------------- temp dir and cleanup
tmp="$(mktemp -d "${TMPDIR:-/tmp}/cache-tests.XXXXXX")"
origin_pid='' proxy_pid='' client_pid=''

stop_pid() { # stop_pid PID NAME: SIGTERM, up to 10 s, then SIGKILL
    local pid=$1 i
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "$2 (pid $pid) did not stop on SIGTERM; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    stop_pid "$client_pid" "suite client"
    stop_pid "$proxy_pid" "mediaproxy"
    stop_pid "$origin_pid" "suite origin"
    if [[ ${CACHE_TESTS_KEEP:-} == 1 || ($status -ne 0 && ($status -lt 128)) ]]; then
        say "kept $tmp (config, logs, results)"
    else
        rm -rf "$tmp"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

show_log() { # show_log FILE TITLE
    [[ -s $1 ]] || return 0
    say "last lines of $2 ($1):"
    tail -n 20 "$1" >&2
}

wait_http() { # wait_http URL PID NAME LOG: until the URL answers 200, bounded (30 s)
    local url=$1 pid=$2 name=$3 log=$4 i code
    for ((i = 0; i < 300; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            show_log "$log" "$name"
            die "$name exited during start-up"
        fi
        code="$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$url" 2>/dev/null || true)"
        [[ $code == 200 ]] && return 0
        sleep 0.1
    done
    show_log "$log" "$name"
    die "$name not ready after 30 s ($url answered '${code:-nothing}')"
}

# ---------------------------------------------------------------- free ports
read -r origin_port proxy_port admin_port < <("$python" - <<'EOF'
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
for s in socks:
    s.close()
EOF
)
[[ -n $admin_port ]] || die "could not pick free ports"

# ---------------------------------------------------------------- the suite's origin
# Preload that binds every listen(port[, cb]) without a host to 127.0.0.1 (and optionally sets
# the HTTP keep-alive timeout).
cat >"$tmp/bind-localhost.mjs" <<'EOF'
import net from 'node:net'
const listen = net.Server.prototype.listen
const keepAlive = Number(process.env.CACHE_TESTS_ORIGIN_KEEPALIVE || 0)
net.Server.prototype.listen = function (...args) {
  if (keepAlive > 0 && 'keepAliveTimeout' in this) {
    this.keepAliveTimeout = keepAlive * 1000
    this.headersTimeout = Math.max(this.headersTimeout || 0, keepAlive * 1000 + 1000)
  }
  const port = args[0]
  const isPort = typeof port === 'number' || (typeof port === 'string' && /^\d+$/.test(port))
  if (isPort && (args.length === 1 || typeof args[1] === 'function')) {
    args.splice(1, 0, '127.0.0.1')
  }
  return listen.apply(this, args)
}
EOF
(
    cd "$suite"
    exec env npm_config_port="$origin_port" npm_package_config_protocol=http \
        npm_config_pidfile="$tmp/origin.pid" \
        node --import "file://$tmp/bind-localhost.mjs" test-engine/server/server.mjs
) >"$tmp/origin.log" 2>&1 &
origin_pid=$!
wait_http "http://127.0.0.1:$origin_port/test-engine/cli.mjs" "$origin_pid" "suite origin" "$tmp/origin.log"
grep -q "Listening on http://127.0.0.1:$origin_port/" "$tmp/origin.log" || {
    show_log "$tmp/origin.log" "suite origin"
    die "the suite origin is not bound to 127.0.0.1 only"
}

# ---------------------------------------------------------------- mediaproxy
cat >"$tmp/mediaproxy.toml" <<EOF
# Generated by bench/cache_tests.sh for the http-tests/cache-tests suite.
[server]
listen = "127.0.0.1:$proxy_port"
admin_listen = "127.0.0.1:$admin_port"
workers = $workers

[origin]
url = "http://127.0.0.1:$origin_port"
connect_timeout_seconds = 5.0
read_timeout_seconds = 20.0

[cache]
dir = "$tmp/cache"
# A grace for a failing origin, as production runs (Varnish's default grace is 10 s): a stored
# response, with or without validators, may stand in when the origin closes the connection or
# answers 5xx (RFC 5861 §4; the suite's stale-close / stale-503 checks).
stale_if_error_seconds = ${CACHE_TESTS_GRACE:-60}
max_size_bytes = 268435456
${memory_bytes:+memory_bytes = $memory_bytes}

[log]
access_log = false
level = "warning"
EOF
# MEDIAPROXY_* variables would override the file: run the proxy without them.
unset_env=()
while IFS= read -r name; do unset_env+=(-u "$name"); done < <(compgen -e | grep '^MEDIAPROXY_' || true)

if ! env "${unset_env[@]}" "$mediaproxy" check-config --config "$tmp/mediaproxy.toml" >"$tmp/check-config.log" 2>&1; then
    cat "$tmp/check-config.log" >&2
    die "mediaproxy rejected the generated config $tmp/mediaproxy.toml"
fi
env "${unset_env[@]}" "$mediaproxy" serve --config "$tmp/mediaproxy.toml" >"$tmp/mediaproxy.log" 2>&1 &
proxy_pid=$!
wait_http "http://127.0.0.1:$admin_port/readyz" "$proxy_pid" "mediaproxy" "$tmp/mediaproxy.log"

# ---------------------------------------------------------------- the suite's client
base="http://127.0.0.1:$proxy_port" # no trailing slash, or every test is a setup failure
if [[ -n $test_id ]]; then
    say "running $test_id against mediaproxy at $base (origin 127.0.0.1:$origin_port)"
else
    say "running the suite against mediaproxy at $base (origin 127.0.0.1:$origin_port, memory_bytes=${memory_bytes:-default})"
fi
if ((use_npm)); then
    client=(npm run --silent cli "--base=$base")
    [[ -z $test_id ]] || client+=("--id=$test_id")
else
    client=(env npm_config_base="$base" npm_config_id="$test_id" npm_package_config_id=
        node --no-warnings test-engine/cli.mjs)
fi
start=$SECONDS
(
    cd "$suite"
    export npm_config_update_notifier=false npm_config_fund=false
    exec timeout -k 5 "$suite_timeout" "${client[@]}"
) >"$tmp/results.json" 2>"$tmp/client.err" &
client_pid=$!
client_status=0
wait "$client_pid" || client_status=$?
client_pid=''
elapsed=$((SECONDS - start))

if [[ -n $test_id ]]; then
    cat "$tmp/results.json"
    show_log "$tmp/client.err" "the suite client's stderr"
    say "took ${elapsed}s (client exit status $client_status)"
    exit 0
fi
if ((client_status == 124 || client_status == 137)); then
    show_log "$tmp/client.err" "the suite client's stderr"
    die "the suite did not finish within ${suite_timeout}s"
fi

# ---------------------------------------------------------------- counting (cache-tests.fyi)
cat >"$tmp/summarize.mjs" <<'EOF'
import fs from 'node:fs'
import path from 'node:path'
import { pathToFileURL } from 'node:url'

const [suite, resultsFile] = process.argv.slice(2)
const suites = (await import(pathToFileURL(path.join(suite, 'tests/index.mjs')))).default
const { determineTestResult, resultTypes } =
  await import(pathToFileURL(path.join(suite, 'test-engine/lib/results.mjs')))

let results
try {
  results = JSON.parse(fs.readFileSync(resultsFile, 'utf8'))
} catch (err) {
  console.error(`cache-tests: the suite's output is not JSON (${err.message})`)
  process.exit(1)
}
const kindOf = new Map(Object.entries(resultTypes).map(([kind, symbol]) => [symbol, kind]))
const byKind = {}
for (const s of suites) {
  for (const test of s.tests) {
    const kind = kindOf.get(determineTestResult(suites, test.id, results))
    ;(byKind[kind] ||= []).push({ test, suite: s.name, result: results[test.id] })
  }
}
const count = kind => (byKind[kind] || []).length
const detail = result => Array.isArray(result) ? `${result[0]}: ${result[1]}` : ''
const plain = name => name.replace(/`/g, '')

console.log(`${count('pass')} passed, ${count('fail')} failed`)
const sections = [
  ['fail', 'failed required tests'],
  ['optional_fail', 'failed optional ("optimal") tests'],
  ['setup_fail', 'setup failures'],
  ['harness_fail', 'harness failures'],
  ['retry', 'retries seen (the cache retried a request)']
]
for (const [kind, title] of sections) {
  const items = byKind[kind] || []
  if (!items.length) continue
  console.log(`\n${title} (${items.length}):`)
  for (const { test, result } of items) {
    console.log(`  ${test.id}: ${plain(test.name)}`)
    if (kind !== 'optional_fail') console.log(`      ${detail(result)}`)
  }
}
const deps = (byKind.dependency_fail || []).map(item => item.test.id)
console.log(`\nother: ${count('yes')} check=yes, ${count('no')} check=no, ` +
  `${deps.length} not counted (a dependency did not pass), ${count('untested')} not run (browser-only)`)
if (deps.length) console.log(`  dependency failures: ${deps.join(' ')}`)
EOF
if ! node "$tmp/summarize.mjs" "$suite" "$tmp/results.json" >"$tmp/summary.txt"; then
    show_log "$tmp/client.err" "the suite client's stderr"
    die "could not read the suite's results (client exit status $client_status)"
fi
if [[ -n ${CACHE_TESTS_SAVE:-} ]]; then
    cp "$tmp/results.json" "$CACHE_TESTS_SAVE"
    say "raw results saved to $CACHE_TESTS_SAVE"
fi
if [[ -s $tmp/client.err ]]; then
    say "the suite client wrote $(wc -l <"$tmp/client.err") line(s) on stderr, e.g.:"
    head -n 5 "$tmp/client.err" >&2
fi
# Errors of the proxy's own (502/504...) are logged at warning level: they turn tests into
# setup failures for reasons outside caching (e.g. an origin connection closed while idle).
proxy_warnings="$(grep -c -E 'WARNING|ERROR|Traceback' "$tmp/mediaproxy.log" || true)"
cat "$tmp/summary.txt"
echo
if ((proxy_warnings > 0)); then
    echo "mediaproxy logged $proxy_warnings warning/error line(s), e.g.:"
    grep -E 'WARNING|ERROR|Traceback' "$tmp/mediaproxy.log" | head -n 5 | sed 's/^/  /'
fi
revision="$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ -n "$(git -C "$repo" status --porcelain -- proxy 2>/dev/null)" ]]; then
    revision+=" + uncommitted changes in proxy/"
fi
echo "suite run took ${elapsed}s; mediaproxy $revision; cache.memory_bytes = ${memory_bytes:-default}"
exit 0
