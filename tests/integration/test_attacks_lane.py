"""Attacks on the lane (server.fast_hits): every request below gets, byte for byte, the
answer the same proxy without the lane gives (server.fast_hits = false), whatever the bytes and
however they are split into reads; the route table stays bounded and dies with what it was
made from. Raw sockets throughout: a client library would tidy the bytes."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

from tests.conftest import Clock, Origin, ProxyClient, ProxyFactory
from tests.integration.wire import Wire

BODY = os.urandom(2048)
PATH = "/la/s.bin"
GET = f"GET {PATH} HTTP/1.1\r\nHost: test\r\n\r\n"


def lane_hits(proxy: ProxyClient) -> int:
    proxy.runtime.flush_lane()
    value = proxy.runtime.metrics.registry.get_sample_value("mediaproxy_lane_hits_total")
    return int(value or 0)


def normal(data: bytes) -> bytes:
    """What may differ between two proxies' answers: the clock (Date, Age, the ttl)."""
    data = re.sub(rb"\r\nDate: [^\r]*", b"\r\nDate: -", data)
    data = re.sub(rb"\r\nAge: \d+", b"\r\nAge: -", data)
    return re.sub(rb"ttl=-?\d+", b"ttl=-", data)


async def talk(port: int, pieces: list[bytes], idle: float = 0.6, gap: float = 0.002) -> bytes:
    """On a new connection (one plain GET answered first, so the lane is in front and
    aiohttp idle), send `pieces` a little apart, then read everything until the server
    closes or says nothing for `idle` seconds (normalised; the ending marked)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(GET.encode())
    await writer.drain()
    got = b""
    while BODY not in got:
        got += await asyncio.wait_for(reader.read(1 << 16), 5)
    out = b""
    try:
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
            # Read what comes back meanwhile: a server that refused the request and closed
            # makes the next piece come back as a reset, which may take unread answers along.
            try:
                chunk = await asyncio.wait_for(reader.read(1 << 16), gap)
            except TimeoutError:
                continue
            out += chunk
            if not chunk:
                break
        while True:
            chunk = await asyncio.wait_for(reader.read(1 << 16), idle)
            if not chunk:
                break
            out += chunk
        out += b"<closed>"
    except TimeoutError:
        out += b"<open>"
    except ConnectionError:
        out += b"<closed>"  # a reset after the answer: closed all the same
    finally:
        writer.close()
    return normal(out)


async def pair(origin: Origin, make_proxy: ProxyFactory, **sections: dict[str, object]
               ) -> tuple[ProxyClient, ProxyClient]:
    """The same proxy with the lane and without it, PATH in both memory tiers (routed in the
    first)."""
    await origin.publish(PATH, BODY, X_Media_Cache_Control="max-age=600")
    on = await make_proxy(**sections)
    off = await make_proxy(**{**sections, "server": {
        **sections.get("server", {}), "fast_hits": False}})
    for proxy in (on, off):
        for _ in range(3):
            await talk(proxy.port, [], idle=0.05)
            await asyncio.sleep(0.05)
    assert lane_hits(on) > 0 and lane_hits(off) == 0
    return on, off


async def differences(on: ProxyClient, off: ProxyClient, cases: dict[str, list[bytes]],
                      gap: float = 0.002) -> list[tuple[str, bytes, bytes]]:
    names = list(cases)
    results = await asyncio.gather(*(asyncio.gather(
        talk(on.port, cases[name], gap=gap), talk(off.port, cases[name], gap=gap))
        for name in names))
    return [(name, a[:300], b[:300]) for name, (a, b) in zip(names, results, strict=True)
            if a != b]


HOSTILE = {
    "field_name_plus_value": GET[:-2] + "X-" + "n" * 300 + ": " + "v" * 7950 + "\r\n\r\n",
    "first_name_plus_value": f"GET {PATH} HTTP/1.1\r\nX-" + "n" * 300 + ": " + "v" * 7950
    + "\r\nHost: test\r\n\r\n",
    "ws_key1": GET[:-2] + "Sec-WebSocket-Key1: x\r\n\r\n",
    "bare_lf": f"GET {PATH} HTTP/1.1\nHost: test\n\n",
    "mixed_lf": f"GET {PATH} HTTP/1.1\r\nHost: test\n\r\n",
    "obs_fold": GET[:-2] + "X-A: a\r\n b\r\n\r\n",
    "space_colon": GET[:-2] + "X-A : a\r\n\r\n",
    "two_hosts": GET[:-2] + "host: test\r\n\r\n",
    "conn_ka_close": GET[:-2] + "Connection: keep-alive, close\r\n\r\n",
    "conn_two": GET[:-2] + "Connection: keep-alive\r\nConnection: close\r\n\r\n",
    "conn_ka_ka": GET[:-2] + "Connection: keep-alive\r\nConnection: keep-alive\r\n\r\n",
    "conn_ka_ws": GET[:-2] + "Connection: keep-alive \t\r\n\r\n",
    "http10_ka": f"GET {PATH} HTTP/1.0\r\nHost: test\r\nConnection: keep-alive\r\n\r\n",
    "star": "GET * HTTP/1.1\r\nHost: test\r\n\r\n",
    "options_star": "OPTIONS * HTTP/1.1\r\nHost: test\r\n\r\n",
    "connect": "CONNECT test:80 HTTP/1.1\r\nHost: test\r\n\r\n" + GET,
    "cl0": GET[:-2] + "Content-Length: 0\r\n\r\n" + GET,
    "cl_te": GET[:-2] + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + GET,
    "upgrade_ws": GET[:-2] + "Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n" + GET,
    "upgrade_h2c": GET[:-2] + "Connection: Upgrade\r\nUpgrade: h2c\r\n\r\n" + GET,
    "upgrade_only": GET[:-2] + "Upgrade: h2c\r\n\r\n" + GET,
    "conn_upgrade_only": GET[:-2] + "Connection: Upgrade\r\n\r\n" + GET,
    "tab_value": GET[:-2] + "X-A: a\tb\r\n\r\n",
    "high_value": GET[:-2] + "X-A: a\xe9\xffb\r\n\r\n",
    "del_value": GET[:-2] + "X-A: a\x7fb\r\n\r\n",
    "ctl_value": GET[:-2] + "X-A: a\x01b\r\n\r\n",
    "nul_value": GET[:-2] + "X-A: a\x00b\r\n\r\n",
    "bad_name": GET[:-2] + "X@A: a\r\n\r\n",
    "double_space": f"GET  {PATH} HTTP/1.1\r\nHost: test\r\n\r\n",
    "trail_space_version": f"GET {PATH} HTTP/1.1 \r\nHost: test\r\n\r\n",
    "leading_crlf": "\r\n" + GET,
    "leading_crlf2": "\r\n\r\n" + GET,
    "fragment": f"GET {PATH}#x HTTP/1.1\r\nHost: test\r\n\r\n",
    "pragma": GET[:-2] + "Pragma: no-cache\r\n\r\n",
    "range_upper": GET[:-2] + "RANGE: bytes=0-1\r\n\r\n",
    "inm_spaces": GET[:-2] + "if-none-match:    *   \r\n\r\n",
    "headers_128": GET[:-2] + "".join(f"X-{i}: a\r\n" for i in range(127)) + "\r\n",
    "headers_129": GET[:-2] + "".join(f"X-{i}: a\r\n" for i in range(128)) + "\r\n",
    "keep_alive_hdr": GET[:-2] + "Keep-Alive: timeout=5\r\n\r\n",
    "te_trailers": GET[:-2] + "TE: trailers\r\n\r\n",
    "expect_odd": GET[:-2] + "Expect: 100-continue\r\n\r\n",
    "empty_host": f"GET {PATH} HTTP/1.1\r\nHost:\r\n\r\n",
    "host_space": f"GET {PATH} HTTP/1.1\r\nHost: a b\r\n\r\n",
    "host_bad": f"GET {PATH} HTTP/1.1\r\nHost: [::1\r\n\r\n",
    "http09": f"GET {PATH}\r\n\r\n",
    "http2_preface": "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "http11_lower": f"GET {PATH} http/1.1\r\nHost: test\r\n\r\n",
    "http12": f"GET {PATH} HTTP/1.2\r\nHost: test\r\n\r\n",
    "empty_name": GET[:-2] + ": a\r\n\r\n",
    "no_colon": GET[:-2] + "X-A a\r\n\r\n",
    "pipeline3": GET * 3,
    "pipeline_close_mid": GET + GET[:-2] + "Connection: close\r\n\r\n" + GET,
    "pipeline_bad_tail": GET + GET + "GARBAGE\r\n\r\n",
    "partial_tail": GET + GET + "GET /la/s.b",
    "ua_dup": GET[:-2] + "User-Agent: a\r\nuser-agent: b\r\n\r\n",
    "referer_dup": GET[:-2] + "Referer: a\r\nReferer: b\r\n\r\n",
    "etag_dup": GET[:-2] + "ETag: a\r\nETag: b\r\n\r\n",
    "ct_dup": GET[:-2] + "Content-Type: a\r\nContent-Type: b\r\n\r\n",
    "max_fwd_dup": GET[:-2] + "Max-Forwards: 1\r\nMax-Forwards: 2\r\n\r\n",
    "authz": GET[:-2] + "Authorization: Bearer x\r\n\r\n",
    "proxy_conn": GET[:-2] + "Proxy-Connection: close\r\n\r\n",
    "x_http_method": GET[:-2] + "X-HTTP-Method-Override: PURGE\r\n\r\n",
    "http2_settings": GET[:-2] + "HTTP2-Settings: AAA\r\n\r\n",
    "trailer": GET[:-2] + "Trailer: X\r\n\r\n",
    "cl_neg": GET[:-2] + "Content-Length: -1\r\n\r\n",
    "long_value_ok": GET[:-2] + "X-A: " + "v" * 8100 + "\r\n\r\n",
    "long_name_value": GET[:-2] + "X-" + "n" * 4000 + ": " + "v" * 4200 + "\r\n\r\n",
}




async def test_hostile_requests_get_the_answer_the_proxy_without_the_lane_gives(
        origin: Origin, make_proxy: ProxyFactory) -> None:
    on, off = await pair(origin, make_proxy)
    before = lane_hits(on)
    whole = {name: [text.encode("latin-1")] for name, text in HOSTILE.items()}
    assert await differences(on, off, whole) == []
    assert lane_hits(on) > before + len(HOSTILE)  # the lane did answer some of them
    # The same bytes in 7-byte reads (a head split over reads is always aiohttp's).
    pieces = {name: [data[i:i + 7] for i in range(0, len(data), 7)]
              for name, (data,) in whole.items()}
    assert await differences(on, off, pieces) == []


async def test_a_pipeline_split_at_every_offset_gets_the_same_answers(
        origin: Origin, make_proxy: ProxyFactory) -> None:
    """Two reads, cut at every byte: the lane answers a read only when it starts and ends
    at message boundaries, and the answers come back whole and in order."""
    on, off = await pair(origin, make_proxy)
    pipeline = (GET + GET[:-2] + "Range: bytes=1-2\r\n\r\n" + GET + f"HEAD {PATH} HTTP/1.1"
                "\r\nHost: test\r\n\r\n" + GET).encode()
    cases = {str(cut): [pipeline[:cut], pipeline[cut:]] for cut in range(1, len(pipeline))}
    assert await differences(on, off, cases, gap=0.03) == []


async def test_a_lane_able_request_behind_a_slow_miss_waits_for_it(
        origin: Origin, make_proxy: ProxyFactory) -> None:
    on, _ = await pair(origin, make_proxy)
    await origin.publish("/la/slow.bin", b"slow", X_Media_Cache_Control="max-age=600")
    await origin.fault(path_prefix="/la/slow", delay_seconds=0.4)
    wire = await Wire.open(on.port)
    assert (await wire.get(PATH)).body == BODY
    before = lane_hits(on)
    await wire.send("GET /la/slow.bin HTTP/1.1\r\nHost: test\r\n\r\n")
    await asyncio.sleep(0.1)  # aiohttp is busy with the miss when the next read comes
    await wire.send(GET)
    first, second = await wire.answer(), await wire.answer()
    assert (first.body, second.body) == (b"slow", BODY)
    assert lane_hits(on) == before  # aiohttp answered it, after the miss
    assert (await wire.get(PATH)).body == BODY
    assert lane_hits(on) == before + 1  # and the lane takes over again once it is idle
    await wire.close()


async def test_routes_die_with_the_memory_copy_the_tier_evicts_for_room(
        origin: Origin, make_proxy: ProxyFactory) -> None:
    """The tier holds 64 KiB; routes must not keep (and serve) the copies it let go: 40
    routed 16 KiB objects pinned 640 KiB for the memory TTL (65,536 routes x 128 KiB bodies:
    8 GiB per worker)."""
    proxy = await make_proxy(cache={"memory_bytes": 64 * 1024, "memory_ttl_seconds": 30})
    body = os.urandom(16 * 1024)
    paths = [f"/la/p/{i}.bin" for i in range(40)]
    for path in paths:
        await origin.publish(path, body, X_Media_Cache_Control="max-age=600")
    wire = await Wire.open(proxy.port)
    for _ in range(2):
        for path in paths:
            assert (await wire.get(path)).body == body
    ctx = proxy.runtime.proxy.ctx
    assert ctx.front is not None and ctx.routes is not None
    routed = [path for path in paths if ctx.routes.targets_of(path)]
    assert routed, "the last objects read are routed"
    assert all(ctx.front.get(path) is not None for path in routed)
    assert len(ctx.routes) * (len(body) + 1024) <= 64 * 1024
    await wire.close()


async def test_a_wall_clock_stepped_back_keeps_no_route_past_the_memory_ttl(
        origin: Origin, make_proxy: ProxyFactory, tmp_path: Path) -> None:
    """Worker A's clock steps back a minute (NTP); worker B stores a new version. A without
    the lane reads it once its memory copy's TTL (monotonic) has passed: so must A with it."""
    shared = {"dir": str(tmp_path / "shared"), "memory_ttl_seconds": 0.3}
    seen = {}
    for fast in (True, False):
        path = f"/la/back-{fast}.bin"
        await origin.publish(path, BODY, X_Media_Cache_Control="max-age=600")
        wall = Clock()
        a = await make_proxy(clock=wall, cache=shared, server={"fast_hits": fast})
        b = await make_proxy(cache=shared)
        wire = await Wire.open(a.port)
        for _ in range(3):
            assert (await wire.get(path)).body == BODY
            await asyncio.sleep(0.02)
        wall.offset -= 60
        newer = os.urandom(2048)
        await origin.publish(path, newer, X_Media_Cache_Control="max-age=600")
        other = await Wire.open(b.port)
        assert (await other.get(path, "Cache-Control: no-cache\r\n")).body == newer
        await asyncio.sleep(0.4)  # past A's memory TTL
        seen[fast] = (await wire.get(path)).body == newer
        await wire.close()
        await other.close()
    assert seen == {False: True, True: True}


