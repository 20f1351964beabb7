"""Old revisions stay readable to running downloads and are dropped once the last one ends."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web
from pytest_aiohttp import AiohttpClient

from origin.app import FAULTS_KEY, create_app
from origin.db import MediaStore
from origin.faults import Fault
from origin.keys import LIBRARY_KEY
from tests.origin.origin_testing import ADMIN, TIMEOUT, Client, body_of, publish, sha256, wait_until

OLD = body_of(1 << 20, seed=1)
NEW = body_of(300_000, seed=2)


def _throttle(app: web.Application, path: str) -> None:
    # 1 MiB at 2 MiB/s: the download provably spans the publish below (~0.5 s).
    app[FAULTS_KEY].add(Fault(path_prefix=path, rate_bytes_per_second=2 << 20))


async def test_download_across_publish_gets_old_bytes_then_row_dropped(client: Client) -> None:
    old = await publish(client, "/v.mp4", OLD)
    _throttle(client.app, "/v.mp4")
    library = client.app[LIBRARY_KEY]
    async with client.get("/v.mp4") as resp:
        first = await resp.content.readexactly(65_536)
        old_id = library.store.history("/v.mp4")[0].id
        assert library.pins.readers(old_id) == 1

        new = await publish(client, "/v.mp4", NEW)
        assert new["revision"] == 2
        history = library.store.history("/v.mp4")
        assert [(r.revision, r.superseded) for r in history] == [(1, True), (2, False)]

        rest = await resp.read()
        assert resp.headers["ETag"] == old["etag"]
    assert sha256(first + rest) == sha256(OLD)

    await wait_until(lambda: [r.revision for r in library.store.history("/v.mp4")] == [2])
    assert library.pins.total_readers() == 0
    client.app[FAULTS_KEY].clear()
    async with client.get("/v.mp4") as resp:
        assert await resp.read() == NEW


async def test_download_across_delete_finishes(client: Client) -> None:
    await publish(client, "/v.mp4", OLD)
    _throttle(client.app, "/v.mp4")
    library = client.app[LIBRARY_KEY]
    async with client.get("/v.mp4") as resp:
        first = await resp.content.readexactly(1000)
        async with client.delete("/v.mp4", headers=ADMIN) as deleted:
            assert deleted.status == 204
        async with client.get("/v.mp4") as again:
            assert again.status == 404
        assert first + await resp.read() == OLD
    await wait_until(lambda: library.store.history("/v.mp4") == [])


async def test_client_leaving_mid_download_releases_the_revision(client: Client) -> None:
    await publish(client, "/v.mp4", OLD)
    _throttle(client.app, "/v.mp4")
    library = client.app[LIBRARY_KEY]
    resp = await client.get("/v.mp4")
    await resp.content.readexactly(1000)
    assert library.pins.total_readers() == 1
    resp.close()  # drops the connection
    await wait_until(lambda: library.pins.total_readers() == 0)
    await publish(client, "/v.mp4", NEW)
    await library.wait_for_drops()
    assert [r.revision for r in library.store.history("/v.mp4")] == [2]


async def test_start_up_drops_superseded_rows(
    aiohttp_client: AiohttpClient, tmp_path: Path
) -> None:
    db = tmp_path / "m.db"
    store = MediaStore(db)
    store.publish("/a", 3, [b"one"], content_type="text/plain")
    store.publish("/a", 3, [b"two"], content_type="text/plain")  # no app: nothing drops r1
    assert [r.superseded for r in store.history("/a")] == [True, False]
    store.close()

    client = await aiohttp_client(create_app(db, admin_token=None), timeout=TIMEOUT)
    assert [r.revision for r in client.app[LIBRARY_KEY].store.history("/a")] == [2]
    async with client.get("/a") as resp:
        assert await resp.read() == b"two"


async def test_concurrent_downloads_and_publishes_stay_consistent(client: Client) -> None:
    library = client.app[LIBRARY_KEY]
    bodies = [body_of(200_000 + i * 1000, seed=10 + i) for i in range(6)]
    await publish(client, "/hot", bodies[0])
    seen: set[str] = set()

    async def download(delay_seconds: float) -> None:
        await asyncio.sleep(delay_seconds)  # spread the downloads over the publishes
        async with client.get("/hot") as resp:
            data = await resp.read()
            # Whatever revision a download started on, it gets exactly that revision's bytes.
            assert sha256(data) == resp.headers["X-Content-SHA256"]
            seen.add(resp.headers["X-Media-Revision"])

    async def publisher() -> None:
        for body in bodies[1:]:
            await publish(client, "/hot", body)
            await asyncio.sleep(0.01)

    await asyncio.gather(publisher(), *(download(i * 0.01) for i in range(30)))
    await wait_until(lambda: library.pins.total_readers() == 0)
    await library.wait_for_drops()
    assert [r.revision for r in library.store.history("/hot")] == [6]
    assert len(seen) >= 2
