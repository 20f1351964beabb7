"""The standards of #18 through the real proxy: Cache-Status on every answer (one source with
X-Cache), Cache-Group-Invalidation on an unsafe request's answer, verified and declared
digests."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os

from aiohttp import web

from tests.conftest import ADMIN_TOKEN, ProxyFactory
from tests.integration.test_proxy import settled
from tests.integration.test_security import Scripted, scripted  # noqa: F401  (fixture)

BODY = os.urandom(300_000)  # disk hits (above the memory tier)
SMALL = os.urandom(2_000)  # memory-tier hits


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def cacheable(body: bytes, **extra: str) -> web.Response:
    return web.Response(body=body, headers={"Cache-Control": "max-age=600", "ETag": '"e"',
                                            **extra})


async def test_cache_status_follows_the_outcome(make_proxy: ProxyFactory,
                                                scripted: Scripted) -> None:  # noqa: F811
    scripted.routes["/cs/big"] = lambda request: cacheable(
        BODY, **{"Cache-Status": "OriginShield; hit"})
    scripted.routes["/cs/small"] = lambda request: cacheable(SMALL)
    scripted.routes["/cs/nostore"] = lambda request: web.Response(
        body=b"x", headers={"Cache-Control": "no-store"})
    proxy = await make_proxy(origin={"url": scripted.url})

    r = await proxy.get("/cs/big")
    assert r.headers["X-Cache"] == "MISS"
    # The origin's member first, ours last (RFC 9211 §2).
    origin_member, ours = r.headers.getall("Cache-Status")
    assert origin_member == "OriginShield; hit"
    assert ours.rsplit("=", 1)[0] == "mediaproxy; fwd=uri-miss; fwd-status=200; stored; ttl"
    assert int(ours.rsplit("=", 1)[1]) in (599, 600)  # the origin's Date has 1 s resolution
    await r.read()
    await settled(proxy)
    r = await proxy.get("/cs/big")
    assert r.headers["X-Cache"] == "HIT"
    assert r.headers.getall("Cache-Status")[-1].startswith("mediaproxy; hit; ttl=")
    for _ in range(2):  # the miss, then the memory tier (pre-built bytes)
        r = await proxy.get("/cs/small")
        await r.read()
        await settled(proxy)
    assert r.headers["X-Cache"] == "HIT"
    assert r.headers["Cache-Status"].startswith("mediaproxy; hit; ttl=")
    r = await proxy.get("/cs/nostore")
    assert r.headers["X-Cache"] == "PASS" and r.headers["Cache-Status"].startswith(
        "mediaproxy; fwd=uri-miss; fwd-status=200")
    r = await proxy.get("/cs/nostore")  # hit-for-pass: the cache is not consulted
    assert r.headers["Cache-Status"].startswith("mediaproxy; fwd=bypass; fwd-status=200")
    r = await proxy.post("/cs/big", data=b"x")
    assert r.headers.getall("Cache-Status")[-1] == "mediaproxy; fwd=method; fwd-status=200"
    r = await proxy.get("/cs/big?exp=1&kid=k1&sig=" + "A" * 43)  # no keys: just a query
    assert r.status == 200


async def test_x_cache_and_cache_status_can_be_turned_off(make_proxy: ProxyFactory,
                                                          scripted: Scripted) -> None:  # noqa: F811
    scripted.routes["/off/a"] = lambda request: cacheable(SMALL)
    proxy = await make_proxy(origin={"url": scripted.url},
                             server={"x_cache": False, "cache_status": False})
    for _ in range(3):
        r = await proxy.get("/off/a")
        assert await r.read() == SMALL
        assert "X-Cache" not in r.headers and "Cache-Status" not in r.headers
        await settled(proxy)


async def test_cache_group_invalidation_on_an_unsafe_answer(
        make_proxy: ProxyFactory, scripted: Scripted) -> None:  # noqa: F811
    for name in ("a", "b", "c"):
        scripted.routes[f"/g/{name}"] = lambda request, name=name: cacheable(
            SMALL + name.encode(), **{"Cache-Groups": '"news", "front page"' if name != "c"
                                      else '"sports"'})
    scripted.routes["/g/publish"] = lambda request: web.Response(
        status=200, headers={"Cache-Group-Invalidation": '"front page"'})
    scripted.routes["/g/read"] = lambda request: web.Response(
        body=b"r", headers={"Cache-Group-Invalidation": '"sports"', "Cache-Control": "no-store"})
    proxy = await make_proxy(origin={"url": scripted.url}, admin={"token": ADMIN_TOKEN})
    for name in ("a", "b", "c"):
        await (await proxy.get(f"/g/{name}")).read()
    await settled(proxy)
    # Ignored on the answer to a safe method (RFC 9875 §3).
    r = await proxy.get("/g/read")
    assert r.headers["Cache-Group-Invalidation"] == '"sports"'
    assert (await proxy.get("/g/c")).headers["X-Cache"] == "HIT"
    # A publish through the proxy invalidates what its answer names, and passes the field on.
    r = await proxy.post("/g/publish", data=b"new")
    assert r.headers["Cache-Group-Invalidation"] == '"front page"'
    assert [(await proxy.get(f"/g/{n}")).headers["X-Cache"] for n in "abc"] == [
        "MISS", "MISS", "HIT"]


async def test_the_cache_declares_and_checks_digests(make_proxy: ProxyFactory,
                                                     scripted: Scripted) -> None:  # noqa: F811
    good = hashlib.sha256(BODY).digest()
    scripted.routes["/d/plain"] = lambda request: cacheable(BODY)
    scripted.routes["/d/good"] = lambda request: cacheable(
        BODY, **{"Repr-Digest": f"sha-256=:{b64(good)}:"})
    scripted.routes["/d/bad"] = lambda request: cacheable(
        BODY, **{"Repr-Digest": f"sha-256=:{b64(hashlib.sha256(b'other').digest())}:"})
    proxy = await make_proxy(origin={"url": scripted.url})
    for path in ("/d/plain", "/d/good"):
        assert await (await proxy.get(path)).read() == BODY
        await settled(proxy)
        r = await proxy.get(path)
        assert r.headers["X-Cache"] == "HIT" and await r.read() == BODY
        assert r.headers.getall("Repr-Digest") == [f"sha-256=:{b64(good)}:"]
    before = proxy.runtime.metrics.fills.labels("digest_mismatch")._value.get()
    r = await proxy.get("/d/bad")
    try:
        got = await r.read()
    except Exception:  # the connection is cut before the last byte
        got = b""
    assert got != BODY, "a body that does not match its digest reached a client whole"
    await settled(proxy)
    assert proxy.runtime.metrics.fills.labels("digest_mismatch")._value.get() == before + 1
    r = await proxy.get("/d/bad")  # never committed: asked again
    assert r.headers["X-Cache"] == "MISS"
    await asyncio.sleep(0)
