"""The admin API: auth, PUT (sized, chunked, broken), PATCH, DELETE, errors, the purge hook."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web
from pytest_aiohttp import AiohttpClient, AiohttpServer

from origin.app import STATS_KEY, create_app
from origin.keys import LIBRARY_KEY
from tests.origin.origin_testing import (
    ADMIN,
    ADMIN_TOKEN,
    TIMEOUT,
    Client,
    body_of,
    publish,
    sha256,
    wait_until,
)


async def test_admin_needs_the_token(client: Client) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": ADMIN_TOKEN}):
        async with client.put("/a", data=b"x", headers=headers) as resp:
            assert resp.status == 401
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
            assert "error" in await resp.json()
        async with client.delete("/a", headers=headers) as resp:
            assert resp.status == 401
    async with client.get("/a") as resp:
        assert resp.status == 404  # nothing was stored


async def test_admin_disabled_is_403(aiohttp_client: AiohttpClient, tmp_path: Path) -> None:
    client = await aiohttp_client(create_app(tmp_path / "m.db", admin_token=None), timeout=TIMEOUT)
    async with client.put("/a", data=b"x", headers=ADMIN) as resp:
        assert resp.status == 403
    async with client.post("/_origin/faults", json={}, headers=ADMIN) as resp:
        assert resp.status == 403


async def test_put_headers_set_access_and_cache_control(client: Client) -> None:
    headers = {
        "Content-Type": "image/png",
        "X-Media-Access": "protected",
        "X-Media-Cache-Control": "public, max-age=3600",
    }
    result = await publish(client, "/i.png", b"png", headers)
    assert result["access"] == "protected" and result["cache_control"] == "public, max-age=3600"
    async with client.get("/i.png") as resp:
        assert resp.headers["Content-Type"] == "image/png"
        assert resp.headers["X-Media-Access"] == "protected"
        assert resp.headers["Cache-Control"] == "public, max-age=3600"
    # A new revision without the headers keeps the item's policy.
    await publish(client, "/i.png", b"png2")
    async with client.get("/i.png") as resp:
        assert resp.headers["X-Media-Access"] == "protected"
        assert resp.headers["Cache-Control"] == "public, max-age=3600"


async def test_put_rejects_bad_access_header(client: Client) -> None:
    async with client.put("/a", data=b"x", headers={**ADMIN, "X-Media-Access": "secret"}) as resp:
        assert resp.status == 400
        assert "X-Media-Access" in (await resp.json())["error"]


async def test_patch_access_keeps_revision_and_etag(client: Client) -> None:
    result = await publish(client, "/a", b"body")
    async with client.patch("/a", json={"access": "protected"}, headers=ADMIN) as resp:
        assert resp.status == 200
        item = await resp.json()
    assert item["access"] == "protected" and item["etag"] == result["etag"]
    async with client.get("/a", headers={"If-None-Match": result["etag"]}) as resp:
        assert resp.status == 304
        assert resp.headers["X-Media-Access"] == "protected"
        assert resp.headers["X-Media-Revision"] == "1"


async def test_patch_cache_control_and_reset(client: Client) -> None:
    await publish(client, "/a", b"body")
    async with client.patch("/a", json={"cache_control": "no-cache"}, headers=ADMIN) as resp:
        assert (await resp.json())["cache_control"] == "no-cache"
    async with client.head("/a") as resp:
        assert resp.headers["Cache-Control"] == "no-cache"
    async with client.patch("/a", json={"cache_control": None}, headers=ADMIN) as resp:
        assert resp.status == 200
    async with client.head("/a") as resp:
        assert resp.headers["Cache-Control"] == "max-age=60"


async def test_patch_errors(client: Client) -> None:
    await publish(client, "/a", b"body")
    cases: list[tuple[str, bytes, int]] = [
        ("/a", b"{not json", 400),
        ("/a", b"[1, 2]", 400),
        ("/a", b"{}", 400),
        ("/a", json.dumps({"access": "secret"}).encode(), 400),
        ("/a", json.dumps({"colour": "red"}).encode(), 400),
        ("/a", json.dumps({"cache_control": "a\u0001b"}).encode(), 400),
        ("/missing", json.dumps({"access": "public"}).encode(), 404),
    ]
    for path, body, status in cases:
        async with client.patch(path, data=body, headers=ADMIN) as resp:
            assert resp.status == status, body
            assert resp.content_type == "application/json"
            assert (await resp.json())["error"]


async def test_delete_then_404_and_republish_continues_revisions(client: Client) -> None:
    await publish(client, "/a", b"one")
    async with client.delete("/a", headers=ADMIN) as resp:
        assert resp.status == 204
    async with client.get("/a") as resp:
        assert resp.status == 404
    async with client.delete("/a", headers=ADMIN) as resp:
        assert resp.status == 404
    async with client.put("/a", data=b"two", headers=ADMIN) as resp:
        assert resp.status == 201
        # Revision numbers never restart, so an old ETag never names new bytes.
        assert (await resp.json())["revision"] == 2


async def test_chunked_upload_is_spooled_and_stored(client: Client) -> None:
    body = body_of(700_000, seed=3)

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(body), 65_536):
            yield body[i : i + 65_536]

    async with client.put("/chunked", data=chunks(), headers=ADMIN) as resp:
        assert resp.status == 201
        result = await resp.json()
    assert result["size"] == len(body) and result["sha256"] == sha256(body)
    async with client.get("/chunked") as resp:
        assert await resp.read() == body


async def _raw_broken_put(client: Client, head: bytes, sent: bytes) -> None:
    _, writer = await asyncio.wait_for(
        asyncio.open_connection(client.server.host, client.server.port), 5
    )
    writer.write(head + sent)
    await writer.drain()
    await asyncio.sleep(0.1)  # let the origin start storing before the client vanishes
    writer.close()
    await writer.wait_closed()


async def test_broken_upload_stores_nothing(client: Client) -> None:
    head = (
        b"PUT /broken HTTP/1.1\r\nHost: origin\r\nContent-Length: 100000\r\n"
        b"Authorization: Bearer " + ADMIN_TOKEN.encode() + b"\r\n\r\n"
    )
    await _raw_broken_put(client, head, body_of(40_000))
    library = client.app[LIBRARY_KEY]
    stats = client.app[STATS_KEY]
    await wait_until(lambda: stats.status_count(499) + stats.status_count(400) == 1)
    async with client.get("/broken") as resp:
        assert resp.status == 404
    assert library.store.history("/broken") == []
    assert library.store.segment_count() == 0
    # The writer lock was released: the next upload goes through.
    await publish(client, "/broken", b"whole")


async def test_broken_chunked_upload_stores_nothing(client: Client) -> None:
    head = (
        b"PUT /broken HTTP/1.1\r\nHost: origin\r\nTransfer-Encoding: chunked\r\n"
        b"Authorization: Bearer " + ADMIN_TOKEN.encode() + b"\r\n\r\n"
    )
    await _raw_broken_put(client, head, b"1000\r\n" + body_of(4096) + b"\r\n")
    stats = client.app[STATS_KEY]
    await wait_until(lambda: stats.status_count(499) + stats.status_count(400) == 1)
    assert client.app[LIBRARY_KEY].store.history("/broken") == []


async def test_purge_hook_posts_each_change(
    aiohttp_client: AiohttpClient, aiohttp_server: AiohttpServer, tmp_path: Path
) -> None:
    received: list[tuple[str, dict[str, Any]]] = []

    async def purge(request: web.Request) -> web.Response:
        received.append((request.headers.get("Authorization", ""), await request.json()))
        return web.json_response({"ok": True})

    purge_app = web.Application()
    purge_app.router.add_post("/purge", purge)
    purger = await aiohttp_server(purge_app)
    app = create_app(
        tmp_path / "m.db",
        admin_token=ADMIN_TOKEN,
        purge_url=str(purger.make_url("/purge")),
        purge_token="purge-secret",
    )
    client = await aiohttp_client(app, timeout=TIMEOUT)
    await publish(client, "/media/a", b"x")
    async with client.patch("/media/a", json={"access": "protected"}, headers=ADMIN):
        pass
    async with client.delete("/media/a", headers=ADMIN):
        pass
    await wait_until(lambda: len(received) == 3)
    assert all(auth == "Bearer purge-secret" for auth, _ in received)
    assert [body for _, body in received] == [{"url": "/media/a"}] * 3


async def test_purge_failure_does_not_fail_the_publish(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    app = create_app(
        tmp_path / "m.db", admin_token=ADMIN_TOKEN, purge_url="http://127.0.0.1:1/purge"
    )
    client = await aiohttp_client(app, timeout=TIMEOUT)
    result = await publish(client, "/a", b"x")
    assert result["revision"] == 1
