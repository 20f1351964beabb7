"""Attacks that still work after the security change (#11), each against the real proxy and a
real HTTP origin. These tests FAIL on f7959d9 on purpose: each one is a hole to close.

1. `..;` segments: a dot segment in the spelling that servlet-style origins fold (`;params`
   dropped, then dots resolved), so `/x/..;/vault/doc.pdf` is `/vault/doc.pdf` at the origin
   but matches no protected prefix here; a prefix token for `/vault/alice/` also covers
   `/vault/alice/..;/bob/...`.
2. Variant poisoning: a request field the variant is named by, but that the origin never sees
   (removed because the client's `Connection` names it, or Unicode whitespace the variant
   normalisation folds), stores the origin's answer to another request under a victim's
   variant; with `origin.forward_host` that poisons another site's entries.
3. The origin's access header named by `no-cache="..."`: kept out of the stored entry as a
   per-client field, so a protected object is stored (and even first served) as public.
4. Hit-for-pass set by a request field: one request with `Cache-Control: no-store` makes every
   client of that URL go to the origin uncached for 30 s.
5. Purge JSON whose URL `urllib.parse.urlsplit` cannot split (`http://[::1/a`): 500, not 400.
"""

from __future__ import annotations

import pytest
from aiohttp import web

from tests.conftest import ProxyFactory, raw_request
from tests.integration.scripted_http import Scripted
from tests.integration.test_proxy import settled
from tests.integration.test_security import AUTH, SECRET, signed

VAULT_SECRET = b"the protected document"


def servlet_fold(path: str) -> str:
    """What a servlet container (Tomcat, Jetty) serves for `path`: `;params` dropped from each
    segment, then dot segments resolved (the `..;/` traversal of CVE-2018-1271 and kin)."""
    out: list[str] = []
    for segment in path.split("/"):
        segment = segment.split(";", 1)[0]
        if segment == "..":
            if len(out) > 1:
                out.pop()
        elif segment != ".":
            out.append(segment)
    return "/".join(out) or "/"


def servlet_origin(scripted: Scripted, paths: list[str]) -> None:
    """Answer each of `paths` as a servlet container would: by its folded path."""
    def answer(request: web.Request) -> web.Response:
        real = servlet_fold(request.path)
        body = VAULT_SECRET if real.startswith("/vault/") else b"public " + real.encode()
        return web.Response(body=body, headers={"Cache-Control": "max-age=60"})

    for path in paths:
        scripted.routes[path] = answer


# -- 1. `..;` steps around protected prefixes and prefix tokens -------------------------------


@pytest.mark.parametrize("spelling", [
    "/x/..;/vault/doc.pdf",
    "/x/%2e%2e;/vault/doc.pdf",
    "/x/..;jsessionid=1/vault/doc.pdf",
    "/public/..;/vault/doc.pdf",
])
async def test_dot_dot_semicolon_cannot_step_around_a_protected_prefix(
        make_proxy: ProxyFactory, scripted: Scripted, spelling: str) -> None:
    decoded = spelling.replace("%2e", ".")
    servlet_origin(scripted, [decoded])
    proxy = await make_proxy(origin={"url": scripted.url},
                             auth={**AUTH, "public_prefixes": "/public/"})
    answer = await raw_request(proxy.port, f"GET {spelling} HTTP/1.1\r\nHost: x\r\n"
                                           "Connection: close\r\n\r\n", timeout=3)
    assert VAULT_SECRET not in answer, answer[:300]
    assert answer.split(b" ", 2)[1] in (b"400", b"401"), answer[:200]
    assert scripted.seen == []


async def test_a_prefix_token_cannot_reach_outside_its_prefix_by_dot_dot_semicolon(
        make_proxy: ProxyFactory, scripted: Scripted) -> None:
    servlet_origin(scripted, ["/vault/alice/..;/bob/doc.pdf"])
    proxy = await make_proxy(origin={"url": scripted.url}, auth=AUTH)
    token = signed("/vault/alice/", prefix=True).partition("?")[2]
    r = await proxy.get(f"/vault/alice/..;/bob/doc.pdf?{token}")
    assert r.status in (400, 403), (r.status, await r.read())
    assert scripted.seen == []


# -- 2. variants named by a value the origin never saw ----------------------------------------


def greeting(request: web.Request) -> web.Response:
    language = request.headers.get("Accept-Language")
    body = b"bonjour" if language == "fr" else b"hello"
    return web.Response(body=body, headers={"Vary": "Accept-Language",
                                            "Cache-Control": "max-age=60"})


