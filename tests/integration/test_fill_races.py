"""Races around a running fill: a variant's body is never stored under another variant's
headers, and only requests allowed to reuse a response join the fill storing it."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from tests.conftest import ProxyFactory, serving
from tests.integration.test_proxy import settled

SIZE = 12 * 1024 * 1024
CHUNK = 256 * 1024


def body_for(tag: str) -> bytes:
    seed = hashlib.sha256(tag.encode()).digest()
    return (seed * (SIZE // len(seed) + 1))[:SIZE]


class SlowOrigin:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, str]]] = []
        self.url = ""
        self.cache_control = "max-age=600"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.calls.append((request.path, dict(request.headers)))
        tag = request.headers.get("Foo", "none")
        response = web.StreamResponse(headers={
            "Cache-Control": self.cache_control, "ETag": f'"{tag}"', "Vary": "Foo",
            "Content-Length": str(SIZE), "Content-Type": "video/mp4"})
        await response.prepare(request)
        body = body_for(tag)
        for offset in range(0, SIZE, CHUNK):  # ~12 MB/s: a fill lasts about a second
            await response.write(body[offset:offset + CHUNK])
            await asyncio.sleep(0.02)
        await response.write_eof()
        return response


@pytest.fixture
async def slow() -> AsyncIterator[SlowOrigin]:
    origin = SlowOrigin()
    async with serving(origin.handle) as url:
        origin.url = url
        yield origin


async def read_some_and_leave(port: int, path: str, foo: str, limit: int) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nFoo: {foo}\r\n\r\n".encode())
    await writer.drain()
    got = 0
    while got < limit:
        chunk = await asyncio.wait_for(reader.read(65536), 10)
        if not chunk:
            break
        got += len(chunk)
    writer.transport.abort()  # as a media player seeking away does
    return got


async def test_a_variant_is_never_stored_with_another_variants_body(
        make_proxy: ProxyFactory, slow: SlowOrigin) -> None:
    proxy = await make_proxy(origin={"url": slow.url})
    await read_some_and_leave(proxy.port, "/v.mp4", "a", 1024 * 1024)
    await asyncio.sleep(0.1)  # the first client is gone; its fill (variant a) runs on
    r = await proxy.get("/v.mp4", headers={"Foo": "b"})
    assert r.headers["ETag"] == '"b"' and await r.read() == body_for("b")
    await settled(proxy)
    for tag in ("a", "b", "a", "b"):
        r = await proxy.get("/v.mp4", headers={"Foo": tag})
        assert r.headers["ETag"] == f'"{tag}"'
        assert await r.read() == body_for(tag), f"variant {tag} got another body"
        await settled(proxy)


@pytest.mark.parametrize("request_cc", ["no-cache", "max-age=0", "min-fresh=3600"])
async def test_requests_that_may_not_reuse_do_not_join_a_fill(
        make_proxy: ProxyFactory, slow: SlowOrigin, request_cc: str) -> None:
    proxy = await make_proxy(origin={"url": slow.url})
    first = asyncio.ensure_future(proxy.get("/j.mp4", headers={"Foo": "a"}))
    while not proxy.runtime.proxy.fills:
        await asyncio.sleep(0.005)
    strict = await proxy.get("/j.mp4", headers={"Foo": "a", "Cache-Control": request_cc})
    assert strict.headers["X-Cache"] != "HIT" and await strict.read() == body_for("a")
    joined = await proxy.get("/j.mp4", headers={"Foo": "a"})
    assert joined.headers["X-Cache"] == "HIT" and await joined.read() == body_for("a")
    assert await (await first).read() == body_for("a")
    assert len(slow.calls) == 2  # the fill, and the request that could not reuse it


@pytest.mark.parametrize("response_cc", ["no-cache", "max-age=0"])
async def test_responses_stale_on_arrival_are_not_joined(
        make_proxy: ProxyFactory, slow: SlowOrigin, response_cc: str) -> None:
    slow.cache_control = response_cc
    proxy = await make_proxy(origin={"url": slow.url})
    first = asyncio.ensure_future(proxy.get("/k.mp4", headers={"Foo": "a"}))
    while not proxy.runtime.proxy.fills:
        await asyncio.sleep(0.005)
    second = await proxy.get("/k.mp4", headers={"Foo": "a"})
    assert second.headers["X-Cache"] != "HIT" and await second.read() == body_for("a")
    assert await (await first).read() == body_for("a")
    assert len(slow.calls) == 2
