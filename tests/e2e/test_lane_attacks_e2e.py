"""Second attack review of the lane, in production shape (`mediaproxy serve`, 2 workers):
access lines of lane answers against the lifecycle's for the same request (trusted proxies,
a token in the query), purges of every kind and an access change on open lane connections,
a reload under open lane connections, the header timeout on idle and trickling lane
connections, and the counters after a burst."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import ADMIN_TOKEN
from tests.e2e.conftest import Running, start_proxy, stop
from tests.e2e.test_daemon import wait_for
from tests.e2e.test_lane_workers import metric
from tests.e2e.test_workers import put

KEYS = "k1=0123456789abcdef0123"
SECRET = "c2VjcmV0LXNpZ25hdHVyZQ"


class Conn:
    """A blocking keep-alive connection; answers read by Content-Length (none for HEAD)."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.buffer = b""

    def send(self, method: str, path: str, extra: str = "") -> None:
        self.sock.sendall(f"{method} {path} HTTP/1.1\r\nHost: media.example\r\n"
                          f"User-Agent: lane-attack\r\n{extra}\r\n".encode())

    def answer(self, head_only: bool = False) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buffer:
            self._read()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            fields[name.decode().lower()] = value.strip().decode()
        length = 0 if head_only else int(fields.get("content-length", "0"))
        while len(self.buffer) < length:
            self._read()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(lines[0].split(b" ")[1]), fields, body

    def request(self, method: str, path: str, extra: str = ""
                ) -> tuple[int, dict[str, str], bytes]:
        self.send(method, path, extra)
        return self.answer(head_only=method == "HEAD")

    def _read(self) -> None:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("closed")
        self.buffer += chunk

    def closed_within(self, seconds: float) -> bool:
        self.sock.settimeout(seconds)
        try:
            return self.sock.recv(1 << 16) == b""
        except TimeoutError:
            return False
        except OSError:
            return True


def access_lines(proxy: Running) -> list[dict[str, object]]:
    out = []
    for line in proxy.log_lines():
        if '"cache_status"' in line:
            out.append(json.loads(line))
    return out


def admin_post(proxy: Running, path: str, body: dict[str, object]) -> None:
    request = urllib.request.Request(
        proxy.admin_url + path, data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"},
        method="POST")
    with urllib.request.urlopen(request, timeout=10) as r:
        assert r.status == 200


