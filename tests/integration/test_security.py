"""A shared cache must never hand one client's answer, field or access to another: per-client
fields on 304s, unkeyed request fields, access control for every method and spelling, the
origin's access header failing closed, trusted proxies, and hygiene (purge targets, JSON,
slow clients, file modes). Each test runs the real proxy against a real HTTP origin."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from proxy.signing import sign_url
from tests.conftest import ADMIN_TOKEN, Clock, ProxyFactory, free_port, raw_request
from tests.integration.scripted_http import Handler, Scripted
from tests.integration.test_proxy import settled

SECRET = "0123456789abcdef0123"
AUTH = {"keys": f"k1={SECRET}", "protected_prefixes": "/vault/"}

def signed(path: str, **kwargs: Any) -> str:
    return sign_url(path, key_id="k1", secret=SECRET, ttl_seconds=600, **kwargs)


# -- 304s never put per-client fields into the stored entry ---------------------------------


def revalidating(cookie_once: list[bool], extra_cc: str = "") -> Handler:
    def answer(request: web.Request) -> web.Response:
        if request.headers.get("If-None-Match") == '"v1"':
            headers = {"ETag": '"v1"', "Cache-Control": "max-age=60" + extra_cc}
            if not cookie_once:
                cookie_once.append(True)
                headers["Set-Cookie"] = "session=alice-secret"
                headers["X-User"] = "alice"
            return web.Response(status=304, headers=headers)
        return web.Response(body=b"shared bytes", headers={"ETag": '"v1"',
                                                            "Cache-Control": "max-age=0"})
    return answer


async def test_set_cookie_on_a_304_goes_to_its_client_only(
        make_proxy: ProxyFactory, scripted: Scripted) -> None:
    scripted.routes["/c.jpg"] = revalidating([])
    proxy = await make_proxy(origin={"url": scripted.url})
    assert (await proxy.get("/c.jpg")).headers["X-Cache"] == "MISS"
    await settled(proxy)
    r = await proxy.get("/c.jpg")  # stale: revalidated, and the 304 sets alice's cookie
    assert r.headers["X-Cache"] == "REVALIDATED" and await r.read() == b"shared bytes"
    assert r.headers.getall("Set-Cookie") == ["session=alice-secret"]
    for _ in range(3):  # everyone after alice: the refreshed entry, without her cookie
        r = await proxy.get("/c.jpg")
        assert r.headers["X-Cache"] == "HIT" and await r.read() == b"shared bytes"
        assert "Set-Cookie" not in r.headers and "X-User" in r.headers
    assert scripted.count("/c.jpg") == 2


async def test_fields_named_by_no_cache_on_a_304_are_not_stored(
        make_proxy: ProxyFactory, scripted: Scripted) -> None:
    scripted.routes["/n.jpg"] = revalidating([], ', no-cache="X-User, Set-Cookie"')
    proxy = await make_proxy(origin={"url": scripted.url})
    await (await proxy.get("/n.jpg")).read()
    await settled(proxy)
    r = await proxy.get("/n.jpg")
    assert r.headers["X-User"] == "alice"  # alice's own answer
    r = await proxy.get("/n.jpg")  # qualified no-cache: reusable, without those fields
    assert r.headers["X-Cache"] == "HIT"
    assert "X-User" not in r.headers and "Set-Cookie" not in r.headers


async def test_background_refresh_never_stores_a_304_cookie(
        make_proxy: ProxyFactory, scripted: Scripted, clock: Clock) -> None:
    given: list[bool] = []

    def answer(request: web.Request) -> web.Response:
        headers = {"ETag": '"v1"', "Cache-Control": "max-age=5, stale-while-revalidate=600"}
        if request.headers.get("If-None-Match") == '"v1"':
            headers["Cache-Control"] = "max-age=600"
            if not given:
                given.append(True)
                headers["Set-Cookie"] = "session=refresher"
            return web.Response(status=304, headers=headers)
        return web.Response(body=b"swr bytes", headers=headers)

    scripted.routes["/s.jpg"] = answer
    proxy = await make_proxy(clock=clock, origin={"url": scripted.url})
    await (await proxy.get("/s.jpg")).read()
    await settled(proxy)
    clock.offset += 30
    r = await proxy.get("/s.jpg")
    assert r.headers["X-Cache"] == "UPDATING"
    for _ in range(100):
        if scripted.count("/s.jpg") == 2 and not proxy.runtime.proxy.refreshing:
            break
        await asyncio.sleep(0.02)
    r = await proxy.get("/s.jpg")
    assert r.headers["X-Cache"] == "HIT" and "Set-Cookie" not in r.headers


async def test_fields_a_full_response_qualifies_go_to_its_client_only(
        make_proxy: ProxyFactory, scripted: Scripted) -> None:
    scripted.routes["/q.jpg"] = lambda request: web.Response(
        body=b"q", headers={"Cache-Control": 'max-age=60, no-cache="X-User"',
                            "X-User": "alice", "ETag": '"q"'})
    proxy = await make_proxy(origin={"url": scripted.url})
    r = await proxy.get("/q.jpg")
    assert r.headers["X-Cache"] == "MISS" and r.headers["X-User"] == "alice"
    await settled(proxy)
    for _ in range(2):  # disk, then the memory tier
        r = await proxy.get("/q.jpg")
        assert r.headers["X-Cache"] == "HIT" and "X-User" not in r.headers


# -- unkeyed request fields never reach the origin ------------------------------------------

UNKEYED = {
    "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "http",
    "X-Forwarded-Scheme": "http", "X-Forwarded-Port": "1337",
    "X-Forwarded-Prefix": "/evil", "X-Forwarded-SSL": "off", "X-Original-Host": "evil.example",
    "X-Original-URL": "/admin", "X-Rewrite-URL": "/admin", "X-Host": "evil.example",
    "Forwarded": "host=evil.example;proto=http", "X-Url-Scheme": "http",
    "Front-End-Https": "off", "X-HTTP-Method-Override": "DELETE", "X-HTTP-Method": "PUT",
    "X-Method-Override": "PATCH", "X-Real-IP": "10.9.9.9", "True-Client-IP": "10.9.9.9",
}


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST"])
async def test_unkeyed_fields_never_reach_the_origin(
        make_proxy: ProxyFactory, scripted: Scripted, method: str) -> None:
    proxy = await make_proxy(origin={"url": scripted.url})
    headers = {**UNKEYED, "X-Forwarded-For": "6.6.6.6"}
    r = await proxy.request(method, "/u.jpg", headers=headers)
    assert r.status == 200
    [seen] = scripted.headers_of("/u.jpg")
    leaked = {name for name in UNKEYED if name.lower() in seen}
    assert leaked == set()
    assert seen["x-forwarded-for"] == "127.0.0.1"  # a spoofed chain is not believed


async def test_forward_host_keys_the_cache_by_host(
        make_proxy: ProxyFactory, scripted: Scripted) -> None:
    scripted.routes["/h.jpg"] = lambda request: web.Response(
        body=f"site {request.host}".encode(), headers={"Cache-Control": "max-age=60"})
    proxy = await make_proxy(origin={"url": scripted.url, "forward_host": True})

    async def get(host: str) -> tuple[str, bytes]:
        r = await proxy.get("/h.jpg", headers={"Host": host})
        return r.headers["X-Cache"], await r.read()

    assert await get("a.example") == ("MISS", b"site a.example")
    await settled(proxy)
    assert await get("b.example") == ("MISS", b"site b.example")
    await settled(proxy)
    assert await get("a.example") == ("HIT", b"site a.example")
    assert await get("b.example") == ("HIT", b"site b.example")


# -- access control: every method, every spelling, fail closed ------------------------------


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "PROPFIND", "PATCH"])
async def test_protected_prefixes_guard_every_method(
        make_proxy: ProxyFactory, scripted: Scripted, method: str) -> None:
    proxy = await make_proxy(origin={"url": scripted.url}, auth=AUTH)
    r = await proxy.request(method, "/vault/doc.pdf", data=b"x")
    assert r.status == 401 and scripted.count("/vault/doc.pdf") == 0
    r = await proxy.request(method, signed("/vault/doc.pdf"), data=b"x")
    assert r.status == 200 and scripted.count("/vault/doc.pdf") == 1


@pytest.mark.parametrize("spelling", [
    "//vault/doc.pdf", "///vault/doc.pdf", "//vault//doc.pdf", "/vault;x/doc.pdf",
    "/vault;jsessionid=1/doc.pdf", "/VAULT/doc.pdf", "/Vault/doc.pdf", "/%76ault/doc.pdf",
    "/vault/./doc.pdf", "/x/../vault/doc.pdf", "/vault%2Fdoc.pdf",
])
async def test_protected_prefixes_cannot_be_stepped_around_by_spelling(
        make_proxy: ProxyFactory, scripted: Scripted, spelling: str) -> None:
    proxy = await make_proxy(origin={"url": scripted.url}, auth=AUTH)
    answer = await raw_request(proxy.port, f"GET {spelling} HTTP/1.1\r\nHost: x\r\n"
                                           "Connection: close\r\n\r\n", timeout=3)
    assert answer.split(b" ", 2)[1] in (b"400", b"401"), answer[:200]
    assert b"body of" not in answer and scripted.seen == []


@pytest.mark.parametrize(("values", "status"), [
    (["public", "protected"], 401), (["protected", "public"], 401),
    (["public, protected"], 401), (["Protected"], 401), (["secret"], 401), ([""], 401),
    (["public", "public"], 200), (["public"], 200), ([], 200),
])
async def test_the_origin_access_header_fails_closed(
        make_proxy: ProxyFactory, scripted: Scripted, values: list[str], status: int) -> None:
    def answer(request: web.Request) -> web.Response:
        response = web.Response(body=b"item", headers={"Cache-Control": "max-age=60"})
        for value in values:
            response.headers.add("X-Media-Access", value)
        return response

    scripted.routes["/i.pdf"] = answer
    proxy = await make_proxy(origin={"url": scripted.url},
                             auth={"keys": f"k1={SECRET}"})
    for _ in range(2):  # the miss, then the stored copy
        r = await proxy.get("/i.pdf")
        assert r.status == status
        await settled(proxy)


# -- behind a front: trusted proxies ---------------------------------------------------------


async def test_purge_needs_the_token_unless_a_network_is_trusted(
        make_proxy: ProxyFactory, scripted: Scripted) -> None:
    proxy = await make_proxy(origin={"url": scripted.url}, admin={"token": ADMIN_TOKEN})
    assert (await proxy.request("PURGE", "/a.jpg")).status == 403  # loopback is not enough
    r = await proxy.request("PURGE", "/a.jpg", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert r.status == 200


async def test_behind_a_trusted_front_the_real_client_decides(
        make_proxy: ProxyFactory, scripted: Scripted) -> None:
    proxy = await make_proxy(
        origin={"url": scripted.url}, auth=AUTH,
        server={"trusted_proxies": "127.0.0.1/32"},
        admin={"token": ADMIN_TOKEN, "purge_networks": "10.0.0.0/8"})
    # PURGE: the front's loopback address is not the client; the client behind it is.
    assert (await proxy.request("PURGE", "/a.jpg",
                                headers={"X-Forwarded-For": "203.0.113.5"})).status == 403
    assert (await proxy.request("PURGE", "/a.jpg",
                                headers={"X-Forwarded-For": "10.1.2.3"})).status == 200
    # A spoofed entry left of the front's is not the client either: the front appended.
    assert (await proxy.request("PURGE", "/a.jpg", headers={
        "X-Forwarded-For": "10.1.2.3, 203.0.113.5"})).status == 403
    # IP-bound tokens see the real client.
    url = signed("/vault/ip.pdf", ip="203.0.113.5")
    assert (await proxy.get(url, headers={"X-Forwarded-For": "203.0.113.5"})).status == 200
    assert (await proxy.get(url, headers={"X-Forwarded-For": "198.51.100.7"})).status == 403
    # And the origin hears of the whole chain, as the trusted front passed it on.
    assert scripted.headers_of("/vault/ip.pdf")[0]["x-forwarded-for"] == (
        "203.0.113.5, 127.0.0.1")


async def test_an_untrusted_peer_cannot_claim_an_address(
        make_proxy: ProxyFactory, scripted: Scripted) -> None:
    proxy = await make_proxy(origin={"url": scripted.url}, auth=AUTH,
                             admin={"token": ADMIN_TOKEN, "purge_networks": "10.0.0.0/8"},
                             server={"trusted_proxies": "192.0.2.0/24"})
    assert (await proxy.request("PURGE", "/a.jpg",
                                headers={"X-Forwarded-For": "10.1.2.3"})).status == 403
    url = signed("/vault/ip.pdf", ip="203.0.113.5")
    assert (await proxy.get(url, headers={"X-Forwarded-For": "203.0.113.5"})).status == 403


async def test_forwarded_header_as_the_real_ip_source(
        make_proxy: ProxyFactory, scripted: Scripted) -> None:
    proxy = await make_proxy(
        origin={"url": scripted.url},
        server={"trusted_proxies": "127.0.0.1/32", "real_ip_header": "Forwarded"},
        admin={"token": ADMIN_TOKEN, "purge_networks": "2001:db8::/32"})
    r = await proxy.request("PURGE", "/a.jpg",
                            headers={"Forwarded": 'for="[2001:db8::1]:4711";proto=https'})
    assert r.status == 200
    r = await proxy.request("PURGE", "/a.jpg", headers={"Forwarded": "for=unknown"})
    assert r.status == 403


# -- hygiene ---------------------------------------------------------------------------------


async def test_purging_a_signed_url_purges_the_object_and_keeps_the_signature_out(
        make_proxy: ProxyFactory, scripted: Scripted) -> None:
    proxy = await make_proxy(origin={"url": scripted.url}, auth=AUTH,
                             admin={"token": ADMIN_TOKEN})
    url = signed("/vault/p.pdf")
    assert (await proxy.get(url)).headers["X-Cache"] == "MISS"
    await settled(proxy)
    assert (await proxy.get(url)).headers["X-Cache"] == "HIT"
    r = await proxy.request("PURGE", url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    answer = await r.text()
    assert r.status == 200 and "sig=" not in answer and "/vault/p.pdf" in answer
    assert (await proxy.get(url)).headers["X-Cache"] == "MISS"
    bans = proxy.runtime.store.bans() if proxy.runtime.store else None
    assert bans is not None and all("sig=" not in ban.value for ban in bans.all)


async def test_session_fields_never_reach_the_origin_on_reads(
        make_proxy: ProxyFactory, scripted: Scripted) -> None:
    scripted.routes["/auth"] = lambda request: web.Response(status=204)
    scripted.routes["/nostore.jpg"] = lambda request: web.Response(
        body=b"x", headers={"Cache-Control": "no-store"})
    proxy = await make_proxy(origin={"url": scripted.url},
                             auth={"keys": f"k1={SECRET}", "callout_url": "/auth"})
    session = {"Cookie": "sid=secret-session", "Authorization": "Bearer secret-session"}
    assert (await proxy.head("/head.jpg", headers=session)).status == 200  # HEAD miss
    for _ in range(3):  # hit-for-pass reads after the first
        assert (await proxy.get("/nostore.jpg", headers=session)).status == 200
    sent = scripted.headers_of("/head.jpg") + scripted.headers_of("/nostore.jpg")
    assert len(sent) == 4
    assert not any("cookie" in h or "authorization" in h for h in sent)


@pytest.mark.parametrize("body", [
    "[" * 5_000 + "]" * 5_000,
    '{"url": "/a' + "\\ud800" + '"}',
    '{"prefix": "\\udfff/"}',
    '{"tag": "\\ud83d"}',
    '{"url": "http://[::1/a.jpg"}',  # urlsplit cannot split these (the attack review's)
    '{"prefix": "http://[x]/m/"}',
])
async def test_hostile_purge_json_gets_400(make_proxy: ProxyFactory, scripted: Scripted,
                                           body: str) -> None:
    from proxy.admin import create_admin_app

    proxy = await make_proxy(origin={"url": scripted.url}, admin={"token": ADMIN_TOKEN})
    runtime = proxy.runtime
    app = create_admin_app(runtime.config, runtime.metrics.registry, lambda: runtime.store)
    server = TestServer(app, host="127.0.0.1", port=free_port())
    await server.start_server()
    try:
        async with aiohttp.ClientSession() as session, session.post(
                str(server.make_url("/purge")), data=body.encode(),
                headers={"Authorization": f"Bearer {ADMIN_TOKEN}",
                         "Content-Type": "application/json"}) as r:
            assert r.status == 400, await r.text()
            assert json.loads(await r.text())["error"] in ("bad_json", "bad_purge")
    finally:
        await server.close()


async def test_slow_request_heads_are_cut(make_proxy: ProxyFactory, scripted: Scripted) -> None:
    proxy = await make_proxy(origin={"url": scripted.url},
                             server={"header_timeout_seconds": 0.5})
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        closed = False
        for piece in [b"GET /slow.jpg HTTP/1.1\r\n", *[b"X-A: b\r\n"] * 60]:
            try:
                writer.write(piece)
                await writer.drain()
            except ConnectionError:
                closed = True
                break
            try:
                if await asyncio.wait_for(reader.read(1), 0.1) == b"":
                    closed = True
                    break
            except TimeoutError:
                pass
        assert closed, "a head trickling in for 6 s was still being read"
    finally:
        writer.close()
    assert scripted.seen == []


async def test_cached_bodies_are_owner_only(make_proxy: ProxyFactory, scripted: Scripted,
                                            tmp_path: Path) -> None:
    proxy = await make_proxy(origin={"url": scripted.url})
    await (await proxy.get("/mode.jpg")).read()
    await settled(proxy)
    cache_dir = Path(proxy.runtime.config.cache.dir)
    assert stat.S_IMODE(cache_dir.stat().st_mode) == 0o700
    bodies = [p for p in cache_dir.rglob("*.val")]
    assert bodies and all(stat.S_IMODE(os.stat(p).st_mode) & 0o077 == 0 for p in bodies)
