"""`workers = 2`: two processes share the port and the cache directory; a dead one returns."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from pathlib import Path

from tests.conftest import ADMIN_TOKEN, sha256
from tests.e2e.conftest import Running, start_proxy, stop


def put(origin: Running, path: str, body: bytes, **headers: str) -> None:
    request = urllib.request.Request(origin.url + path, data=body, method="PUT",
                                     headers={"Authorization": f"Bearer {ADMIN_TOKEN}", **headers})
    with urllib.request.urlopen(request, timeout=30) as r:
        assert r.status in (200, 201)


def get(url: str, timeout: float = 30.0) -> tuple[int, dict[str, str], bytes]:
    # urllib opens a new connection per request, so SO_REUSEPORT spreads them over workers.
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, dict(r.headers), r.read()


def origin_gets(origin: Running, path: str) -> int:
    with urllib.request.urlopen(origin.url + "/_origin/stats", timeout=10) as r:
        stats = json.loads(r.read())
    return sum(int(row["count"]) for row in stats["requests"]
               if row["method"] == "GET" and row["path"] == path)


def access_pids(proxy: Running, cache_status: str) -> set[int]:
    pids = set()
    for line in proxy.log_lines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("cache_status") == cache_status and "pid" in entry:
            pids.add(int(entry["pid"]))
    return pids


def worker_pids(supervisor_pid: int) -> set[int]:
    children = Path(f"/proc/{supervisor_pid}/task/{supervisor_pid}/children").read_text()
    return {int(p) for p in children.split()}


def test_two_workers_share_one_cache_dir(tmp_path: Path, origin_process: Running) -> None:
    body = os.urandom(200_000)
    put(origin_process, "/w/a.bin", body)
    proxy = start_proxy(tmp_path, origin_process.url, workers=2)
    try:
        assert len(worker_pids(proxy.proc.pid)) == 2
        status, headers, first = get(proxy.url + "/w/a.bin")
        assert status == 200 and sha256(first) == sha256(body)
        time.sleep(0.3)  # commit
        for _ in range(30):
            status, headers, again = get(proxy.url + "/w/a.bin")
            assert headers["X-Cache"] == "HIT" and sha256(again) == sha256(body)
        assert origin_gets(origin_process, "/w/a.bin") == 1
        time.sleep(0.3)
        assert len(access_pids(proxy, "HIT")) == 2, "both workers served hits from one cache"
        with urllib.request.urlopen(proxy.admin_url + "/metrics", timeout=10) as r:
            metrics = r.read().decode()
        hits = [line for line in metrics.splitlines()
                if line.startswith('mediaproxy_requests_total{cache_status="HIT",method="GET"}')]
        assert hits and float(hits[0].split()[-1]) == 30.0  # summed across both workers
    finally:
        assert stop(proxy.proc) == 0


def test_a_killed_worker_is_replaced(tmp_path: Path, origin_process: Running) -> None:
    put(origin_process, "/w/k.bin", b"k" * 1000)
    proxy = start_proxy(tmp_path, origin_process.url, workers=2)
    try:
        before = worker_pids(proxy.proc.pid)
        victim = min(before)
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            now = worker_pids(proxy.proc.pid)
            if len(now) == 2 and victim not in now:
                break
            time.sleep(0.1)
        assert len(worker_pids(proxy.proc.pid)) == 2 and victim not in worker_pids(proxy.proc.pid)
        for _ in range(10):
            assert get(proxy.url + "/w/k.bin")[2] == b"k" * 1000
    finally:
        assert stop(proxy.proc) == 0


def test_the_supervisor_sweeps_purges_and_workers_do_not(tmp_path: Path,
                                                         origin_process: Running) -> None:
    paths = [f"/sw/{i}.bin" for i in range(20)]
    for path in paths:
        put(origin_process, path, path.encode() * 50)
    proxy = start_proxy(tmp_path, origin_process.url, workers=2,
                        extra=f'[admin]\ntoken = "{ADMIN_TOKEN}"\n',
                        cache_extra="memory_ttl_seconds = 1.0\n")  # bans retire after 3 s
    try:
        for path in paths:
            get(proxy.url + path)
        time.sleep(0.5)
        request = urllib.request.Request(
            proxy.admin_url + "/purge", data=json.dumps({"prefix": "/sw/"}).encode(),
            method="POST", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        with urllib.request.urlopen(request, timeout=10) as r:
            assert r.status == 200
        assert get(proxy.url + paths[0])[1]["X-Cache"] == "MISS"  # hidden at once

        def stats() -> dict[str, object]:
            with urllib.request.urlopen(proxy.admin_url + "/stats", timeout=10) as r:
                return dict(json.loads(r.read()))

        deadline = time.monotonic() + 30
        while stats()["active_bans"] and time.monotonic() < deadline:
            time.sleep(0.2)
        # Swept and retired: by the supervisor, as workers run with sweeps_bans=False.
        assert stats()["active_bans"] == []
        assert stats()["entries"] == 1  # the one refetched above
    finally:
        assert stop(proxy.proc) == 0
