"""Purge by URL, prefix, tag and everything; soft purge; purge during a fill and a stream."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from origin.app import STATS_KEY
from tests.conftest import TIMEOUT, Origin, ProxyFactory, serving, start_admin
from tests.integration.test_proxy import settled

TOKEN = "purge-token-0123456789"


class Node:
    def __init__(self, proxy: Any, admin: TestClient[Any, Any]) -> None:
        self.proxy, self.admin = proxy, admin

    async def purge(self, token: str | None = TOKEN, **body: Any) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        r = await self.admin.post("/purge", json=body, headers=headers)
        return r.status, await r.json()

    async def get(self, path: str, **headers: str) -> tuple[str, bytes]:
        r = await self.proxy.get(path, headers=headers)
        return r.headers["X-Cache"], await r.read()


async def start_node(make_proxy: ProxyFactory, **sections: Any) -> Node:
    admin_section = {"token": TOKEN, **sections.pop("admin", {})}
    # A ban retires 2 x the memory tier's TTL + 1 s after it was made: 1 s TTL keeps it short.
    proxy = await make_proxy(admin=admin_section, cache={"eviction_interval_seconds": 0.05,
                                                         "memory_ttl_seconds": 1.0},
                             **sections)
    return Node(proxy, await start_admin(proxy))


@pytest.fixture
async def node(make_proxy: ProxyFactory) -> AsyncIterator[Node]:
    started = await start_node(make_proxy)
    yield started
    await started.admin.close()


async def prime(node: Node, origin: Origin, paths: dict[str, bytes], **headers: str) -> None:
    for path, body in paths.items():
        await origin.publish(path, body, **headers)
        assert (await node.get(path))[1] == body
    await settled(node.proxy)
    for path in paths:
        assert (await node.get(path))[0] == "HIT"


async def test_purge_needs_the_token(node: Node) -> None:
    assert (await node.purge(token=None, url="/x"))[0] == 401
    assert (await node.purge(token="wrong-token-wrong-token", url="/x"))[0] == 401


@pytest.mark.parametrize("body", [{}, {"url": ""}, {"url": 5}, {"all": "yes"},
                                  {"url": "/a", "prefix": "/b"}, {"tag": "a b"},
                                  {"url": "/a/../b"}, {"url": "/a", "soft": "x"}])
async def test_bad_purge_requests_are_400(node: Node, body: dict[str, Any]) -> None:
    status, answer = await node.purge(**body)
    assert status == 400 and answer["error"] == "bad_purge"


async def test_purge_by_url_is_immediate(node: Node, origin: Origin) -> None:
    await prime(node, origin, {"/p/a.bin": b"a" * 1000, "/p/b.bin": b"b" * 1000})
    status, answer = await node.purge(url="http://media.example/p/a.bin")
    assert status == 200 and answer["kind"] == "exact" and answer["value"] == "/p/a.bin"
    assert answer["nodes"][0]["applied"] is True
    assert (await node.get("/p/a.bin"))[0] == "MISS"
    assert (await node.get("/p/b.bin"))[0] == "HIT"


async def test_purge_by_prefix_and_the_sweep_retires_the_ban(
    node: Node, origin: Origin
) -> None:
    paths = {f"/campaign/{i}.jpg": os.urandom(2000) for i in range(20)}
    paths["/other/keep.jpg"] = b"keep"
    await prime(node, origin, paths)
    store = node.proxy.runtime.store
    status, _ = await node.purge(prefix="/campaign/")
    assert status == 200
    assert (await node.get("/campaign/3.jpg"))[0] == "MISS", "purged at once"
    assert (await node.get("/other/keep.jpg"))[0] == "HIT", "other prefixes untouched"
    await settled(node.proxy)
    for _ in range(600):  # retired after the sweep and the memory tiers' TTL (2 x 1 s + 1 s)
        if not store.bans().all:
            break
        await asyncio.sleep(0.05)
    assert not store.bans().all, "the ban is retired after its sweep"
    assert store.count_prefix("/campaign/") == 1, "only the one refetched after the purge"
    assert (await node.get("/campaign/4.jpg"))[0] == "MISS", "swept entries stay gone"
    await settled(node.proxy)
    assert (await node.get("/campaign/4.jpg"))[0] == "HIT"


@pytest.fixture
async def tagging_origin() -> AsyncIterator[str]:
    """A small real origin that tags its responses the way a CMS would (Surrogate-Key)."""
    tags = {"/t/a.jpg": "product-7 campaign-1", "/t/b.jpg": "product-8 campaign-1",
            "/t/c.jpg": "product-7", "/t/none.jpg": ""}

    async def serve(request: web.Request) -> web.Response:
        headers = {"Cache-Control": "max-age=600", "ETag": '"1"'}
        if tags.get(request.path):
            headers["Surrogate-Key"] = tags[request.path]
        return web.Response(body=request.path.encode() * 10, headers=headers)

    async with serving(serve) as url:
        yield url


async def test_purge_by_tag(make_proxy: ProxyFactory, tagging_origin: str) -> None:
    node = await start_node(make_proxy, origin={"url": tagging_origin})
    try:
        paths = ["/t/a.jpg", "/t/b.jpg", "/t/c.jpg", "/t/none.jpg"]
        for path in paths:
            r = await node.proxy.get(path)
            assert "Surrogate-Key" not in r.headers  # stripped for clients by default
            await r.read()
        await settled(node.proxy)
        assert [(await node.get(p))[0] for p in paths] == ["HIT"] * 4
        status, answer = await node.purge(tag="product-7")
        assert status == 200 and answer["kind"] == "tag"
        assert [(await node.get(p))[0] for p in paths] == ["MISS", "HIT", "MISS", "HIT"]
        await settled(node.proxy)
        assert (await node.purge(tag="campaign-1"))[0] == 200
        assert [(await node.get(p))[0] for p in paths] == ["MISS", "MISS", "HIT", "HIT"]
    finally:
        await node.admin.close()


async def test_purge_all(node: Node, origin: Origin) -> None:
    await prime(node, origin, {"/x/1": b"1", "/y/2": b"2"})
    status, answer = await node.purge(all=True)
    assert status == 200 and answer["kind"] == "all"
    assert (await node.get("/x/1"))[0] == "MISS"
    assert (await node.get("/y/2"))[0] == "MISS"


async def test_soft_purge_revalidates_with_a_304(node: Node, origin: Origin) -> None:
    await prime(node, origin, {"/s/a.bin": b"s" * 5000})
    before = origin.count("/s/a.bin")
    status, answer = await node.purge(prefix="/s/", soft=True)
    assert status == 200 and answer["soft"] is True
    cache_status, body = await node.get("/s/a.bin")
    assert cache_status == "REVALIDATED" and body == b"s" * 5000
    assert origin.count("/s/a.bin") == before + 1
    assert origin.app[STATS_KEY].status_count(304) >= 1
    assert (await node.get("/s/a.bin"))[0] == "HIT"


async def test_purge_during_a_fill_is_not_undone_by_the_fill(node: Node, origin: Origin) -> None:
    body = os.urandom(2_000_000)
    await origin.publish("/f/movie.mp4", body)
    await origin.fault(path_prefix="/f/", rate_bytes_per_second=2_000_000)
    reader = asyncio.create_task(node.proxy.get("/f/movie.mp4"))
    await asyncio.sleep(0.3)  # the fill is under way
    assert (await node.purge(url="/f/movie.mp4"))[0] == 200
    response = await reader
    assert await response.read() == body  # the stream that began before the purge completes
    await settled(node.proxy)
    store = node.proxy.runtime.store
    assert store.lookup("/f/movie.mp4") is None, "the fill was not committed over the purge"
    assert (await node.get("/f/movie.mp4"))[0] == "MISS"


async def test_purge_during_a_stream_lets_the_stream_finish(node: Node, origin: Origin) -> None:
    body = os.urandom(30_000_000)
    await prime(node, origin, {"/st/big.bin": body})
    async with (
        aiohttp.ClientSession(timeout=TIMEOUT) as session,
        session.get(str(node.proxy.make_url("/st/big.bin"))) as r,
    ):
        first = await r.content.readexactly(1_000_000)
        assert (await node.purge(url="/st/big.bin"))[0] == 200
        await asyncio.sleep(0.3)  # the sweep deletes the entry meanwhile
        rest = await r.read()
    assert first + rest == body
    assert (await node.get("/st/big.bin"))[0] == "MISS"


async def test_purge_method_from_allowed_network(make_proxy: ProxyFactory,
                                                 origin: Origin) -> None:
    node = await start_node(make_proxy, admin={"purge_networks": "127.0.0.1/32"})
    try:
        await prime(node, origin, {"/pm/a": b"a"})
        r = await node.proxy.request("PURGE", "/pm/a")
        assert r.status == 200 and (await r.json())["value"] == "/pm/a"
        assert (await node.get("/pm/a"))[0] == "MISS"
    finally:
        await node.admin.close()


async def test_purge_method_refused_elsewhere(make_proxy: ProxyFactory, origin: Origin) -> None:
    proxy = await make_proxy(admin={"token": TOKEN, "purge_networks": "10.0.0.0/8"})
    r = await proxy.request("PURGE", "/pm/a")
    assert r.status == 403
    r = await proxy.request("PURGE", "/pm/a", headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status == 200
