"""Herds on a bad day, with 2 workers: a purge landing during a fill, and an origin that does
not answer. Each visitor must not become one more origin request."""

from __future__ import annotations

import asyncio
import os
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ADMIN_TOKEN, sha256
from tests.e2e.conftest import Running, start_proxy, stop
from tests.e2e.test_collapsing import fault, fetch_many
from tests.e2e.test_workers import origin_gets, put

ADMIN = f'[admin]\ntoken = "{ADMIN_TOKEN}"\n'


def purge(proxy: Running, path: str) -> None:
    request = urllib.request.Request(proxy.url + path, method="PURGE",
                                     headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    with urllib.request.urlopen(request, timeout=10) as r:
        assert r.status == 200


def test_after_a_purge_during_a_fill_the_next_requests_collapse_again(
        tmp_path: Path, origin_process: Running) -> None:
    old, new = os.urandom(12_000_000), os.urandom(12_000_000)
    put(origin_process, "/ph/video.mp4", old)
    fault(origin_process, path_prefix="/ph/", rate_bytes_per_second=4_000_000)
    proxy = start_proxy(tmp_path, origin_process.url, workers=2, extra=ADMIN)
    try:
        async def scenario() -> tuple[list[tuple[int, str, bytes]], list[tuple[int, str, bytes]]]:
            first = asyncio.create_task(fetch_many(proxy.url + "/ph/video.mp4", 2))
            await asyncio.sleep(0.5)  # the old revision is filling
            put(origin_process, "/ph/video.mp4", new)
            purge(proxy, "/ph/video.mp4")
            herd = await fetch_many(proxy.url + "/ph/video.mp4", 30)
            return await first, herd
        early, herd = asyncio.run(scenario())
        assert {sha256(b) for _, _, b in early} == {sha256(old)}, "old readers keep old bytes"
        assert {sha256(b) for _, _, b in herd} == {sha256(new)}
        # The old fill, then one new fill the whole herd followed (not one per visitor).
        assert origin_gets(origin_process, "/ph/video.mp4") == 2
    finally:
        assert stop(proxy.proc) == 0


def test_followers_learn_the_claimants_timeout_instead_of_asking_again(
        tmp_path: Path, origin_process: Running, monkeypatch: pytest.MonkeyPatch) -> None:
    put(origin_process, "/to/slow.jpg", b"x" * 1000)
    fault(origin_process, path_prefix="/to/", delay_seconds=30)
    monkeypatch.setenv("MEDIAPROXY_ORIGIN_READ_TIMEOUT_SECONDS", "2")
    proxy = start_proxy(tmp_path, origin_process.url, workers=2)
    try:
        results = asyncio.run(fetch_many(proxy.url + "/to/slow.jpg", 8))
        assert [s for s, _, _ in results] == [504] * 8
        # One request to the origin: the followers in both workers learnt its failure.
        assert origin_gets(origin_process, "/to/slow.jpg") == 1
    finally:
        stop(proxy.proc)