def patch_access(origin: Running, path: str, access: str) -> None:
    request = urllib.request.Request(
        origin.url + path, data=json.dumps({"access": access}).encode(), method="PATCH",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as r:
        assert r.status == 200


def lane_served(proxy: Running, more_than: float = 0) -> float:
    """The lane hit counter once it passed `more_than` (flushed every second per worker)."""
    found = [0.0]

    def moved() -> bool:
        found[0] = metric(proxy, "mediaproxy_lane_hits_total")
        return found[0] > more_than

    wait_for("lane answers counted", moved, timeout=10)
    return found[0]


def test_access_lines_of_lane_and_lifecycle_hits_agree(tmp_path: Path,
                                                       origin_process: Running) -> None:
    """Behind a trusted proxy, with a token in the query string: a lane answer's access line
    says what the lifecycle's line for the same request says (client address from
    X-Forwarded-For, key without the token, host, agent, referer, protocol, bytes), and no
    line carries the token."""
    body = os.urandom(3000)
    put(origin_process, "/al/a.bin", body)
    proxy = start_proxy(tmp_path, origin_process.url, workers=2, extra=(
        f'[admin]\ntoken = "{ADMIN_TOKEN}"\n[auth]\nkeys = "{KEYS}"\n'),
        server_extra='trusted_proxies = "127.0.0.0/8"\n', log_format="json")
    path = f"/al/a.bin?exp=4102444800&kid=k1&sig={SECRET}"
    extra = ("X-Forwarded-For: 198.51.100.4, 203.0.113.9,127.0.0.7\r\n"
             "Referer: https://pages.example/x\r\n")
    try:
        conns = [Conn(proxy.url) for _ in range(6)]
        for conn in conns:
            for _ in range(5):
                status, _fields, got = conn.request("GET", path, extra)
                assert (status, got) == (200, body)
        lane_served(proxy)
    finally:
        assert stop(proxy.proc) == 0
    lines = access_lines(proxy)
    assert len(lines) == 30
    assert not any(SECRET in json.dumps(line) for line in lines)
    assert not any(SECRET in line for line in proxy.log_lines())
    hits = [line for line in lines if line["cache_status"] == "HIT"]
    assert len(hits) > 12  # lane answers and lifecycle memory hits both
    varying = {"ts", "ts_end", "duration_ms", "msg", "pid"}
    shapes = {json.dumps({k: v for k, v in line.items() if k not in varying}, sort_keys=True)
              for line in hits}
    assert len(shapes) == 1, shapes
    shape = json.loads(shapes.pop())
    assert shape["remote"] == "203.0.113.9" and shape["key"] == "/al/a.bin"
    assert shape["referer"] == "https://pages.example/x" and shape["body_bytes"] == 3000


def test_purges_of_every_kind_and_an_access_change_reach_open_lane_connections(
        tmp_path: Path, origin_process: Running) -> None:
    """On keep-alive connections spread over both workers, each answered by the lane: after
    a purge by URL, by prefix, soft, of everything, a PURGE from a purge network on one of
    those connections, and an access change pushed as a URL purge, the next request on every
    connection gets the origin's current answer."""
    put(origin_process, "/pk/a.bin", b"v0" * 2000)
    proxy = start_proxy(tmp_path, origin_process.url, workers=2, extra=(
        f'[admin]\ntoken = "{ADMIN_TOKEN}"\npurge_networks = "127.0.0.0/8"\n'
        f'[auth]\nkeys = "{KEYS}"\n'))
    purges: list[tuple[str, Callable[[Conn], None]]] = [
        ("url", lambda c: admin_post(proxy, "/purge", {"url": "/pk/a.bin"})),
        ("prefix", lambda c: admin_post(proxy, "/purge", {"prefix": "/pk/"})),
        ("soft", lambda c: admin_post(proxy, "/purge", {"prefix": "/pk/", "soft": True})),
        ("all", lambda c: admin_post(proxy, "/purge", {"all": True})),
        ("method", lambda c: _purge_method(c)),
    ]
    try:
        conns = [Conn(proxy.url) for _ in range(10)]
        served = 0.0
        for round_, (name, purge) in enumerate(purges, start=1):
            body = f"v{round_}".encode() * 2000
            for conn in conns:
                for _ in range(3):
                    assert conn.request("GET", "/pk/a.bin")[0] == 200
            served = lane_served(proxy, served)
            put(origin_process, "/pk/a.bin", body)
            purge(conns[0])
            for index, conn in enumerate(conns):
                status, _fields, got = conn.request("GET", "/pk/a.bin")
                assert (status, got) == (200, body), (name, index)
        for conn in conns:
            for _ in range(3):
                assert conn.request("GET", "/pk/a.bin")[0] == 200
        lane_served(proxy, served)
        patch_access(origin_process, "/pk/a.bin", "protected")
        admin_post(proxy, "/purge", {"url": "/pk/a.bin"})
        for index, conn in enumerate(conns):
            for _ in range(2):
                status, _fields, got = conn.request("GET", "/pk/a.bin")
                assert status in (401, 403), (index, status)
    finally:
        assert stop(proxy.proc) == 0


def _purge_method(conn: Conn) -> None:
    status, _fields, body = conn.request("PURGE", "/pk/a.bin")
    assert status == 200, body


def test_idle_and_trickling_lane_connections_close_at_the_header_timeout(
        tmp_path: Path, origin_process: Running) -> None:
    """Connections whose every request was a lane answer are closed by the header timeout
    when they go idle, and so is one that sends a byte at a time after its lane answers."""
    put(origin_process, "/ht/a.bin", b"h" * 4096)
    proxy = start_proxy(tmp_path, origin_process.url, workers=2,
                        server_extra="header_timeout_seconds = 2\n")
    try:
        warm = Conn(proxy.url)
        for _ in range(6):
            warm.request("GET", "/ht/a.bin")
        conns = [Conn(proxy.url) for _ in range(200)]
        for conn in conns:
            assert conn.request("GET", "/ht/a.bin")[0] == 200
            assert conn.request("GET", "/ht/a.bin")[0] == 200
        lane_served(proxy)
        trickle = Conn(proxy.url)
        for _ in range(3):
            trickle.request("GET", "/ht/a.bin")
        started = time.monotonic()
        closed = False
        for byte in b"GET /ht/a.bin HTTP/1.1\r\nX-Slow: " + b"a" * 200:
            try:
                trickle.sock.sendall(bytes([byte]))
            except OSError:
                closed = True
                break
            if trickle.closed_within(0.05):
                closed = True
                break
            if time.monotonic() - started > 12:
                break
        assert closed, "the trickling connection was not closed"
        assert all(conn.closed_within(10) for conn in conns)
    finally:
        assert stop(proxy.proc) == 0


def samples(proxy: Running) -> dict[str, float]:
    """Every sample of the admin /metrics, by its full name with labels."""
    with urllib.request.urlopen(proxy.admin_url + "/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def total(found: dict[str, float], prefix: str) -> float:
    return sum(v for k, v in found.items() if k.startswith(prefix))


def test_counters_add_up_after_lane_answers_and_a_stop_loses_no_access_line(
        tmp_path: Path, origin_process: Running) -> None:
    """After a burst of lane answers over both workers, requests, body bytes, the duration
    histogram and the memory/lane hit counters agree with what was answered; a stop right
    after a burst writes every access line."""
    small, large = b"s" * 1000, os.urandom(64 * 1024)
    put(origin_process, "/mc/s.bin", small)
    put(origin_process, "/mc/l.bin", large)
    proxy = start_proxy(tmp_path, origin_process.url, workers=2)
    answered = 0
    body_bytes = 0
    try:
        conns = [Conn(proxy.url) for _ in range(8)]
        for conn in conns:
            for _ in range(25):
                for path, body in (("/mc/s.bin", small), ("/mc/l.bin", large)):
                    status, _fields, got = conn.request("GET", path)
                    assert (status, got) == (200, body)
                    answered += 1
                    body_bytes += len(body)
            # A pipelined read: lane answers written together.
            conn.sock.sendall(b"GET /mc/s.bin HTTP/1.1\r\nHost: media.example\r\n\r\n" * 10)
            for _ in range(10):
                assert conn.answer()[2] == small
            answered += 10
            body_bytes += 10 * len(small)
        lane_served(proxy)

        def settled() -> bool:
            found = samples(proxy)
            return total(found, "mediaproxy_requests_total{") == answered
        wait_for("every answer counted", settled, timeout=10)
        found = samples(proxy)
        assert total(found, "mediaproxy_response_bytes_total{") == body_bytes
        assert total(found, "mediaproxy_request_duration_seconds_count{") == answered
        hits = total(found, 'mediaproxy_requests_total{cache_status="HIT"')
        lane = found["mediaproxy_lane_hits_total"]
        memory = found["mediaproxy_memory_hits_total"]
        assert 0 < lane <= memory <= hits
        assert found['mediaproxy_request_duration_seconds_bucket{cache_status="HIT",le="+Inf"}'
                     ] == hits
        # A burst, then a stop at once: every answer has its access line.
        for conn in conns:
            conn.sock.sendall(b"GET /mc/s.bin HTTP/1.1\r\nHost: media.example\r\n\r\n" * 20)
        for conn in conns:
            for _ in range(20):
                assert conn.answer()[2] == small
        answered += 20 * len(conns)
    finally:
        assert stop(proxy.proc) == 0
    assert len(access_lines(proxy)) == answered


def _hammer(conn: Conn, path: str, until: Callable[[], bool],
            seen: dict[str, int]) -> None:
    """GETs on `conn` until `until()` or the server closes it; answers counted by Via, and
    an answer cut short counted as "cut"."""
    while not until():
        try:
            status, fields, _body = conn.request("GET", path)
        except (ConnectionError, OSError):
            seen["cut" if conn.buffer else "closed"] = seen.get(
                "cut" if conn.buffer else "closed", 0) + 1
            return
        key = f'{status} {fields.get("via")} {fields.get("cache-status", "").split(";")[0]}'
        seen[key] = seen.get(key, 0) + 1


def _reload(proxy: Running, old: str, new: str) -> None:
    path = Path(proxy.log_path or "").with_suffix(".toml")
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    proxy.proc.send_signal(signal.SIGHUP)


def _reloads(proxy: Running) -> int:
    return sum(1 for line in proxy.log_lines() if '"event":"reload"' in line)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_reload_under_open_lane_connections(tmp_path: Path, origin_process: Running,
                                             workers: int) -> None:
    """Lane connections busy through a reload that renames the cache (Via, Cache-Status) and
    then turns the lane off: no answer is cut short; once the reload is done every new
    connection gets the new names, from the lane while it is on, and no lane answer after it
    is turned off."""
    import threading

    put(origin_process, "/rl/a.bin", b"r" * 5000)
    proxy = start_proxy(tmp_path, origin_process.url, workers=workers)
    try:
        conns = [Conn(proxy.url) for _ in range(10)]
        for conn in conns:
            for _ in range(3):
                conn.request("GET", "/rl/a.bin")
        lane_served(proxy)
        seen: dict[str, int] = {}
        stop_at = time.monotonic() + 5
        threads = [threading.Thread(target=_hammer, args=(
            c, "/rl/a.bin", lambda: time.monotonic() > stop_at, seen)) for c in conns]
        for thread in threads:
            thread.start()
        time.sleep(0.3)
        _reload(proxy, f"workers = {workers}\n", f'workers = {workers}\nvia = "edge-9"\n')
        wait_for("reloaded", lambda: _reloads(proxy) == 1)
        for thread in threads:
            thread.join()
        assert "cut" not in seen, seen
        assert seen.get("closed", 0) == len(conns), seen  # the old generation closed them
        new = [Conn(proxy.url) for _ in range(6)]
        before = lane_served(proxy)
        for conn in new:
            for _ in range(4):
                status, fields, _ = conn.request("GET", "/rl/a.bin")
                assert status == 200 and fields["via"] == "1.1 edge-9", fields
                assert fields["cache-status"].startswith("edge-9;"), fields
        lane_served(proxy, before)
        _reload(proxy, 'via = "edge-9"\n', 'via = "edge-9"\nfast_hits = false\n')
        wait_for("reloaded again", lambda: _reloads(proxy) == 2)
        for conn in new:
            assert conn.closed_within(10)
        time.sleep(1.2)  # the old generation's last counts flushed
        served = metric(proxy, "mediaproxy_lane_hits_total")
        for conn in [Conn(proxy.url) for _ in range(4)]:
            for _ in range(5):
                assert conn.request("GET", "/rl/a.bin")[0] == 200
        time.sleep(1.2)
        assert metric(proxy, "mediaproxy_lane_hits_total") == served
    finally:
        assert stop(proxy.proc) == 0
