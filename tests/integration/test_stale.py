"""Stale rules end to end: stale-while-revalidate, stale-if-error and the configured grace,
and configured lifetimes, with the origin and the proxy on one injected clock."""

from __future__ import annotations

import asyncio
import os

from tests.conftest import Clock, Origin, ProxyFactory, free_port
from tests.integration.test_proxy import settled

BODY = os.urandom(5000)


async def wait_for_count(origin: Origin, path: str, n: int) -> int:
    for _ in range(200):
        if origin.count(path) >= n:
            break
        await asyncio.sleep(0.02)
    return origin.count(path)


async def test_stale_while_revalidate_answers_at_once_and_refreshes_once(
    origin: Origin, make_proxy: ProxyFactory, clock: Clock
) -> None:
    await origin.publish("/s/swr.jpg", BODY,
                         X_Media_Cache_Control="max-age=60, stale-while-revalidate=600")
    proxy = await make_proxy(clock=clock)
    await (await proxy.get("/s/swr.jpg")).read()
    await settled(proxy)
    clock.offset += 120
    answers = await asyncio.gather(*(proxy.get("/s/swr.jpg") for _ in range(10)))
    statuses = {r.headers["X-Cache"] for r in answers}
    assert statuses <= {"UPDATING", "REVALIDATED", "HIT"} and "UPDATING" in statuses
    assert all([await r.read() == BODY for r in answers])
    assert await wait_for_count(origin, "/s/swr.jpg", 2) == 2  # exactly one refresh
    await asyncio.sleep(0.1)
    assert origin.count("/s/swr.jpg") == 2
    r = await proxy.get("/s/swr.jpg")
    assert r.headers["X-Cache"] == "HIT", "the background 304 made it fresh again"


async def test_stale_if_error_serves_the_stale_copy_when_the_origin_fails(
    origin: Origin, make_proxy: ProxyFactory, clock: Clock
) -> None:
    await origin.publish("/s/sie.jpg", BODY, X_Media_Cache_Control="max-age=60, stale-if-error=600")
    await origin.publish("/s/plain.jpg", BODY, X_Media_Cache_Control="max-age=60")
    proxy = await make_proxy(clock=clock)
    for path in ("/s/sie.jpg", "/s/plain.jpg"):
        await (await proxy.get(path)).read()
    await settled(proxy)
    await origin.fault(path_prefix="/s/", status=503)
    clock.offset += 120
    r = await proxy.get("/s/sie.jpg")
    assert (r.status, r.headers["X-Cache"]) == (200, "STALE") and await r.read() == BODY
    r = await proxy.get("/s/plain.jpg")
    assert r.status == 503, "no stale-if-error and no grace: the origin's error goes through"
    clock.offset += 1000  # beyond the window
    r = await proxy.get("/s/sie.jpg")
    assert r.status == 503


async def test_configured_grace_when_the_origin_is_down(
    origin: Origin, make_proxy: ProxyFactory, clock: Clock, tmp_path: object
) -> None:
    await origin.publish("/s/g.jpg", BODY, X_Media_Cache_Control="max-age=60")
    proxy = await make_proxy(clock=clock, cache={"stale_if_error_seconds": 3600.0})
    await (await proxy.get("/s/g.jpg")).read()
    await settled(proxy)
    # The origin goes away entirely: point the proxy's origin at a dead port.
    proxy.runtime.origin.base = proxy.runtime.origin.base.with_port(free_port())
    clock.offset += 600
    r = await proxy.get("/s/g.jpg")
    assert (r.status, r.headers["X-Cache"]) == (200, "STALE") and await r.read() == BODY
    clock.offset += 7200
    r = await proxy.get("/s/g.jpg")
    assert r.status == 502 and r.headers["X-Cache"] == "ERROR"


async def test_configured_lifetime_rules(origin: Origin, make_proxy: ProxyFactory,
                                         clock: Clock) -> None:
    await origin.publish("/static/a.css", BODY, X_Media_Cache_Control="max-age=1")
    await origin.publish("/other/a.css", BODY, X_Media_Cache_Control="max-age=1")
    proxy = await make_proxy(clock=clock, cache={"lifetime_rules": "/static/=3600"})
    for path in ("/static/a.css", "/other/a.css"):
        await (await proxy.get(path)).read()
    await settled(proxy)
    clock.offset += 600
    assert (await proxy.get("/static/a.css")).headers["X-Cache"] == "HIT"
    assert (await proxy.get("/other/a.css")).headers["X-Cache"] == "REVALIDATED"


async def test_a_slow_revalidating_client_does_not_hold_up_the_others(
    origin: Origin, make_proxy: ProxyFactory, clock: Clock
) -> None:
    """The request that revalidated (304) serves the refreshed entry itself; others for the
    key must not wait until that body has reached its (slow) client."""
    big = os.urandom(48 * 1024 * 1024)
    await origin.publish("/s/big.mp4", big, X_Media_Cache_Control="max-age=60")
    proxy = await make_proxy(clock=clock)
    await (await proxy.get("/s/big.mp4")).read()
    await settled(proxy)
    clock.offset += 120
    await origin.fault(path_prefix="/s/big.mp4", delay_seconds=1.0, count=1)
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        writer.write(b"GET /s/big.mp4 HTTP/1.1\r\nHost: x\r\n\r\n")
        await asyncio.sleep(0.3)  # the revalidation is on its way: the next request waits
        second = asyncio.ensure_future(proxy.get("/s/big.mp4"))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert b"X-Cache: REVALIDATED" in head  # and now it reads nothing more for a while
        r = await asyncio.wait_for(second, 20)
        assert r.headers["X-Cache"] == "HIT"
        assert await asyncio.wait_for(r.read(), 20) == big
    finally:
        writer.close()
    assert origin.count("/s/big.mp4") == 2
