#!/usr/bin/env bash
# Smoke test of the container image where a container engine runs (not part of `make test`:
# CI machines have none). Builds deploy/Dockerfile, starts the reference origin and one node
# from it on a private network, and checks that a second request is a HIT:
#   bash deploy/smoke.sh            # docker, else podman
#   ENGINE=podman bash deploy/smoke.sh
set -euo pipefail
cd "$(dirname "$0")/.."

engine="${ENGINE:-}"
if [ -z "$engine" ]; then
  for candidate in docker podman; do
    if command -v "$candidate" >/dev/null && "$candidate" info >/dev/null 2>&1; then
      engine=$candidate; break
    fi
  done
fi
[ -n "$engine" ] || { echo "smoke.sh: no working docker or podman (\`docker info\` fails)" >&2; exit 2; }

tag=mediaproxy:smoke
net=mediaproxy-smoke-$$
port=${SMOKE_PORT:-18080}
cleanup() {
  "$engine" rm -f "$net-node" "$net-origin" >/dev/null 2>&1 || true
  "$engine" network rm "$net" >/dev/null 2>&1 || true
}
trap cleanup EXIT

"$engine" build -f deploy/Dockerfile -t "$tag" .
"$engine" network create "$net" >/dev/null
"$engine" run -d --name "$net-origin" --network "$net" --network-alias origin \
  --entrypoint mediaproxy-origin "$tag" \
  serve --db /var/lib/mediaproxy/origin.sqlite3 --host 0.0.0.0 --port 8090 --seed \
  --video-size-bytes 1048576 >/dev/null
"$engine" run -d --name "$net-node" --network "$net" -p "127.0.0.1:$port:8080" \
  -e MEDIAPROXY_ORIGIN_URL=http://origin:8090 "$tag" >/dev/null

status() {  # the X-Cache of one GET through the node, "" while it is not answering
  python3 - "$1" <<'PY'
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
        r.read()
        print(r.headers.get("X-Cache", ""))
except OSError:
    print("")
PY
}

url="http://127.0.0.1:$port/media/images/gradient-64.png"
first=""
for _ in $(seq 1 60); do
  first=$(status "$url"); [ -n "$first" ] && break; sleep 1
done
second=""
for _ in $(seq 1 10); do  # the fill commits just after the first answer ends
  second=$(status "$url"); [ "$second" = HIT ] && break; sleep 0.5
done
health=$("$engine" inspect --format '{{.State.Health.Status}}' "$net-node" 2>/dev/null || echo n/a)
echo "first: ${first:-no answer}  second: ${second:-no answer}  healthcheck: $health"
if [ "$first" != MISS ] || [ "$second" != HIT ]; then
  "$engine" logs "$net-node" | tail -20
  exit 1
fi
echo "smoke.sh: MISS -> HIT through the image ($engine)"
