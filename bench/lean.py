"""Lean large-object client: HTTP/1.1 keep-alive GETs whose bodies are discarded in the kernel.

`recv_into(buf, n, MSG_TRUNC)` on a TCP socket drops up to n bytes without copying them to user
space, so one Python thread per connection can sink several GB/s (wrk tops out near 1.9 GB/s on
this machine because it copies every byte). Bytes of responses still in flight at the deadline
count too, so the rate is exact for the measured interval.

Run: python -m bench.lean --port P --path /media/large.bin --conns 4 --duration 15
Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
from dataclasses import asdict, dataclass

SINK = 16 << 20  # bytes per recv; the buffer is never written (MSG_TRUNC), so never resident


class ProtocolError(Exception):
    pass


@dataclass
class ConnStats:
    body_bytes: int = 0
    responses: int = 0  # complete responses
    errors: int = 0
    reconnects: int = 0
    error: str = ""


def _read_head(sock: socket.socket) -> tuple[int, int | None, bool, bytes]:
    """Read the status line and headers: (status, content-length, keep-alive, leftover body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(16384)
        if not chunk:
            raise ProtocolError("connection closed before the response head")
        data += chunk
        if len(data) > 1 << 20:
            raise ProtocolError("response head too large")
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise ProtocolError(f"bad status line {lines[0]!r}")
    status = int(parts[1])
    length: int | None = None
    keep_alive = parts[0] == "HTTP/1.1"
    for line in lines[1:]:
        name, _, value = line.partition(":")
        key = name.strip().lower()
        if key == "content-length":
            length = int(value.strip())
        elif key == "transfer-encoding" and value.strip().lower() != "identity":
            raise ProtocolError(f"unsupported Transfer-Encoding {value.strip()!r}")
        elif key == "connection":
            keep_alive = value.strip().lower() != "close"
    return status, length, keep_alive, rest


def _worker(
    host: str,
    port: int,
    path: str,
    start: threading.Barrier,
    deadline_box: list[float],
    stats: ConnStats,
) -> None:
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: bench-lean\r\n"
        "Accept: */*\r\n\r\n"
    ).encode()
    sink = bytearray(SINK)
    view = memoryview(sink)
    sock: socket.socket | None = socket.create_connection((host, port), timeout=30)
    start.wait()
    deadline = deadline_box[0]
    try:
        while time.monotonic() < deadline:
            if sock is None:
                sock = socket.create_connection((host, port), timeout=30)
                stats.reconnects += 1
            sock.sendall(request)
            status, length, keep_alive, rest = _read_head(sock)
            if status != 200:
                raise ProtocolError(f"status {status}")
            if length is None:
                raise ProtocolError("no Content-Length")
            stats.body_bytes += len(rest)
            remaining = length - len(rest)
            while remaining > 0:
                n = sock.recv_into(view, min(remaining, SINK), socket.MSG_TRUNC)
                if n == 0:
                    raise ProtocolError("connection closed mid-body")
                remaining -= n
                stats.body_bytes += n
                if time.monotonic() >= deadline:
                    return
            stats.responses += 1
            if not keep_alive:
                sock.close()
                sock = None
    except (OSError, ProtocolError, ValueError) as exc:
        stats.errors += 1
        stats.error = f"{type(exc).__name__}: {exc}"
    finally:
        if sock is not None:
            sock.close()


def run(host: str, port: int, path: str, conns: int, duration: float) -> dict[str, object]:
    stats = [ConnStats() for _ in range(conns)]
    deadline_box = [0.0]
    t0_box = [0.0]

    def release() -> None:
        t0_box[0] = time.monotonic()
        deadline_box[0] = t0_box[0] + duration

    barrier = threading.Barrier(conns, action=release)
    threads = [
        threading.Thread(target=_worker, args=(host, port, path, barrier, deadline_box, s))
        for s in stats
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0_box[0]
    total = sum(s.body_bytes for s in stats)
    return {
        "seconds": elapsed,
        "body_bytes": total,
        "mb_per_s": total / elapsed / 1e6 if elapsed > 0 else 0.0,
        "responses": sum(s.responses for s in stats),
        "errors": sum(s.errors for s in stats),
        "connections": [asdict(s) for s in stats],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", required=True)
    parser.add_argument("--conns", type=int, default=4)
    parser.add_argument("--duration", type=float, default=15.0)
    args = parser.parse_args()
    result = run(args.host, args.port, args.path, args.conns, args.duration)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