async def test_a_soft_purge_on_the_lane_connection_ends_the_route_as_it_does_the_copy(
        origin: Origin, make_proxy: ProxyFactory) -> None:
    answers = {}
    for fast in (True, False):
        proxy = await make_proxy(admin={"purge_networks": "127.0.0.1/32"},
                                 server={"fast_hits": fast})
        path = f"/la/soft-{fast}.bin"
        await origin.publish(path, BODY, X_Media_Cache_Control="max-age=600")
        wire = await Wire.open(proxy.port)
        for _ in range(3):
            assert (await wire.get(path)).body == BODY
            await asyncio.sleep(0.02)
        newer = os.urandom(2048)
        await origin.publish(path, newer, X_Media_Cache_Control="max-age=600")
        await wire.send(f"PURGE {path} HTTP/1.1\r\nHost: test\r\nX-Purge-Soft: 1\r\n\r\n"
                        + f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n")
        assert (await wire.answer()).status == 200
        after = await wire.get(path)
        answers[fast] = (after.field("X-Cache"), after.body == newer)
        await wire.close()
    assert answers[True] == answers[False]


async def test_fragment_spellings_get_the_lifecycles_answer_and_no_routes(
        origin: Origin, make_proxy: ProxyFactory) -> None:
    on, off = await pair(origin, make_proxy)
    assert on.runtime.proxy.ctx.routes is not None
    routes = len(on.runtime.proxy.ctx.routes)
    spellings = {str(i): [f"GET {PATH}#{i}{'x' * 4000} HTTP/1.1\r\nHost: test\r\n\r\n"
                          .encode()] * 2 for i in range(20)}
    assert await differences(on, off, spellings) == []
    assert len(on.runtime.proxy.ctx.routes) == routes
