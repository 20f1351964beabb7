"""Image conversions over HTTP: `GET /path/original.jpg?preset=thumb` through the real proxy
(its own listener serving the original to the conversion path) in front of the reference
origin, with images generated here by pyvips and converted by the real pool."""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pyvips
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from proxy import config as config_mod
from proxy.admin import create_admin_app
from proxy.app import PublicApp
from proxy.policy import images
from proxy.signing import sign_url
from tests.conftest import TIMEOUT, Clock, Origin, ProxyClient, ProxyTestServer, free_port
from tests.unit.test_images_engine import png_bomb, rgb

ADMIN = "images-admin-token-0123456789"
SECRET = "s3cret-images-0123456789abcdef"
PRESETS = {
    "thumb": {"width": 64, "height": 64, "fit": "cover", "format": "auto"},
    "square": {"width": 32, "height": 32, "fit": "cover", "format": "png"},
}


def jpeg(shade: int = 90) -> bytes:
    image = rgb(400, 300)
    return bytes((image * (shade / 90)).cast("uchar").write_to_buffer(".jpg", Q=90))


def size_of(body: bytes) -> tuple[int, int]:
    image = pyvips.Image.new_from_buffer(body, "")
    return image.width, image.height


class Node:
    def __init__(self, proxy: ProxyClient, admin: TestClient[Any, Any]) -> None:
        self.proxy, self.admin = proxy, admin

    async def get(self, target: str, **headers: str) -> aiohttp.ClientResponse:
        r = await self.proxy.get(target, headers=headers)
        await r.read()
        return r

    async def purge(self, **body: Any) -> int:
        r = await self.admin.post("/purge", json=body,
                                  headers={"Authorization": f"Bearer {ADMIN}"})
        await r.read()
        return r.status

    def conversions(self, preset: str, fmt: str) -> float:
        value = self.proxy.runtime.metrics.registry.get_sample_value(
            "mediaproxy_image_conversions_total",
            {"preset": preset, "format": fmt, "outcome": "ok"})
        return value or 0.0


NodeFactory = Callable[..., Awaitable[Node]]


@pytest.fixture
async def make_node(tmp_path: Path, origin: Origin, clock: Clock) -> AsyncIterator[NodeFactory]:
    nodes: list[Node] = []

    async def start(**sections: dict[str, Any]) -> Node:
        port = free_port()
        data: dict[str, dict[str, Any]] = {
            "server": {"listen": f"127.0.0.1:{port}"},
            "origin": {"url": origin.url, "read_timeout_seconds": 5.0},
            "cache": {"dir": str(tmp_path / f"cache{len(nodes)}")},
            "log": {"access_log": False},
            "admin": {"token": ADMIN},
            "images": {"presets": PRESETS, "pool_workers": 1, "timeout_seconds": 20.0},
        }
        for name, values in sections.items():
            data.setdefault(name, {}).update(values)
        config = config_mod.from_dict(data)
        runtime = PublicApp(config, clock=clock)
        await runtime.start()
        client = ProxyClient(ProxyTestServer(runtime, host="127.0.0.1", port=port),
                             timeout=TIMEOUT)
        client.runtime = runtime
        await client.start_server()
        admin = TestClient(TestServer(create_admin_app(config, CollectorRegistry(),
                                                       lambda: runtime.store),
                                      host="127.0.0.1", port=free_port()), timeout=TIMEOUT)
        await admin.start_server()
        node = Node(client, admin)
        nodes.append(node)
        return node

    yield start
    for node in nodes:
        await node.admin.close()
        await node.proxy.close()
        await node.proxy.runtime.close()


@pytest.fixture
async def node(make_node: NodeFactory) -> Node:
    return await make_node()


async def publish(origin: Origin, path: str, body: bytes, content_type: str = "image/jpeg",
                  **headers: str) -> None:
    await origin.publish(path, body, Content_Type=content_type, **headers)


async def test_a_preset_is_a_miss_then_a_hit(node: Node, origin: Origin) -> None:
    await publish(origin, "/img/a.jpg", jpeg())
    first = await node.get("/img/a.jpg?preset=thumb")
    assert first.status == 200, await first.text()
    assert first.headers["X-Cache"] == "MISS"
    assert first.headers["Content-Type"] == "image/jpeg"
    assert "X-Media-Source-Validator" not in first.headers
    body = await first.read()
    assert size_of(body) == (64, 64)
    second = await node.get("/img/a.jpg?preset=thumb")
    assert second.headers["X-Cache"] == "HIT"
    assert await second.read() == body
    assert second.headers["ETag"] == first.headers["ETag"]
    assert origin.count("/img/a.jpg") == 1
    assert node.conversions("thumb", "jpeg") == 1
    original = await node.get("/img/a.jpg")  # the source itself is cached as usual
    assert original.headers["X-Cache"] == "HIT" and size_of(await original.read()) == (400, 300)


