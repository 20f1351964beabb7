"""Vary: variants stored side by side, each request gets its own; Vary: * never reused."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.conftest import ProxyFactory, free_port
from tests.integration.test_proxy import settled


@pytest.fixture
async def negotiating_origin() -> AsyncIterator[tuple[str, list[str]]]:
    """Picks an image format from Accept, as image CDNs do (WebP, AVIF, JPEG)."""
    calls: list[str] = []

    async def serve(request: web.Request) -> web.Response:
        calls.append(request.path)
        accept = request.headers.get("Accept", "")
        if request.path == "/star.jpg":
            return web.Response(body=b"any", headers={"Cache-Control": "max-age=600",
                                                       "ETag": '"s"', "Vary": "*"})
        fmt = "avif" if "avif" in accept else "webp" if "webp" in accept else "jpeg"
        return web.Response(body=f"{fmt}-bytes".encode(), content_type=f"image/{fmt}",
                            headers={"Cache-Control": "max-age=600", "ETag": f'"{fmt}"',
                                     "Vary": "Accept"})

    app = web.Application()
    app.router.add_get("/{t:.*}", serve)
    server = TestServer(app, host="127.0.0.1", port=free_port())
    await server.start_server()
    yield str(server.make_url("")).rstrip("/"), calls
    await server.close()


async def test_variants_side_by_side(make_proxy: ProxyFactory,
                                     negotiating_origin: tuple[str, list[str]]) -> None:
    url, calls = negotiating_origin
    proxy = await make_proxy(origin={"url": url}, admin={"purge_networks": "127.0.0.1/32"})

    async def get(accept: str | None) -> tuple[str, bytes]:
        r = await proxy.get("/img.jpg", headers={"Accept": accept} if accept else {})
        return r.headers["X-Cache"], await r.read()

    assert await get("image/webp,*/*") == ("MISS", b"webp-bytes")
    await settled(proxy)
    assert await get("image/avif,image/webp") == ("MISS", b"avif-bytes")
    await settled(proxy)
    assert await get("image/webp,*/*") == ("HIT", b"webp-bytes")
    assert await get("image/avif,image/webp") == ("HIT", b"avif-bytes")
    assert await get("image/avif,  image/webp") == ("HIT", b"avif-bytes")  # normalised
    assert await get(None) == ("MISS", b"jpeg-bytes")  # absent is its own variant
    await settled(proxy)
    assert await get(None) == ("HIT", b"jpeg-bytes")
    assert calls.count("/img.jpg") == 3
    # An exact purge of the URL covers every variant.
    assert (await proxy.request("PURGE", "/img.jpg")).status == 200
    assert (await get("image/webp,*/*"))[0] == "MISS"
    assert (await get("image/avif,image/webp"))[0] == "MISS"


async def test_vary_star_is_never_reused(make_proxy: ProxyFactory,
                                        negotiating_origin: tuple[str, list[str]]) -> None:
    url, calls = negotiating_origin
    proxy = await make_proxy(origin={"url": url})
    for _ in range(3):
        r = await proxy.get("/star.jpg")
        assert r.headers["X-Cache"] == "PASS" and await r.read() == b"any"
    assert calls.count("/star.jpg") == 3
