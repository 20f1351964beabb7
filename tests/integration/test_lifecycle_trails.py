"""The steps a request goes through (its trail, as the driver records it) on the main paths."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from tests.conftest import Clock, Origin, ProxyFactory
from tests.integration.test_proxy import settled

LARGE = os.urandom(300_000)  # above the memory tier: disk hits go through the loop


def last_trail(proxy: Any, key: str) -> tuple[str, ...]:
    trails = [trail for k, trail in proxy.runtime.proxy.ctx.trails if k == key]
    assert trails, f"no trail for {key}"
    return trails[-1]


async def test_trails_of_the_main_paths(origin: Origin, make_proxy: ProxyFactory,
                                        clock: Clock) -> None:
    await origin.publish("/tr/a", LARGE, X_Media_Cache_Control="max-age=60, stale-if-error=600")
    proxy = await make_proxy(clock=clock)
    await (await proxy.get("/tr/a")).read()
    assert last_trail(proxy, "/tr/a") == ("Lookup", "Miss", "Claimed", "Filling")
    await settled(proxy)
    await (await proxy.get("/tr/a")).read()
    assert last_trail(proxy, "/tr/a") == ("Lookup", "Fresh")
    clock.offset += 120
    r = await proxy.get("/tr/a")
    assert r.headers["X-Cache"] == "REVALIDATED"
    assert last_trail(proxy, "/tr/a") == ("Lookup", "Miss", "Claimed", "Revalidated")
    clock.offset += 120
    await origin.fault(path_prefix="/tr/", status=503)
    r = await proxy.get("/tr/a")
    assert r.headers["X-Cache"] == "STALE" and await r.read() == LARGE
    assert last_trail(proxy, "/tr/a") == ("Lookup", "Miss", "Claimed", "Stale")


async def test_a_request_joining_a_fill(origin: Origin, make_proxy: ProxyFactory) -> None:
    await origin.publish("/tr/slow", LARGE * 10)
    await origin.fault(path_prefix="/tr/slow", rate_bytes_per_second=3_000_000)
    proxy = await make_proxy()
    first = asyncio.ensure_future(proxy.get("/tr/slow"))
    while not proxy.runtime.proxy.fills:
        await asyncio.sleep(0.005)
    second = await proxy.get("/tr/slow")
    assert second.headers["X-Cache"] == "HIT" and await second.read() == LARGE * 10
    assert last_trail(proxy, "/tr/slow") == ("Lookup", "Miss", "Join")
    assert await (await first).read() == LARGE * 10
