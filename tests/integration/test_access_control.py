"""Access control through the real proxy and origin: tokens on misses and hits, revocation,
and hostile input."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest

from proxy.signing import sign_url
from tests.conftest import Clock, Origin, ProxyFactory, raw_request
from tests.integration.test_proxy import settled

SECRET = "0123456789abcdef0123"
AUTH = {"keys": f"k1={SECRET}", "access_recheck_seconds": 30.0}
BODY = os.urandom(20_000)


def signed(path: str, clock: Clock | None = None, ttl: int = 600, **kwargs: Any) -> str:
    url = sign_url(path, key_id="k1", secret=SECRET, ttl_seconds=ttl,
                   now=None if clock is None else clock(), **kwargs)
    return url


@pytest.fixture
async def guarded(make_proxy: ProxyFactory, clock: Clock) -> Any:
    return await make_proxy(clock=clock, auth=AUTH)


async def test_protected_object_needs_a_token_on_miss_and_hit(
    origin: Origin, guarded: Any
) -> None:
    await origin.publish("/p/report.pdf", BODY, X_Media_Access="protected")
    r = await guarded.get("/p/report.pdf")
    assert r.status == 401 and await r.json() == {"error": "token_missing"}
    assert "WWW-Authenticate" in r.headers and r.headers["Cache-Control"] == "no-store"
    r = await guarded.get(signed("/p/report.pdf"))
    assert r.status == 200 and await r.read() == BODY
    await settled(guarded)
    r = await guarded.get(signed("/p/report.pdf"))
    assert (r.status, r.headers["X-Cache"]) == (200, "HIT") and await r.read() == BODY
    for _ in range(2):  # a cached protected object without a token: refused, disk and memory
        r = await guarded.get("/p/report.pdf")
        assert r.status == 401 and BODY not in await r.read()
    r = await guarded.head("/p/report.pdf")
    assert r.status == 401
    r = await guarded.get("/p/report.pdf?exp=1&kid=k1&sig=" + "A" * 43)
    assert r.status == 403 and (await r.json())["error"] == "token_bad_signature"
    assert origin.count("/p/report.pdf") == 1  # tokens never split the cache key


async def test_token_parameters_never_reach_the_origin_or_the_key(
    origin: Origin, guarded: Any
) -> None:
    await origin.publish("/pub/a.jpg", BODY)
    r = await guarded.get(signed("/pub/a.jpg") + "&size=large")
    assert r.status == 200
    stats = await (await origin.session.get(origin.url + "/_origin/stats")).json()
    paths = [row["path"] for row in stats["requests"]]
    assert "/pub/a.jpg" in paths
    await settled(guarded)
    assert guarded.runtime.store.lookup("/pub/a.jpg?size=large") is not None


async def test_public_objects_need_nothing(origin: Origin, guarded: Any) -> None:
    await origin.publish("/pub/b.jpg", BODY)
    assert (await guarded.get("/pub/b.jpg")).status == 200


async def test_expired_and_wrong_path_tokens(origin: Origin, guarded: Any,
                                             clock: Clock) -> None:
    await origin.publish("/p/a/x.pdf", BODY, X_Media_Access="protected")
    expired = signed("/p/a/x.pdf", clock, ttl=10)
    clock.offset += 100
    r = await guarded.get(expired)
    assert r.status == 403 and (await r.json())["error"] == "token_expired"
    other = signed("/p/a/y.pdf", clock).replace("/p/a/y.pdf", "/p/a/x.pdf")
    r = await guarded.get(other)
    assert r.status == 403 and (await r.json())["error"] == "token_bad_signature"
    folder = signed("/p/a/", clock, prefix=True)
    assert (await guarded.get(folder.replace("/p/a/?", "/p/a/x.pdf?"))).status == 200
    upper = folder.replace("/p/a/?", "/P/a/x.pdf?")
    assert (await guarded.get(upper)).status in (403, 404)


@pytest.mark.parametrize("path", ["/p/a/../b.pdf", "/p/a%2F..%2Fb.pdf", "/p/a/%2e%2e/b.pdf"])
async def test_traversal_with_a_prefix_token_is_refused(origin: Origin, guarded: Any,
                                                        path: str) -> None:
    await origin.publish("/p/b.pdf", BODY, X_Media_Access="protected")
    query = signed("/p/a/", prefix=True).split("?", 1)[1]
    answer = await raw_request(guarded.port, f"GET {path}?{query} HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert origin.count("/p/b.pdf") == 0


async def test_query_pollution_and_long_tokens(origin: Origin, guarded: Any) -> None:
    await origin.publish("/p/c.pdf", BODY, X_Media_Access="protected")
    good = signed("/p/c.pdf")
    r = await guarded.get(good + "&sig=AAAA")
    assert r.status == 403 and (await r.json())["error"] == "token_duplicate_parameter"
    r = await guarded.get("/p/c.pdf?exp=1&kid=k1&sig=" + "A" * 3000)
    assert r.status == 403


async def test_config_rules_protect_before_any_work(
    origin: Origin, make_proxy: ProxyFactory
) -> None:
    proxy = await make_proxy(auth={**AUTH, "protected_prefixes": "/premium/"})
    await origin.publish("/premium/film.mp4", BODY)  # the origin says public
    r = await proxy.get("/premium/film.mp4")
    assert r.status == 401
    assert origin.count("/premium/film.mp4") == 0  # refused without asking the origin


async def test_access_revoked_at_the_origin_takes_effect_within_the_recheck(
    origin: Origin, guarded: Any, clock: Clock
) -> None:
    await origin.publish("/m/news.jpg", BODY, X_Media_Cache_Control="max-age=3600")
    assert (await guarded.get("/m/news.jpg")).status == 200
    await settled(guarded)
    assert await origin.admin("PATCH", "/m/news.jpg", {"access": "protected"}) == 200
    r = await guarded.get("/m/news.jpg")
    assert r.status == 200  # still public as far as the cache knows: not protected yet
    # Public objects follow their freshness; the change shows at revalidation.
    clock.offset += 3601
    r = await guarded.get("/m/news.jpg")
    assert r.status == 401, "the 304 carried the new access policy"
    assert (await guarded.get(signed("/m/news.jpg", clock))).status == 200
    # Protected objects are rechecked every access_recheck_seconds even while fresh.
    assert await origin.admin("PATCH", "/m/news.jpg", {"access": "public"}) == 200
    clock.offset += 31
    assert (await guarded.get("/m/news.jpg")).status == 200


async def test_unkeyed_headers_cannot_poison_the_cache(make_proxy: ProxyFactory) -> None:
    """An origin that builds links from X-Forwarded-Host (as many frameworks do) must never
    see a client's value: the entry it produces is shared by everyone."""
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    from tests.conftest import free_port

    seen: list[dict[str, str]] = []

    async def serve(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        host = request.headers.get("X-Forwarded-Host", "media.example")
        return web.Response(text=f"<a href='https://{host}/next'>",
                            headers={"Cache-Control": "max-age=600", "ETag": '"1"'})

    app = web.Application()
    app.router.add_get("/{t:.*}", serve)
    server = TestServer(app, host="127.0.0.1", port=free_port())
    await server.start_server()
    try:
        proxy = await make_proxy(origin={"url": str(server.make_url("")).rstrip("/")})
        attack = await proxy.get("/page", headers={
            "X-Forwarded-Host": "evil.example", "X-Original-URL": "/admin",
            "X-Rewrite-URL": "/admin", "Forwarded": "host=evil.example"})
        assert "evil" not in await attack.text()
        await settled(proxy)
        victim = await proxy.get("/page")
        assert victim.headers["X-Cache"] == "HIT" and "evil" not in await victim.text()
        sent = seen[0]
        for name in ("X-Forwarded-Host", "X-Original-URL", "X-Rewrite-URL", "Forwarded"):
            assert name not in sent
        assert sent["Host"] != "evil.example"
    finally:
        await server.close()


async def test_set_cookie_is_never_served_to_another_client(
    make_proxy: ProxyFactory,
) -> None:
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    from tests.conftest import free_port

    calls = 0

    async def serve(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        return web.Response(body=b"hello", headers={
            "Cache-Control": "max-age=600", "ETag": '"1"', "Set-Cookie": f"session={calls}"})

    app = web.Application()
    app.router.add_get("/{t:.*}", serve)
    server = TestServer(app, host="127.0.0.1", port=free_port())
    await server.start_server()
    try:
        proxy = await make_proxy(origin={"url": str(server.make_url("")).rstrip("/")})
        first = await proxy.get("/c")
        second = await proxy.get("/c")
        assert first.headers["Set-Cookie"].startswith("session=1")
        assert second.headers["Set-Cookie"].startswith("session=2")  # its own, not the first's
        assert calls == 2
    finally:
        await server.close()


async def test_signed_range_requests_on_a_protected_video(origin: Origin, guarded: Any) -> None:
    video = os.urandom(2_000_000)
    await origin.publish("/p/v/movie.mp4", video, X_Media_Access="protected")
    url = signed("/p/v/", prefix=True).replace("/p/v/?", "/p/v/movie.mp4?")
    r = await guarded.get(url, headers={"Range": "bytes=100-199"})
    assert r.status == 206 and await r.read() == video[100:200]
    await settled(guarded)
    results = await asyncio.gather(*(guarded.get(url, headers={"Range": "bytes=0-9"})
                                     for _ in range(5)))
    assert [x.status for x in results] == [206] * 5