async def test_accept_webp_gets_its_own_conversion_with_vary(node: Node, origin: Origin
                                                              ) -> None:
    await publish(origin, "/img/b.jpg", jpeg())
    webp = await node.get("/img/b.jpg?preset=thumb", Accept="image/webp,*/*")
    assert webp.status == 200 and webp.headers["X-Cache"] == "MISS"
    assert webp.headers["Content-Type"] == "image/webp"
    assert webp.headers["Vary"] == "Accept"
    assert (await webp.read())[8:12] == b"WEBP"
    plain = await node.get("/img/b.jpg?preset=thumb", Accept="*/*")
    assert plain.headers["X-Cache"] == "MISS" and plain.headers["Content-Type"] == "image/jpeg"
    again = await node.get("/img/b.jpg?preset=thumb", Accept="image/avif;q=0, image/webp")
    assert again.headers["X-Cache"] == "HIT" and again.headers["Content-Type"] == "image/webp"
    assert again.headers["ETag"] != plain.headers["ETag"]
    assert origin.count("/img/b.jpg") == 1


async def test_a_republished_original_remakes_its_conversion_once_expired(
        node: Node, origin: Origin, clock: Clock) -> None:
    await publish(origin, "/img/c.jpg", jpeg(90), X_Media_Cache_Control="max-age=60")
    first = await node.get("/img/c.jpg?preset=square")
    assert first.headers["X-Cache"] == "MISS"
    await publish(origin, "/img/c.jpg", jpeg(30), X_Media_Cache_Control="max-age=60")
    still = await node.get("/img/c.jpg?preset=square")
    assert still.headers["X-Cache"] == "HIT"  # fresh by the original's own max-age
    clock.offset += 120
    remade = await node.get("/img/c.jpg?preset=square")
    assert remade.headers["X-Cache"] == "MISS"
    assert await remade.read() != await first.read()
    assert remade.headers["ETag"] != first.headers["ETag"]
    assert (await node.get("/img/c.jpg?preset=square")).headers["X-Cache"] == "HIT"
    assert node.conversions("square", "png") == 2


async def test_a_refreshed_original_makes_its_conversions_stale(node: Node, origin: Origin
                                                                 ) -> None:
    await publish(origin, "/img/d.jpg", jpeg(90))
    assert (await node.get("/img/d.jpg?preset=square")).headers["X-Cache"] == "MISS"
    await publish(origin, "/img/d.jpg", jpeg(40))
    assert await node.purge(url="/img/d.jpg") == 200  # original and conversions
    refreshed = await node.get("/img/d.jpg")
    assert refreshed.headers["X-Cache"] == "MISS"
    remade = await node.get("/img/d.jpg?preset=square")
    assert remade.headers["X-Cache"] == "MISS"
    assert origin.count("/img/d.jpg") == 2


async def test_purge_by_format_and_by_preset(node: Node, origin: Origin) -> None:
    await publish(origin, "/img/e.jpg", jpeg())
    for target in ("/img/e.jpg?preset=square", "/img/e.jpg?preset=thumb"):
        assert (await node.get(target)).headers["X-Cache"] == "MISS"
    assert await node.purge(format="png") == 200
    assert (await node.get("/img/e.jpg?preset=square")).headers["X-Cache"] == "MISS"
    assert (await node.get("/img/e.jpg?preset=thumb")).headers["X-Cache"] == "HIT"
    assert await node.purge(preset="thumb") == 200
    assert (await node.get("/img/e.jpg?preset=thumb")).headers["X-Cache"] == "MISS"
    assert (await node.get("/img/e.jpg?preset=square")).headers["X-Cache"] == "HIT"
    assert (await node.get("/img/e.jpg")).headers["X-Cache"] == "HIT"  # the original stays
    assert node.conversions("square", "png") == 2 and node.conversions("thumb", "jpeg") == 2
    assert await node.purge(preset="thumb", format="gif") == 200
    assert await node.purge(format="tiff") == 400


async def test_purging_the_original_purges_its_conversions(node: Node, origin: Origin) -> None:
    await publish(origin, "/img/f/x.jpg", jpeg())
    assert (await node.get("/img/f/x.jpg?preset=thumb")).headers["X-Cache"] == "MISS"
    assert await node.purge(prefix="/img/f/") == 200
    assert (await node.get("/img/f/x.jpg?preset=thumb")).headers["X-Cache"] == "MISS"
    assert origin.count("/img/f/x.jpg") == 2


