"""Per-key change signals (proxy/store/keysignal.py) under attack: two processes on one cache
directory (as two workers), one writing, the other holding memory copies and lane routes. Once
a write has returned, the other process must not answer the version it replaced."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from proxy.policy.bans import BanKind
from proxy.policy.freshness import StoredResponse
from proxy.store.index import Store
from proxy.store.keysignal import SIGNAL_FILE
from tests.conftest import ProxyClient, ProxyFactory, serving
from tests.integration.wire import Wire

BODY = os.urandom(4096)


async def settled(proxy: ProxyClient) -> None:
    for _ in range(100):
        if not proxy.runtime.proxy.fills:
            return
        await asyncio.sleep(0.01)


class Switching:
    """An origin whose answer for every path is `body`, with `Vary` when `vary` is set."""

    def __init__(self) -> None:
        self.body = BODY
        self.vary: str | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        headers = {"Cache-Control": "max-age=600", "Content-Type": "application/octet-stream"}
        if self.vary is not None:
            headers["Vary"] = self.vary
        return web.Response(body=self.body, headers=headers)


@pytest.fixture
async def switching() -> AsyncIterator[Switching]:
    origin = Switching()
    async with serving(origin.handle) as url:
        origin.url = url
        yield origin


@pytest.mark.parametrize("fast", [True, False])
async def test_a_url_that_starts_varying_in_another_process_is_not_answered_old(
        switching: Switching, make_proxy: ProxyFactory, tmp_path: Path, fast: bool) -> None:
    """The origin starts answering with `Vary`: the other process stores the new response
    under its variant's key. The first process's route and memory copy of the plain URL
    key (the old, non-varying response) must not keep answering: neither the lane (a route
    lives for the memory TTL, 10 s, and knows nothing of variants) nor the lifecycle (which
    remembers a URL's Vary names for a second)."""
    shared = {"dir": str(tmp_path / "shared")}
    upstream = {"url": switching.url}
    first = await make_proxy(cache=shared, origin=upstream, server={"fast_hits": fast})
    second = await make_proxy(cache=shared, origin=upstream)
    path = "/v/k.bin"
    wire = await Wire.open(first.port)
    assert (await wire.get(path)).field("X-Cache") == "MISS"
    await settled(first)
    for _ in range(2):  # from disk (makes the memory copy and route), then from memory
        answer = await wire.get(path)
        assert answer.body == BODY and answer.field("X-Cache") == "HIT"
    newer = os.urandom(4096)
    switching.body, switching.vary = newer, "Accept-Language"
    other = await Wire.open(second.port)
    stored = await other.get(path, "Cache-Control: no-cache\r\n")
    assert stored.body == newer and stored.field("Vary") == "Accept-Language"
    await settled(second)
    again = await wire.get(path)
    assert again.body == newer, again.head
    await wire.close()
    await other.close()


@pytest.mark.parametrize("soft", [True, False])
def test_a_copy_read_before_a_purge_sweep_is_known_changed_after_it(
        tmp_path: Path, soft: bool) -> None:
    """A worker reads an entry just before another process's sweep rewrites (soft) or
    deletes (hard) it, and judges it against its ban table only after the ban has retired:
    the copy it then keeps must still be known as changed (its key's signal moved), else it
    is served, unpurged, for the memory TTL."""
    directory = tmp_path / "shared"
    reader = Store(directory, max_size_bytes=1 << 30)
    sweeper = Store(directory, max_size_bytes=1 << 30)
    try:
        assert reader.keys.available and (directory / SIGNAL_FILE).exists()
        key = "/p/a.bin"
        meta = StoredResponse(200, (("Cache-Control", "max-age=600"),), 1.0, 1.0, 5)
        temp = sweeper.new_temp_path()
        Path(temp).write_bytes(b"hello")
        assert sweeper.commit(key, temp, meta)
        cached = reader.lookup(key)  # the read that begins before the sweep
        assert cached is not None
        cached.close()
        now = time.time()
        sweeper.add_ban(BanKind.PREFIX, "/p/", soft=soft, now=now)
        assert sweeper.sweep_bans(min_ban_age_seconds=0.0, now=now) == 1  # swept the entry
        assert not sweeper.bans().all  # swept and retired: nothing hides the entry now
        assert reader.keys.read(cached.slot) != cached.signal
    finally:
        reader.close()
        sweeper.close()
