"""The admin console over HTTP against a real proxy and store: what a browser cannot be trusted
to check for us. Security headers on every answer, sign-in, CSRF and cross-site refusals, the
throttle, escaping of what the cache holds, and sessions ended by sign-out."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from proxy.console.sessions import COOKIE, MAX_FAILURES
from tests.conftest import Origin, ProxyClient, ProxyFactory, serving, start_admin
from tests.integration.test_proxy import settled

TOKEN = "console-token-0123456789"


@dataclass
class Console:
    proxy: ProxyClient
    admin: TestClient  # type: ignore[type-arg]

    async def sign_in(self, token: str = TOKEN) -> tuple[dict[str, str], str]:
        """-> (the session's Cookie header, its CSRF token)."""
        r = await self.admin.post("/console/login", data={"token": token},
                                  allow_redirects=False)
        assert r.status == 303, await r.text()
        assert r.headers["Location"] == "/console/"
        cookie = {"Cookie": f"{COOKIE}={r.cookies[COOKIE].value}"}
        page = await (await self.admin.get("/console/purge", headers=cookie)).text()
        found = re.search(r'name="csrf" value="([^"]+)"', page)
        assert found is not None, page
        return cookie, found.group(1)


async def start_console(make_proxy: ProxyFactory, **sections: Any) -> Console:
    proxy = await make_proxy(admin={"token": TOKEN}, cache={"eviction_interval_seconds": 0.05},
                             **sections)
    # Cookies only where a test sends them.
    admin = await start_admin(proxy, cookie_jar=aiohttp.DummyCookieJar())
    return Console(proxy, admin)


@pytest.fixture
async def console(make_proxy: ProxyFactory) -> AsyncIterator[Console]:
    started = await start_console(make_proxy)
    yield started
    await started.admin.close()


@pytest.fixture
async def hostile_origin() -> AsyncIterator[str]:
    """A real origin whose tags and validators are markup."""

    async def serve(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 10, headers={
            "Cache-Control": "max-age=600", "ETag": '"<b>bold</b>"',
            "Surrogate-Key": "<img/src/onerror=alert(1)>"})

    async with serving(serve) as url:
        yield url


async def test_every_answer_is_no_store_unframeable_and_script_from_self_only(
        console: Console) -> None:
    for path in ("/", "/console"):
        r = await console.admin.get(path, allow_redirects=False)
        assert (r.status, r.headers["Location"]) == (302, "/console/")
    cookie, _ = await console.sign_in()
    for path, status in (("/console/login", 200), ("/console/", 303), ("/console/purge", 303),
                         ("/console/static/console.js", 200), ("/console/nothing", 303),
                         ("/console/purges/unknown", 303)):
        r = await console.admin.get(path, allow_redirects=False)
        assert r.status == status, path
        assert r.headers["Cache-Control"] == "no-store"
        assert r.headers["X-Frame-Options"] == "DENY"
        csp = r.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
    for path in ("/console/nothing", "/console/purges/unknown"):
        r = await console.admin.get(path, headers=cookie)
        assert r.status == 404 and r.headers["Cache-Control"] == "no-store"
    page = await (await console.admin.get("/console/", headers=cookie)).text()
    assert "<script src=\"/console/static/console.js\"" in page
    assert "<script>" not in page and " style=" not in page and "http" not in page.split(
        "<body>")[1]  # no inline script or style, no asset from elsewhere
    r = await console.admin.get("/console/api/overview")
    assert r.status == 401 and (await r.json())["error"] == "unauthorized"


async def test_the_session_cookie_is_httponly_samesite_strict_and_ends_at_sign_out(
        console: Console) -> None:
    r = await console.admin.post("/console/login", data={"token": TOKEN},
                                 allow_redirects=False)
    morsel = r.cookies[COOKIE]
    assert morsel["httponly"] and morsel["samesite"] == "Strict"
    assert morsel["path"] == "/console/"
    cookie = {"Cookie": f"{COOKIE}={morsel.value}"}
    page = await (await console.admin.get("/console/purge", headers=cookie)).text()
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    assert csrf is not None
    r = await console.admin.post("/console/logout", data={"csrf": csrf.group(1)},
                                 headers=cookie, allow_redirects=False)
    assert (r.status, r.headers["Location"]) == (303, "/console/login")
    r = await console.admin.get("/console/", headers=cookie, allow_redirects=False)
    assert (r.status, r.headers["Location"]) == (303, "/console/login")


async def test_a_purge_without_the_csrf_token_or_from_another_site_is_refused(
        console: Console, origin: Origin) -> None:
    await origin.publish("/k/a.bin", b"a" * 100)
    await console.proxy.get("/k/a.bin")
    await settled(console.proxy)
    cookie, csrf = await console.sign_in()
    form = {"kind": "prefix", "value": "/k/", "confirm": "1"}
    for data, headers in (
            (form, cookie),  # no CSRF token
            ({**form, "csrf": csrf + "x"}, cookie),  # a wrong one
            ({**form, "csrf": csrf}, {**cookie, "Origin": "http://attacker.example"})):
        r = await console.admin.post("/console/purge", data=data, headers=headers,
                                     allow_redirects=False)
        assert r.status == 403
    assert (await console.proxy.get("/k/a.bin")).headers["X-Cache"] == "HIT"  # not purged
    # Without a session, the same form only leads to the sign-in page.
    r = await console.admin.post("/console/purge", data={**form, "csrf": csrf},
                                 allow_redirects=False)
    assert (r.status, r.headers["Location"]) == (303, "/console/login")
    r = await console.admin.post("/console/purge", data={**form, "csrf": csrf}, headers=cookie,
                                 allow_redirects=False)
    assert r.status == 303 and r.headers["Location"].startswith("/console/purges/")
    assert (await console.proxy.get("/k/a.bin")).headers["X-Cache"] == "MISS"


async def test_refused_tokens_lock_the_address_out(console: Console) -> None:
    refused = await asyncio.gather(*(
        console.admin.post("/console/login", data={"token": f"guess-{i}"})
        for i in range(MAX_FAILURES)))
    assert [r.status for r in refused] == [401] * MAX_FAILURES
    assert all(COOKIE not in r.cookies for r in refused)
    r = await console.admin.post("/console/login", data={"token": TOKEN},
                                 allow_redirects=False)
    assert r.status == 429 and int(r.headers["Retry-After"]) > 0  # even the right token
    assert COOKIE not in r.cookies


async def test_what_the_cache_holds_and_what_is_typed_is_escaped_on_the_page(
        make_proxy: ProxyFactory, hostile_origin: str) -> None:
    console = await start_console(make_proxy, origin={"url": hostile_origin})
    try:
        await check_escaping(console)
    finally:
        await console.admin.close()


async def check_escaping(console: Console) -> None:
    await (await console.proxy.get("/e/a.bin")).read()
    await settled(console.proxy)
    cookie, csrf = await console.sign_in()
    page = await (await console.admin.get("/console/lookup", params={"url": "/e/a.bin"},
                                          headers=cookie)).text()
    assert "Cached: 1 variant(s)" in page
    assert "&lt;img/src/onerror=alert(1)&gt;" in page and "<img" not in page
    assert "&quot;&lt;b&gt;bold&lt;/b&gt;&quot;" in page and "<b>" not in page
    page = await (await console.admin.get("/console/lookup", params={"url": '"><i>x</i>'},
                                          headers=cookie)).text()
    assert 'value="&quot;&gt;&lt;i&gt;x&lt;/i&gt;"' in page and "<i>" not in page
    r = await console.admin.post("/console/purge", headers=cookie, data={
        "csrf": csrf, "kind": "tag", "value": '"><script>alert(1)</script>'})
    page = await r.text()  # a valid tag (no space): the preview echoes it
    assert r.status == 200 and "Confirm purge" in page
    assert "&quot;&gt;&lt;script&gt;" in page and "<script>alert" not in page
    r = await console.admin.post("/console/purge", headers=cookie, data={
        "csrf": csrf, "kind": "tag", "value": '"><script>alert(1) </script>'})
    page = await r.text()  # refused (a space), and the form keeps what was typed
    assert r.status == 400 and "tag: one tag, no spaces" in page
    assert "&quot;&gt;&lt;script&gt;" in page and "<script>alert" not in page