@pytest.mark.parametrize(("query", "status", "reason"), [
    ("preset=nope", 400, "unknown_preset"),
    ("preset=thumb&dpr=3", 400, "dpr_not_offered"),
    ("preset=thumb&preset=square", 400, "duplicate_parameter"),
])
async def test_bad_conversion_requests_are_refused_as_json(
        node: Node, origin: Origin, query: str, status: int, reason: str) -> None:
    await publish(origin, "/img/g.jpg", jpeg())
    r = await node.get(f"/img/g.jpg?{query}")
    assert r.status == status
    assert r.headers["Cache-Control"] == "no-store"
    body = await r.json()
    assert body["error"] == reason and body["detail"] and set(body) == {"error", "detail"}
    assert origin.count("/img/g.jpg") == 0  # refused before any work


async def test_a_source_that_is_not_an_image_is_415(node: Node, origin: Origin) -> None:
    await publish(origin, "/doc/readme.txt", b"hello", content_type="text/plain")
    r = await node.get("/doc/readme.txt?preset=thumb")
    assert r.status == 415
    assert (await r.json())["error"] == "not_an_allowed_image"
    assert r.headers["Cache-Control"] == "no-store"


async def test_a_decompression_bomb_is_422(node: Node, origin: Origin) -> None:
    await publish(origin, "/img/bomb.png", png_bomb(), content_type="image/png")
    r = await node.get("/img/bomb.png?preset=thumb")
    assert r.status == 422
    assert (await r.json())["error"] == "too_many_pixels"
    again = await node.get("/img/bomb.png?preset=thumb")
    assert again.status == 422  # refusals are never stored as conversions
    assert origin.count("/img/bomb.png") == 1  # the original itself was cached


async def test_a_missing_original_is_404(node: Node) -> None:
    r = await node.get("/img/none.jpg?preset=thumb")
    assert r.status == 404
    assert (await r.json())["error"] == "source_not_found"


async def test_a_protected_original_needs_a_token_for_its_conversions(
        make_node: NodeFactory, origin: Origin, clock: Clock) -> None:
    node = await make_node(auth={"keys": f"k1={SECRET}"})
    await publish(origin, "/p/secret.jpg", jpeg(), X_Media_Access="protected")
    denied = await node.get("/p/secret.jpg?preset=thumb")
    assert denied.status == 401
    signed = sign_url("/p/secret.jpg", key_id="k1", secret=SECRET, ttl_seconds=300,
                      now=clock())
    allowed = await node.get(signed + "&preset=thumb")
    assert allowed.status == 200 and allowed.headers["X-Cache"] == "MISS"
    assert size_of(await allowed.read()) == (64, 64)
    hit_denied = await node.get("/p/secret.jpg?preset=thumb")
    assert hit_denied.status == 401  # the stored conversion keeps the original's access
    hit = await node.get(signed + "&preset=thumb")
    assert hit.status == 200 and hit.headers["X-Cache"] == "HIT"
    other = sign_url("/p/other.jpg", key_id="k1", secret=SECRET, ttl_seconds=300, now=clock())
    query = urllib.parse.urlsplit(other).query
    wrong = await node.get(f"/p/secret.jpg?{query}&preset=thumb")
    assert wrong.status == 403 or wrong.status == 401


async def test_a_soft_purged_conversion_is_served_while_it_is_remade(
        node: Node, origin: Origin) -> None:
    await publish(origin, "/img/s.jpg", jpeg(90))
    first = await node.get("/img/s.jpg?preset=square")
    assert first.headers["X-Cache"] == "MISS"
    assert await node.purge(preset="square", soft=True) == 200
    updating = await node.get("/img/s.jpg?preset=square")
    assert updating.headers["X-Cache"] == "UPDATING"
    assert await updating.read() == await first.read()
    await settled_tasks(node)  # the background remake
    assert node.conversions("square", "png") == 2
    again = await node.get("/img/s.jpg?preset=square")
    assert again.headers["X-Cache"] == "HIT"
    assert origin.count("/img/s.jpg") == 1  # remade from the cached original


async def settled_tasks(node: Node) -> None:
    tasks = node.proxy.runtime.proxy.ctx.tasks
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_signed_free_form_conversions(make_node: NodeFactory, origin: Origin) -> None:
    node = await make_node(auth={"keys": f"k1={SECRET}"},
                           images={"allow_free_form": True})
    await publish(origin, "/img/ff.jpg", jpeg())
    query = images.sign_free_form("/img/ff.jpg", width=50, fmt="png", key_id="k1",
                                  secret=SECRET.encode())
    made = await node.get(f"/img/ff.jpg?{query}")
    assert made.status == 200 and made.headers["X-Cache"] == "MISS"
    assert made.headers["Content-Type"] == "image/png"
    assert size_of(await made.read()) == (50, 38)
    assert (await node.get(f"/img/ff.jpg?{query}")).headers["X-Cache"] == "HIT"
    unsigned = await node.get("/img/ff.jpg?w=50")
    assert unsigned.status == 403
    assert (await unsigned.json())["error"] == "image_signature_missing"
