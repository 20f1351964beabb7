"""Thundering-herd client: N clients GET one cold URL at the same instant and hash the bodies.

Every client connects first; a barrier then releases all the requests together. Per client it
records the time to the response head (TTFB, from the common start), the total time, status,
X-Cache and the sha256 of the body (http.client, so Content-Length, chunked and
close-delimited bodies all work). One thread per client: socket reads and sha256 both release
the GIL, so hashing spreads over the cores.

Run: python -m bench.herd --port P --path /slow/cold.bin --clients 50
Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import sys
import threading
import time
from dataclasses import asdict, dataclass

READ = 1 << 20


@dataclass
class ClientResult:
    status: int = 0
    ttfb: float = 0.0  # seconds from the common start to the response head
    total: float = 0.0  # seconds from the common start to the end of the body
    body_bytes: int = 0
    sha256: str = ""
    x_cache: str = ""
    error: str = ""


def _client(
    host: str,
    port: int,
    path: str,
    timeout: float,
    barrier: threading.Barrier,
    t0_box: list[float],
    result: ClientResult,
) -> None:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.connect()
    except OSError as exc:
        result.error = f"connect: {exc}"
        barrier.abort()
        return
    try:
        barrier.wait()
        t0 = t0_box[0]
        conn.request("GET", path, headers={"User-Agent": "bench-herd"})
        resp = conn.getresponse()
        result.ttfb = time.monotonic() - t0
        result.status = resp.status
        result.x_cache = resp.getheader("X-Cache", "")
        digest = hashlib.sha256()
        buf = bytearray(READ)
        view = memoryview(buf)
        while True:
            n = resp.readinto(buf)
            if not n:
                break
            digest.update(view[:n])
            result.body_bytes += n
        result.total = time.monotonic() - t0
        result.sha256 = digest.hexdigest()
    except (OSError, http.client.HTTPException, threading.BrokenBarrierError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()


def run(host: str, port: int, path: str, clients: int, timeout: float) -> dict[str, object]:
    results = [ClientResult() for _ in range(clients)]
    t0_box = [0.0]

    def release() -> None:
        t0_box[0] = time.monotonic()

    barrier = threading.Barrier(clients, action=release)
    threads = [
        threading.Thread(target=_client, args=(host, port, path, timeout, barrier, t0_box, r))
        for r in results
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"wall": time.monotonic() - t0_box[0], "clients": [asdict(r) for r in results]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=120.0, help="socket timeout (s)")
    args = parser.parse_args()
    json.dump(run(args.host, args.port, args.path, args.clients, args.timeout), sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
