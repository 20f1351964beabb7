"""Hostile requests against `workers = 2`, as production runs: smuggling attempts from raw
sockets reach neither worker's origin connections, a trusted front decides who may PURGE, and
token parameters never reach the access log."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ADMIN_TOKEN, sha256
from tests.e2e.conftest import Running, start_proxy, stop
from tests.e2e.test_workers import get, origin_gets, put


def raw(url: str, text: str, timeout: float = 5.0) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(text.encode("latin-1"))
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
        except TimeoutError:
            pass
        return data


def test_smuggling_attempts_reach_no_worker_origin_connection(
        tmp_path: Path, origin_process: Running) -> None:
    body = b"victim bytes" * 1000
    put(origin_process, "/s/victim.jpg", body)
    put(origin_process, "/s/poison.jpg", b"attacker bytes")
    proxy = start_proxy(tmp_path, origin_process.url, workers=2)
    try:
        smuggled = "GET /s/poison.jpg HTTP/1.1\r\nHost: x\r\nX: "
        for _ in range(8):  # over both workers
            answer = raw(proxy.url, "GET /s/victim.jpg HTTP/1.1\r\nHost: x\r\n"
                         f"Content-Length: {len(smuggled)}\r\n\r\n{smuggled}")
            assert answer.startswith(b"HTTP/1.1 400"), answer[:100]
        assert origin_gets(origin_process, "/s/poison.jpg") == 0
        for _ in range(6):
            status, _, got = get(proxy.url + "/s/victim.jpg")
            assert status == 200 and sha256(got) == sha256(body)
    finally:
        stop(proxy.proc)


def test_behind_a_trusted_front_with_two_workers(
        tmp_path: Path, origin_process: Running, monkeypatch: pytest.MonkeyPatch) -> None:
    put(origin_process, "/f/a.jpg", b"a")
    monkeypatch.setenv("MEDIAPROXY_SERVER_TRUSTED_PROXIES", "127.0.0.1/32")
    proxy = start_proxy(tmp_path, origin_process.url, workers=2, extra=(
        f'[admin]\ntoken = "{ADMIN_TOKEN}"\npurge_networks = "10.0.0.0/8"\n'))
    try:
        for _ in range(4):  # over both workers
            request = urllib.request.Request(proxy.url + "/f/a.jpg", method="PURGE",
                                             headers={"X-Forwarded-For": "203.0.113.5"})
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request, timeout=10)
            assert refused.value.code == 403
            request = urllib.request.Request(proxy.url + "/f/a.jpg", method="PURGE",
                                             headers={"X-Forwarded-For": "10.1.2.3"})
            with urllib.request.urlopen(request, timeout=10) as r:
                assert r.status == 200
    finally:
        stop(proxy.proc)
    remotes = {json.loads(line).get("remote") for line in proxy.log_lines()
               if line.startswith("{") and '"method":"PURGE"' in line}
    assert remotes == {"203.0.113.5", "10.1.2.3"}
