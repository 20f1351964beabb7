"""The lane in production shape: `mediaproxy serve` with 2 workers, keep-alive connections
spread over both by the kernel. A purge made through the admin API ends every route in both
workers at once; lane answers are logged and counted like any other hit; a stop closes the
idle keep-alive connections the lane holds."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import urllib.request
from pathlib import Path

from tests.conftest import ADMIN_TOKEN
from tests.e2e.conftest import Running, start_proxy, stop
from tests.e2e.test_workers import put


class Conn:
    """A blocking keep-alive connection reading answers by Content-Length."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.buffer = b""

    def get(self, path: str, agent: str = "lane-test") -> tuple[dict[str, str], bytes]:
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: media.example\r\n"
                          f"User-Agent: {agent}\r\n\r\n".encode())
        while b"\r\n\r\n" not in self.buffer:
            self._read()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        fields = {}
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            fields[name.decode().lower()] = value.strip().decode()
        length = int(fields["content-length"])
        while len(self.buffer) < length:
            self._read()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return fields, body

    def _read(self) -> None:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("closed")
        self.buffer += chunk

    def at_eof(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except OSError:
            return True


def metric(proxy: Running, name: str) -> float:
    with urllib.request.urlopen(proxy.admin_url + "/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def purge_prefix(proxy: Running, prefix: str) -> None:
    request = urllib.request.Request(
        proxy.admin_url + "/purge", data=json.dumps({"prefix": prefix}).encode(),
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"},
        method="POST")
    with urllib.request.urlopen(request, timeout=10) as r:
        assert r.status == 200


def test_routes_in_both_workers_end_with_a_purge(tmp_path: Path,
                                                  origin_process: Running) -> None:
    old, new = os.urandom(8192), os.urandom(8192)
    put(origin_process, "/lw/a.bin", old)
    proxy = start_proxy(tmp_path, origin_process.url, workers=2,
                        extra=f'[admin]\ntoken = "{ADMIN_TOKEN}"\n')
    conns: list[Conn] = []
    try:
        conns = [Conn(proxy.url) for _ in range(12)]
        for conn in conns:
            for _ in range(4):
                fields, body = conn.get("/lw/a.bin")
                assert body == old
        served = metric(proxy, "mediaproxy_lane_hits_total")
        deadline = time.monotonic() + 10
        while served == 0 and time.monotonic() < deadline:  # flushed every second
            time.sleep(0.2)
            served = metric(proxy, "mediaproxy_lane_hits_total")
        assert served > 0
        lane_pids = {int(json.loads(line)["pid"]) for line in proxy.log_lines()
                     if '"cache_status":"HIT"' in line}
        assert len(lane_pids) == 2, "both workers answered hits"
        put(origin_process, "/lw/a.bin", new)
        purge_prefix(proxy, "/lw/")
        for conn in conns:  # on every connection, in both workers, the old bytes are gone
            fields, body = conn.get("/lw/a.bin")
            assert body == new, fields
            fields, body = conn.get("/lw/a.bin")
            assert body == new
        hits = [json.loads(line) for line in proxy.log_lines()
                if '"cache_status":"HIT"' in line]
        assert all(h["user_agent"] == "lane-test" and h["host"] == "media.example"
                   and h["status"] == 200 and h["key"] == "/lw/a.bin" for h in hits)
        assert len(hits) >= served
    finally:
        assert stop(proxy.proc) == 0
    assert all(conn.at_eof() for conn in conns)  # idle keep-alive connections were closed


def test_a_request_on_its_way_when_the_stop_begins_is_answered(
        tmp_path: Path, origin_process: Running) -> None:
    """A connection accepted just before a stop (or a reload's drain) whose request arrives
    after the listener closed gets its answer, not a closed connection (aiohttp alone closes
    every connection without a request as idle right after the listener)."""
    put(origin_process, "/lw/late.bin", b"late" * 100)
    proxy = start_proxy(tmp_path, origin_process.url, workers=1)
    conn = Conn(proxy.url)
    proxy.proc.send_signal(signal.SIGTERM)
    time.sleep(0.1)  # the listener is closing or closed; the request is still on its way
    _fields, body = conn.get("/lw/late.bin")
    assert body == b"late" * 100
    assert stop(proxy.proc) == 0
