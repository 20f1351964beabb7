"""Framing attacks against the origin connection, through the real proxy, from raw sockets:
requests to the origin are framed by what the proxy sends, never by the client's fields.

The origin here is `RawOrigin`, which records every byte and fails on anything but a
well-framed request; after each attack an honest request must get its own answer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.conftest import ProxyFactory, raw_request
from tests.integration.raw_origin import RawOrigin


@pytest.fixture
async def raw_origin() -> AsyncIterator[RawOrigin]:
    origin = RawOrigin()
    await origin.start()
    yield origin
    await origin.close()


def status_of(answer: bytes) -> int:
    """The status of the first answer (aiohttp's own parser errors say HTTP/1.0)."""
    return int(answer.split(b" ", 2)[1]) if answer.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")) else 0


SMUGGLED = "GET /poison HTTP/1.1\r\nHost: x\r\nX-Pad: "


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize("framing", [
    f"Content-Length: {len(SMUGGLED)}",
    "Transfer-Encoding: chunked",
    "Content-Length: 5",
    "Transfer-Encoding: gzip, chunked",
])
async def test_a_read_with_a_body_is_refused_and_never_reaches_the_origin(
        make_proxy: ProxyFactory, raw_origin: RawOrigin, method: str, framing: str) -> None:
    proxy = await make_proxy(origin={"url": raw_origin.url})
    body = SMUGGLED if "Length" in framing else f"{len(SMUGGLED):x}\r\n{SMUGGLED}\r\n0\r\n\r\n"
    answer = await raw_request(
        proxy.port, f"{method} /victim.jpg HTTP/1.1\r\nHost: x\r\n{framing}\r\n\r\n{body}",
        timeout=3)
    assert status_of(answer) == 400, answer[:200]
    if framing != "Content-Length: 5":  # else the rest is a malformed next request
        assert b"body_not_allowed" in answer or method == "HEAD"
        assert b"Connection: close" in answer
    assert raw_origin.requests == [] and raw_origin.violations == []
    # The entry an attacker aimed at, and the one it smuggled, are each their own.
    r = await proxy.get("/victim.jpg")
    assert await r.read() == b"GET /victim.jpg #1"
    r = await proxy.get("/poison")
    assert await r.read() == b"GET /poison #2"
    assert raw_origin.violations == []


async def test_a_zero_length_read_is_served_and_forwarded_unframed(
        make_proxy: ProxyFactory, raw_origin: RawOrigin) -> None:
    proxy = await make_proxy(origin={"url": raw_origin.url})
    answer = await raw_request(
        proxy.port, "GET /zero.jpg HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", timeout=3)
    assert status_of(answer) == 200 and answer.endswith(b"GET /zero.jpg #1")
    assert raw_origin.requests[0].get("content-length") is None
    assert raw_origin.violations == []


async def test_unsafe_bodies_are_framed_by_the_proxy(
        make_proxy: ProxyFactory, raw_origin: RawOrigin) -> None:
    proxy = await make_proxy(origin={"url": raw_origin.url})
    payload = "name=value&x=1"
    answer = await raw_request(
        proxy.port, f"POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: {len(payload)}\r\n"
        f"Expect: 100-continue\r\n\r\n{payload}", timeout=3)
    assert status_of(answer) == 200
    chunked = "4\r\nabcd\r\n3\r\nefg\r\n0\r\n\r\n"
    answer = await raw_request(
        proxy.port, f"PUT /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        f"{chunked}", timeout=3)
    assert status_of(answer) == 200
    sent = {r.path: r for r in raw_origin.requests}
    assert sent["/form"].body == payload.encode()
    assert sent["/form"].get("content-length") == str(len(payload))
    assert sent["/form"].get("expect") is None
    assert sent["/upload"].body == b"abcdefg"
    assert raw_origin.violations == []


@pytest.mark.parametrize("head", [
    # CL.TE and TE.CL: the parser must refuse the ambiguity, not pick a side.
    "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n"
    "0\r\n\r\nG",
    "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\nabc",
    "POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
    "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc",
    "POST /x HTTP/1.1\r\nHost: x\r\nContent-Length : 3\r\n\r\nabc",
    "GET /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n",
])
async def test_ambiguous_framing_is_refused(make_proxy: ProxyFactory, raw_origin: RawOrigin,
                                            head: str) -> None:
    proxy = await make_proxy(origin={"url": raw_origin.url})
    answer = await raw_request(proxy.port, head, timeout=3)
    assert status_of(answer) == 400, answer[:200]
    assert raw_origin.requests == [] and raw_origin.violations == []


async def test_pipelined_attack_does_not_poison_a_pooled_connection(
        make_proxy: ProxyFactory, raw_origin: RawOrigin) -> None:
    """The issue's attack end to end: a body-carrying GET, then honest visitors. Each gets
    its own answer and no entry holds another request's bytes."""
    proxy = await make_proxy(origin={"url": raw_origin.url})
    attack = (f"GET /a.jpg HTTP/1.1\r\nHost: x\r\nContent-Length: {len(SMUGGLED)}\r\n\r\n"
              f"{SMUGGLED}")
    await raw_request(proxy.port, attack, timeout=2)
    answers = await asyncio.gather(*(proxy.get(f"/p{i}.jpg") for i in range(5)))
    for i, r in enumerate(answers):
        assert (await r.read()).startswith(f"GET /p{i}.jpg #".encode())
    r = await proxy.get("/a.jpg")
    assert (await r.read()).startswith(b"GET /a.jpg #")
    assert raw_origin.violations == []
    assert all(r.method == "GET" and r.body == b"" for r in raw_origin.requests)
