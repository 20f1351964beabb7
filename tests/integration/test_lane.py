"""The lane (server.fast_hits): repeated plain GETs of memory-tier hits answered from the
connection's parser. It must answer exactly what the lifecycle would, step aside for anything
else, and never outlive what its answer was made from (a purge, freshness, the memory TTL).
Raw keep-alive sockets throughout: a client library would tidy the bytes."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from tests.conftest import Clock, Origin, ProxyClient, ProxyFactory
from tests.integration.wire import Answer, Wire

BODY = os.urandom(4096)
PER_REQUEST = ("age", "cache-status", "date")  # what may differ between two answers


def lane_hits(proxy: ProxyClient) -> int:
    proxy.runtime.flush_lane()
    value = proxy.runtime.metrics.registry.get_sample_value("mediaproxy_lane_hits_total")
    return int(value or 0)


def same_answer(a: Answer, b: Answer) -> bool:
    """Equal but for the fields that move with the clock."""
    def kept(answer: Answer) -> list[tuple[str, str]]:
        return [(n.lower(), v) for n, v in answer.fields() if n.lower() not in PER_REQUEST]
    return a.status == b.status and kept(a) == kept(b) and a.body == b.body and (
        a.head.split(b"\r\n")[0] == b.head.split(b"\r\n")[0])


async def routed(origin: Origin, proxy: ProxyClient, path: str, body: bytes = BODY,
                 **headers: str) -> tuple[Wire, Answer]:
    """Publish `path`, then GET it until the lifecycle has answered it from the memory tier
    (MISS, then HIT from disk: that answer makes the route). The connection stays open."""
    await origin.publish(path, body, **headers)
    wire = await Wire.open(proxy.port)
    first = await wire.get(path)
    assert first.field("X-Cache") == "MISS" and first.body == body
    for _ in range(50):
        if not proxy.runtime.proxy.fills:
            break
        await asyncio.sleep(0.01)
    hit = await wire.get(path)
    assert hit.field("X-Cache") == "HIT" and hit.body == body
    return wire, hit


async def test_a_repeated_get_is_answered_by_the_lane_with_the_lifecycles_bytes(
        origin: Origin, proxy: ProxyClient) -> None:
    wire, hit = await routed(origin, proxy, "/l/a.bin")
    before = lane_hits(proxy)
    again = await wire.get("/l/a.bin")
    assert lane_hits(proxy) == before + 1
    assert same_answer(hit, again), (hit.head, again.head)
    assert again.field("Age") is not None and again.field("Cache-Status", ) is not None
    assert again.field("Cache-Status") == hit.field("Cache-Status") or (
        "hit; ttl=" in (again.field("Cache-Status") or ""))
    # A second connection shares the route; the origin saw one request in all.
    other = await Wire.open(proxy.port)
    assert same_answer(hit, await other.get("/l/a.bin"))
    assert lane_hits(proxy) == before + 2
    assert origin.count("/l/a.bin") == 1
    await wire.close()
    await other.close()


async def test_lane_hits_are_counted_as_hits(origin: Origin, proxy: ProxyClient) -> None:
    wire, _ = await routed(origin, proxy, "/l/m.bin")
    registry = proxy.runtime.metrics.registry
    labels = {"cache_status": "HIT", "method": "GET"}
    before = registry.get_sample_value("mediaproxy_requests_total", labels) or 0
    sent = registry.get_sample_value("mediaproxy_response_bytes_total",
                                     {"cache_status": "HIT"}) or 0
    for _ in range(5):
        assert (await wire.get("/l/m.bin")).body == BODY
    proxy.runtime.flush_lane()
    assert registry.get_sample_value("mediaproxy_requests_total", labels) == before + 5
    assert registry.get_sample_value("mediaproxy_response_bytes_total",
                                     {"cache_status": "HIT"}) == sent + 5 * len(BODY)
    count = registry.get_sample_value("mediaproxy_request_duration_seconds_count",
                                      {"cache_status": "HIT"})
    assert count is not None and count >= before + 5
    await wire.close()


async def test_pipelined_reads_come_back_in_order(origin: Origin, proxy: ProxyClient) -> None:
    wire, _ = await routed(origin, proxy, "/l/p.bin")
    other = os.urandom(1000)
    await origin.publish("/l/q.bin", other)
    before = lane_hits(proxy)
    one = "GET /l/p.bin HTTP/1.1\r\nHost: test\r\n\r\n"
    await wire.send(one * 3)
    answers = [await wire.answer() for _ in range(3)]
    assert [a.body for a in answers] == [BODY] * 3
    assert lane_hits(proxy) == before + 3
    # A read mixing a miss between two lane-able requests goes to aiohttp whole, in order.
    await wire.send(one + "GET /l/q.bin HTTP/1.1\r\nHost: test\r\n\r\n" + one)
    answers = [await wire.answer() for _ in range(3)]
    assert [a.body for a in answers] == [BODY, other, BODY]
    assert [a.field("X-Cache") for a in answers] == ["HIT", "MISS", "HIT"]
    assert lane_hits(proxy) == before + 3
    # ... and the lane takes the connection back once aiohttp is idle again.
    assert (await wire.get("/l/p.bin")).body == BODY
    assert lane_hits(proxy) == before + 4
    await wire.close()


async def test_a_pipelined_flood_is_answered_whole_by_aiohttps_flow_control(
        origin: Origin, proxy: ProxyClient) -> None:
    body = os.urandom(64 * 1024)
    wire, _ = await routed(origin, proxy, "/l/flood.bin", body)
    count = 400  # 25 MiB of answers to one read-less burst: over the lane's per-read cap
    await wire.send("GET /l/flood.bin HTTP/1.1\r\nHost: test\r\n\r\n" * count)
    await asyncio.sleep(0.3)  # the client reads nothing for a while
    for _ in range(count):
        assert (await wire.answer()).body == body
    assert (await wire.get("/l/flood.bin")).body == body
    await wire.close()


@pytest.mark.parametrize(("extra", "status"), [
    ("Range: bytes=0-3\r\n", 206),
    ("If-None-Match: *\r\n", 304),
    ("Cache-Control: max-age=0\r\n", 200),
    ("If-Modified-Since: Wed, 01 Jan 2099 00:00:00 GMT\r\n", 304),
    ("Connection: close\r\n", 200),
    ("Host: second\r\n", 400),
    ("Expect: 100-continue\r\n", 200),
    ("User-Agent: a\r\nUser-Agent: b\r\n", 400),
    ("X-Long: " + "a" * 9000 + "\r\n", 400),
    ("X-Nul: a\x00b\r\n", 400),
])
async def test_requests_the_lane_leaves_to_the_lifecycle(
        origin: Origin, proxy: ProxyClient, extra: str, status: int) -> None:
    wire, _ = await routed(origin, proxy, "/l/r.bin")
    before = lane_hits(proxy)
    answer = await wire.get("/l/r.bin", extra)
    assert answer.status == status
    assert lane_hits(proxy) == before
    await wire.close()


@pytest.mark.parametrize("request_text", [
    "GET /l/s.bin HTTP/1.0\r\nHost: test\r\n\r\n",
    "GET /l/s.bin HTTP/1.1\r\n\r\n",
    "HEAD /l/s.bin HTTP/1.1\r\nHost: test\r\n\r\n",
    "GET //l/s.bin HTTP/1.1\r\nHost: test\r\n\r\n",
    "GET /l/s.bin? HTTP/1.1\r\nHost: test\r\n\r\n",
    "GET /l/%73.bin HTTP/1.1\r\nHost: test\r\n\r\n",
    "GET http://test/l/s.bin HTTP/1.1\r\nHost: test\r\n\r\n",
    "get /l/s.bin HTTP/1.1\r\nHost: test\r\n\r\n",
    "GET /l/s.bin HTTP/1.1\nHost: test\n\n",
    "GET /l/s.bin HTTP/1.1\r\nHost : test\r\n\r\n",
    "GET /l/s.bin HTTP/1.1\r\nHost: test\r\n folded\r\n\r\n",
])
async def test_other_spellings_are_answered_as_the_lifecycle_answers_them(
        origin: Origin, make_proxy: ProxyFactory, request_text: str) -> None:
    """The same bytes to a proxy with the lane and one without give the same answer."""
    answers = []
    for fast in (True, False):
        proxy = await make_proxy(server={"fast_hits": fast})
        wire, _ = await routed(origin, proxy, "/l/s.bin")
        await wire.send(request_text)
        try:
            answer = await wire.answer(head_only=request_text.startswith("HEAD"), timeout=3)
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            answer = Answer(0, b"", b"")
        answers.append(answer)
        if fast:
            assert lane_hits(proxy) == 0
        await wire.close()
    assert answers[0].status == answers[1].status, (answers[0].head, answers[1].head)
    assert answers[0].body == answers[1].body


@pytest.mark.parametrize("framing", ["Content-Length: 0", "Content-Length: 40",
                                     "Transfer-Encoding: chunked"])
async def test_a_body_on_the_connection_turns_the_lane_off_for_it(
        origin: Origin, proxy: ProxyClient, framing: str) -> None:
    wire, _ = await routed(origin, proxy, "/l/b.bin")
    before = lane_hits(proxy)
    smuggled = "GET /l/poison HTTP/1.1\r\nHost: test\r\n\r\n"
    chunked = f"{len(smuggled):x}\r\n{smuggled}\r\n0\r\n\r\n"
    body = "" if framing.endswith(": 0") else (
        smuggled.ljust(40) if "Length" in framing else chunked)
    await wire.send(f"GET /l/b.bin HTTP/1.1\r\nHost: test\r\n{framing}\r\n\r\n{body}")
    answer = await wire.answer(timeout=3)
    if framing.endswith(": 0"):
        assert answer.status == 200 and answer.body == BODY
        assert (await wire.get("/l/b.bin")).body == BODY  # served, by aiohttp from now on
    else:
        assert answer.status == 400 and answer.field("Connection") == "close"
    assert lane_hits(proxy) == before
    assert origin.count("/l/poison") == 0
    await wire.close()


async def test_a_purge_ends_the_route_at_once(origin: Origin, make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy(admin={"purge_networks": "127.0.0.1/32"})
    wire, _ = await routed(origin, proxy, "/l/purged.bin")
    assert (await wire.get("/l/purged.bin")).field("X-Cache") == "HIT"
    before = lane_hits(proxy)
    await wire.send("PURGE /l/purged.bin HTTP/1.1\r\nHost: test\r\n\r\n")
    assert (await wire.answer()).status == 200
    answer = await wire.get("/l/purged.bin")
    assert answer.field("X-Cache") == "MISS" and answer.body == BODY
    assert lane_hits(proxy) == before
    assert origin.count("/l/purged.bin") == 2
    await wire.close()


async def test_a_new_version_stored_here_ends_the_route(
        origin: Origin, proxy: ProxyClient) -> None:
    wire, _ = await routed(origin, proxy, "/l/v.bin", X_Media_Cache_Control="max-age=600")
    newer = os.urandom(4096)
    await origin.publish("/l/v.bin", newer, X_Media_Cache_Control="max-age=600")
    answer = await wire.get("/l/v.bin", "Cache-Control: no-cache\r\n")  # refetch through us
    assert answer.body == newer
    before = lane_hits(proxy)
    answers = [await wire.get("/l/v.bin") for _ in range(3)]
    assert [a.body for a in answers] == [newer] * 3
    assert lane_hits(proxy) >= before + 1


async def test_the_route_ends_with_freshness(origin: Origin, make_proxy: ProxyFactory,
                                             clock: Clock) -> None:
    proxy = await make_proxy(clock=clock)
    wire, _ = await routed(origin, proxy, "/l/f.bin", X_Media_Cache_Control="max-age=5")
    assert (await wire.get("/l/f.bin")).field("X-Cache") == "HIT"
    before = lane_hits(proxy)
    assert before >= 1
    clock.offset += 6
    answer = await wire.get("/l/f.bin")
    assert answer.field("X-Cache") in ("REVALIDATED", "EXPIRED", "MISS")
    assert lane_hits(proxy) == before
    assert origin.count("/l/f.bin") == 2
    await wire.close()


async def test_the_route_ends_with_the_memory_copy(origin: Origin, make_proxy: ProxyFactory,
                                                   clock: Clock) -> None:
    proxy = await make_proxy(clock=clock, cache={"memory_ttl_seconds": 2})
    wire, _ = await routed(origin, proxy, "/l/t.bin", X_Media_Cache_Control="max-age=600")
    assert (await wire.get("/l/t.bin")).body == BODY
    before = lane_hits(proxy)
    clock.offset += 2.5  # older than the memory tier keeps a copy: the disk decides again
    await asyncio.sleep(2.1)
    assert (await wire.get("/l/t.bin")).field("X-Cache") == "HIT"
    assert lane_hits(proxy) == before
    assert (await wire.get("/l/t.bin")).body == BODY
    assert lane_hits(proxy) == before + 1  # the lifecycle made the route again
    await wire.close()


async def test_objects_revalidated_on_every_use_get_no_route(
        origin: Origin, proxy: ProxyClient) -> None:
    await origin.publish("/l/nc.bin", BODY, X_Media_Cache_Control="no-cache")
    wire = await Wire.open(proxy.port)
    for _ in range(4):
        assert (await wire.get("/l/nc.bin")).body == BODY
    assert lane_hits(proxy) == 0
    await wire.close()


async def test_answers_that_vary_on_host_get_no_route(
        origin: Origin, make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy(origin={"forward_host": True})
    await origin.publish("/l/host.bin", BODY)
    wire = await Wire.open(proxy.port)
    for _ in range(4):
        assert (await wire.get("/l/host.bin")).body == BODY
    assert lane_hits(proxy) == 0
    await wire.close()


async def test_idle_and_slow_heads_after_lane_answers_are_cut(
        origin: Origin, make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy(server={"header_timeout_seconds": 0.6})
    wire, _ = await routed(origin, proxy, "/l/i.bin")
    assert (await wire.get("/l/i.bin")).body == BODY
    assert lane_hits(proxy) >= 1
    assert await wire.closed(3.0), "an idle connection outlived the header timeout"
    # A head that trickles in after lane answers is cut as any other.
    wire, _ = await routed(origin, proxy, "/l/i2.bin")
    assert (await wire.get("/l/i2.bin")).body == BODY
    closed = False
    for piece in [b"GET /l/i2.bin HTTP/1.1\r\n", *[b"X-A: b\r\n"] * 40]:
        try:
            await wire.send(piece)
        except ConnectionError:
            closed = True
            break
        if await wire.closed(0.1):
            closed = True
            break
    assert closed, "a head trickling in for 4 s was still being read"


async def test_the_lane_can_be_switched_off(origin: Origin, make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy(server={"fast_hits": False})
    wire, _ = await routed(origin, proxy, "/l/off.bin")
    for _ in range(3):
        assert (await wire.get("/l/off.bin")).body == BODY
    assert proxy.runtime.lane is None and lane_hits(proxy) == 0
    await wire.close()


@pytest.mark.parametrize("fast", [True, False])
async def test_a_new_version_stored_by_another_process_is_served_at_once(
        origin: Origin, make_proxy: ProxyFactory, tmp_path: Path, fast: bool) -> None:
    """Two processes on one cache directory (as two workers): when one stores a new version,
    the other's memory copy and lane route of the old one die at once (the key's change
    signal), not after the memory tier's TTL (10 s by default)."""
    shared = {"dir": str(tmp_path / "shared")}
    first = await make_proxy(cache=shared, server={"fast_hits": fast})
    second = await make_proxy(cache=shared)
    wire, _ = await routed(origin, first, "/l/k.bin", X_Media_Cache_Control="max-age=600")
    assert (await wire.get("/l/k.bin")).body == BODY  # from memory (the lane, if on)
    newer = os.urandom(4096)
    await origin.publish("/l/k.bin", newer, X_Media_Cache_Control="max-age=600")
    other = await Wire.open(second.port)
    assert (await other.get("/l/k.bin", "Cache-Control: no-cache\r\n")).body == newer
    for _ in range(50):
        if not second.runtime.proxy.fills:
            break
        await asyncio.sleep(0.01)
    before = origin.count("/l/k.bin")
    answer = await wire.get("/l/k.bin")
    assert answer.body == newer and answer.field("X-Cache") == "HIT"
    assert origin.count("/l/k.bin") == before  # the new version, from the shared disk
    await wire.close()
    await other.close()
