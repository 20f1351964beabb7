"""One origin fetch per object across worker processes (collapsed forwarding)."""

from __future__ import annotations

import asyncio
import json
import os
import urllib.request
from pathlib import Path

import aiohttp

from tests.conftest import ADMIN_TOKEN, sha256
from tests.e2e.conftest import Running, start_proxy, stop
from tests.e2e.test_workers import access_pids, origin_gets, put


def fault(origin: Running, **spec: object) -> None:
    request = urllib.request.Request(
        origin.url + "/_origin/faults", data=json.dumps(spec).encode(), method="POST",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as r:
        assert r.status in (200, 201, 204)


async def fetch_many(url: str, n: int, headers: dict[str, str] | None = None
                     ) -> list[tuple[int, str, bytes]]:
    # One connection per request, so SO_REUSEPORT spreads them over both workers.
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=120)) as session:
        async def one() -> tuple[int, str, bytes]:
            async with session.get(url, headers=headers) as r:
                return r.status, r.headers["X-Cache"], await r.read()
        return await asyncio.gather(*(one() for _ in range(n)))


def test_100_cold_requests_over_2_workers_make_1_origin_request(
    tmp_path: Path, origin_process: Running
) -> None:
    body = os.urandom(8_000_000)
    put(origin_process, "/herd/video.mp4", body)
    fault(origin_process, path_prefix="/herd/", rate_bytes_per_second=8_000_000)
    proxy = start_proxy(tmp_path, origin_process.url, workers=2)
    try:
        results = asyncio.run(fetch_many(proxy.url + "/herd/video.mp4", 100))
        assert [s for s, _, _ in results] == [200] * 100
        assert {sha256(b) for _, _, b in results} == {sha256(body)}
        assert origin_gets(origin_process, "/herd/video.mp4") == 1
        statuses = sorted(x for _, x, _ in results)
        assert statuses.count("MISS") == 1 and statuses.count("HIT") == 99
        assert len(access_pids(proxy, "HIT")) == 2, "followers in both workers"
    finally:
        assert stop(proxy.proc) == 0


def test_follower_range_is_answered_from_the_growing_file(
    tmp_path: Path, origin_process: Running
) -> None:
    body = os.urandom(4_000_000)
    put(origin_process, "/herd/seek.mp4", body)
    fault(origin_process, path_prefix="/herd/", rate_bytes_per_second=4_000_000)
    proxy = start_proxy(tmp_path, origin_process.url, workers=2)
    try:
        async def scenario() -> list[tuple[int, str, bytes]]:
            full = asyncio.create_task(fetch_many(proxy.url + "/herd/seek.mp4", 1))
            await asyncio.sleep(0.2)
            ranged = await fetch_many(proxy.url + "/herd/seek.mp4", 20,
                                      {"Range": "bytes=1000-1999"})
            return [*(await full), *ranged]
        results = asyncio.run(scenario())
        assert results[0][2] == body
        assert all(s == 206 and b == body[1000:2000] for s, _, b in results[1:])
        assert origin_gets(origin_process, "/herd/seek.mp4") == 1
    finally:
        assert stop(proxy.proc) == 0


def test_broken_fill_cuts_every_follower_and_commits_nothing(
    tmp_path: Path, origin_process: Running
) -> None:
    body = os.urandom(3_000_000)
    put(origin_process, "/herd/broken.mp4", body)
    fault(origin_process, path_prefix="/herd/broken", rate_bytes_per_second=3_000_000,
          truncate_after_bytes=1_000_000)
    proxy = start_proxy(tmp_path, origin_process.url, workers=2)
    try:
        async def many() -> list[BaseException | tuple[int, str, bytes]]:
            connector = aiohttp.TCPConnector(limit=0, force_close=True)
            async with aiohttp.ClientSession(connector=connector) as session:
                async def one() -> tuple[int, str, bytes]:
                    async with session.get(proxy.url + "/herd/broken.mp4") as r:
                        return r.status, r.headers["X-Cache"], await r.read()
                return await asyncio.gather(*(one() for _ in range(20)),
                                            return_exceptions=True)
        results = asyncio.run(many())
        assert all(isinstance(r, aiohttp.ClientPayloadError) for r in results), results
        assert not list((tmp_path / "cache" / "tmp").glob("*.part"))
        urllib.request.urlopen(urllib.request.Request(
            origin_process.url + "/_origin/faults", method="DELETE",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}), timeout=10).close()
        again = asyncio.run(fetch_many(proxy.url + "/herd/broken.mp4", 1))
        assert again[0][1] == "MISS" and again[0][2] == body
    finally:
        assert stop(proxy.proc) == 0
