"""A client that has received a whole body finds its entry stored: the end of a fill's body
is held back until the entry is verified and committed, so the next request (this client's
or anyone's) is a hit or a revalidation, never a second fetch. (The conformance suite sends
its second request within milliseconds of the first response's last byte.)"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from tests.conftest import ProxyFactory, serving


@pytest.fixture
async def varying() -> AsyncIterator[tuple[str, list[str]]]:
    calls: list[str] = []

    async def serve(request: web.Request) -> web.Response:
        calls.append(request.headers.get("If-None-Match", "-"))
        if request.headers.get("If-None-Match") == '"v"':
            return web.Response(status=304, headers={"ETag": '"v"',
                                                     "Cache-Control": "max-age=600"})
        return web.Response(body=b"x" * 5000, headers={
            "Cache-Control": "max-age=600", "ETag": '"v"', "Vary": "Foo"})

    async with serving(serve) as url:
        yield url, calls


async def test_the_next_request_finds_the_entry(
        make_proxy: ProxyFactory, varying: tuple[str, list[str]]) -> None:
    url, calls = varying
    proxy = await make_proxy(origin={"url": url})
    for i in range(20):
        first = await proxy.get(f"/v{i}", headers={"Foo": "1", "Other": "2"})
        assert first.headers["X-Cache"] == "MISS" and len(await first.read()) == 5000
        second = await proxy.get(f"/v{i}", headers={"Foo": "1", "Other": "3"})
        assert second.headers["X-Cache"] == "HIT", i
        assert await second.read() == b"x" * 5000
        third = await proxy.get(f"/v{i}", headers={"Foo": "1", "Cache-Control": "no-cache"})
        assert third.headers["X-Cache"] == "REVALIDATED", i
    assert calls.count("-") == 20 and calls.count('"v"') == 20