@pytest.mark.parametrize("poison", [
    "Accept-Language: fr\r\nConnection: keep-alive, Accept-Language",  # dropped as hop-by-hop
    "Accept-Language: fr\xc2\xa0",  # U+00A0: folded away by the variant, not by the origin
])
async def test_a_variant_is_never_stored_from_a_request_the_origin_saw_differently(
        make_proxy: ProxyFactory, scripted: Scripted, poison: str) -> None:
    scripted.routes["/hello.txt"] = greeting
    proxy = await make_proxy(origin={"url": scripted.url})
    # The attacker's request first: the entry for French speakers is not there yet.
    await raw_request(proxy.port, f"GET /hello.txt HTTP/1.1\r\nHost: x\r\n{poison}\r\n\r\n",
                      timeout=2)
    await settled(proxy)
    # Every French speaker after it.
    for _ in range(2):
        r = await proxy.get("/hello.txt", headers={"Accept-Language": "fr"})
        assert await r.read() == b"bonjour", r.headers.get("X-Cache")
        await settled(proxy)


async def test_with_forward_host_one_site_cannot_poison_another(
        make_proxy: ProxyFactory, scripted: Scripted) -> None:
    scripted.routes["/home.html"] = lambda request: web.Response(
        body=f"site {request.host}".encode(), headers={"Cache-Control": "max-age=60"})
    proxy = await make_proxy(origin={"url": scripted.url, "forward_host": True})
    await raw_request(proxy.port, "GET /home.html HTTP/1.1\r\nHost: victim.example\r\n"
                                  "Connection: close, Host\r\n\r\n", timeout=2)
    await settled(proxy)
    r = await proxy.get("/home.html", headers={"Host": "victim.example"})
    assert await r.read() == b"site victim.example", r.headers.get("X-Cache")


# -- 3. the access header must never be a per-client field ------------------------------------


async def test_an_access_header_named_by_no_cache_still_protects(
        make_proxy: ProxyFactory, scripted: Scripted) -> None:
    scripted.routes["/paid.mp4"] = lambda request: web.Response(
        body=VAULT_SECRET, headers={
            "X-Media-Access": "protected", "ETag": '"p1"',
            # "Re-check the access field with me before reusing it": a reasonable thing for
            # an origin whose access can change to say.
            "Cache-Control": 'max-age=600, no-cache="X-Media-Access"'})
    proxy = await make_proxy(origin={"url": scripted.url}, auth={"keys": f"k1={SECRET}"})
    for _ in range(3):  # the miss that fills it, then disk, then the memory tier
        r = await proxy.get("/paid.mp4")  # nobody else may have it without a token
        assert r.status == 401 and VAULT_SECRET not in await r.read(), r.headers.get("X-Cache")
        await settled(proxy)
    r = await proxy.get(signed("/paid.mp4"))
    assert r.status == 200 and await r.read() == VAULT_SECRET


async def test_a_304_naming_the_access_header_keeps_the_object_protected(
        make_proxy: ProxyFactory, scripted: Scripted) -> None:
    def answer(request: web.Request) -> web.Response:
        if request.headers.get("If-None-Match") == '"p1"':
            return web.Response(status=304, headers={
                "ETag": '"p1"', "Cache-Control": 'max-age=600, no-cache="X-Media-Access"'})
        return web.Response(body=VAULT_SECRET, headers={
            "X-Media-Access": "protected", "ETag": '"p1"', "Cache-Control": "max-age=0"})

    scripted.routes["/paid2.mp4"] = answer
    proxy = await make_proxy(origin={"url": scripted.url}, auth={"keys": f"k1={SECRET}"})
    assert (await proxy.get(signed("/paid2.mp4"))).status == 200
    await settled(proxy)
    r = await proxy.get(signed("/paid2.mp4"))  # stale: revalidated by a paying client
    assert r.status == 200 and r.headers["X-Cache"] == "REVALIDATED"
    r = await proxy.get("/paid2.mp4")
    assert r.status == 401 and VAULT_SECRET not in await r.read(), r.headers.get("X-Cache")


# -- 4. hit-for-pass must come from the response, never from a request field ------------------


@pytest.mark.parametrize("field", [("Cache-Control", "no-store"),
                                   ("Authorization", "Basic eDp4")])
async def test_one_request_cannot_turn_off_caching_of_a_url_for_everyone(
        make_proxy: ProxyFactory, scripted: Scripted, field: tuple[str, str]) -> None:
    proxy = await make_proxy(origin={"url": scripted.url})
    r = await proxy.get("/hot.mp4", headers=dict([field]))  # the attacker, once
    assert r.status == 200
    await settled(proxy)
    for _ in range(5):  # everyone else: one fill, then hits
        r = await proxy.get("/hot.mp4")
        assert r.status == 200
        await r.read()
        await settled(proxy)
    assert scripted.count("/hot.mp4") == 2  # the attacker's fetch and one fill
