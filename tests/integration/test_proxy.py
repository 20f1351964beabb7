"""The proxy in front of the real reference origin: misses, hits, conditionals, ranges, errors."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import (
    Clock,
    Origin,
    ProxyClient,
    ProxyFactory,
    free_port,
    raw_request,
    sha256,
)

BODY = os.urandom(300_000)


async def settled(proxy: ProxyClient) -> None:
    """Wait until every fill of this proxy is committed (or discarded)."""
    fills = proxy.runtime.proxy.fills
    for _ in range(200):
        if not fills:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("fills did not settle")


async def test_miss_then_hit_same_bytes(origin: Origin, proxy: ProxyClient) -> None:
    await origin.publish("/m/a.bin", BODY)
    r1 = await proxy.get("/m/a.bin")
    assert r1.status == 200
    assert r1.headers["X-Cache"] == "MISS"
    assert sha256(await r1.read()) == sha256(BODY)
    r2 = await proxy.get("/m/a.bin")
    assert r2.headers["X-Cache"] == "HIT"
    assert sha256(await r2.read()) == sha256(BODY)
    assert int(r2.headers["Content-Length"]) == len(BODY)
    assert "Age" in r2.headers
    assert "1.1 mediaproxy" in r2.headers["Via"]
    assert r2.headers["X-Media-Access"] == "public"  # unknown origin fields pass through
    assert r2.headers["ETag"] == r1.headers["ETag"]  # the origin's validator, not ours
    assert origin.count("/m/a.bin") == 1


async def test_head_miss_does_not_fill_and_head_hit_has_no_body(
    origin: Origin, proxy: ProxyClient
) -> None:
    await origin.publish("/m/h.bin", BODY)
    r = await proxy.head("/m/h.bin")
    assert r.status == 200 and int(r.headers["Content-Length"]) == len(BODY)
    assert origin.count("/m/h.bin", "HEAD") == 1 and origin.count("/m/h.bin") == 0
    await (await proxy.get("/m/h.bin")).read()
    await settled(proxy)
    r = await proxy.head("/m/h.bin")
    assert r.headers["X-Cache"] == "HIT"
    assert int(r.headers["Content-Length"]) == len(BODY)
    assert await r.read() == b""


async def test_conditional_requests_from_the_cache(origin: Origin, proxy: ProxyClient) -> None:
    await origin.publish("/m/c.bin", BODY)
    first = await proxy.get("/m/c.bin")
    await first.read()
    etag, last_modified = first.headers["ETag"], first.headers["Last-Modified"]
    r = await proxy.get("/m/c.bin", headers={"If-None-Match": etag})
    assert (r.status, r.headers["X-Cache"]) == (304, "HIT")
    assert r.headers["ETag"] == etag and await r.read() == b""
    r = await proxy.get("/m/c.bin", headers={"If-Modified-Since": last_modified})
    assert r.status == 304
    r = await proxy.get("/m/c.bin", headers={"If-None-Match": '"other"'})
    assert r.status == 200 and sha256(await r.read()) == sha256(BODY)
    r = await proxy.get("/m/c.bin", headers={"If-Match": '"other"'})
    assert r.status == 412
    assert origin.count("/m/c.bin") == 1


async def test_conditional_on_a_miss_is_answered_from_the_new_response(
    origin: Origin, proxy: ProxyClient
) -> None:
    info = await origin.publish("/m/cm.bin", BODY)
    r = await proxy.get("/m/cm.bin", headers={"If-None-Match": info["etag"]})
    assert (r.status, r.headers["X-Cache"]) == (304, "MISS")
    await asyncio.sleep(0.2)  # the fill goes on without the client
    r = await proxy.get("/m/cm.bin")
    assert r.headers["X-Cache"] == "HIT" and sha256(await r.read()) == sha256(BODY)


async def test_ranges_from_the_cache(origin: Origin, proxy: ProxyClient) -> None:
    await origin.publish("/m/r.bin", BODY)
    first = await proxy.get("/m/r.bin")
    await first.read()
    r = await proxy.get("/m/r.bin", headers={"Range": "bytes=100-199"})
    assert r.status == 206 and r.headers["X-Cache"] == "HIT"
    assert r.headers["Content-Range"] == f"bytes 100-199/{len(BODY)}"
    assert await r.read() == BODY[100:200]
    r = await proxy.get("/m/r.bin", headers={"Range": "bytes=-10"})
    assert await r.read() == BODY[-10:]
    r = await proxy.get("/m/r.bin", headers={"Range": f"bytes={len(BODY)}-"})
    assert r.status == 416 and r.headers["Content-Range"] == f"bytes */{len(BODY)}"
    r = await proxy.get("/m/r.bin", headers={"Range": "bytes=0-9",
                                              "If-Range": first.headers["ETag"]})
    assert r.status == 206 and await r.read() == BODY[:10]
    r = await proxy.get("/m/r.bin", headers={"Range": "bytes=0-9", "If-Range": '"stale"'})
    assert r.status == 200 and len(await r.read()) == len(BODY)
    r = await proxy.get("/m/r.bin", headers={"Range": "bytes=0-9",
                                              "If-Range": first.headers["Last-Modified"]})
    assert r.status == 206
    r = await proxy.get("/m/r.bin", headers={"Range": "bytes=0-1,4-5"})
    assert r.status == 200
    r = await proxy.get("/m/r.bin", headers={"Range": "bytes=" + "0-," * 1000})
    assert r.status == 200 and len(await r.read()) == len(BODY)
    assert origin.count("/m/r.bin") == 1


async def test_range_on_a_miss_is_served_from_the_fill(origin: Origin, proxy: ProxyClient) -> None:
    await origin.publish("/m/rm.bin", BODY)
    r = await proxy.get("/m/rm.bin", headers={"Range": "bytes=1000-1999"})
    assert (r.status, r.headers["X-Cache"]) == (206, "MISS")
    assert await r.read() == BODY[1000:2000]
    await asyncio.sleep(0.2)
    r = await proxy.get("/m/rm.bin")
    assert r.headers["X-Cache"] == "HIT" and await r.read() == BODY
    assert origin.count("/m/rm.bin") == 1


async def test_unsafe_methods_pass_through_with_their_body(
    origin: Origin, proxy: ProxyClient
) -> None:
    body = os.urandom(50_000)
    r = await proxy.put("/m/up.bin", data=body,
                        headers={"Authorization": "Bearer test-admin-token"})
    assert r.status in (200, 201) and r.headers["X-Cache"] == "PASS"
    assert (await r.json())["sha256"] == sha256(body)
    r = await proxy.post("/m/up.bin", data=b"x")
    assert r.headers["X-Cache"] == "PASS"
    assert r.status == 405  # the origin's own answer, relayed
    r = await proxy.delete("/m/up.bin")
    assert r.status == 401  # no token: the origin refuses, we relay
    assert origin.count("/m/up.bin", "PUT") == 1


async def test_origin_down_is_502(make_proxy: ProxyFactory) -> None:
    proxy = await make_proxy(origin={"url": f"http://127.0.0.1:{free_port()}"})
    r = await proxy.get("/m/x")
    assert r.status == 502 and r.headers["X-Cache"] == "ERROR"
    text = await r.text()
    assert text.startswith("502 origin_error: the origin could not be reached")
    # What failed, never where: no address, port or OS error for a client to map the network.
    port = proxy.runtime.config.origin.url.rsplit(":", 1)[1]
    assert port not in text and "127.0.0.1" not in text and "Traceback" not in text


async def test_origin_slow_is_504(origin: Origin, make_proxy: ProxyFactory) -> None:
    await origin.publish("/slow/a.bin", BODY)
    await origin.fault(path_prefix="/slow/", delay_seconds=3.0)
    proxy = await make_proxy(origin={"read_timeout_seconds": 0.5})
    r = await proxy.get("/slow/a.bin")
    assert r.status == 504 and "origin_timeout" in await r.text()


async def test_broken_origin_body_is_cut_and_never_committed(
    origin: Origin, proxy: ProxyClient
) -> None:
    await origin.publish("/broken/a.bin", BODY)
    await origin.fault(path_prefix="/broken/", truncate_after_bytes=100_000)
    r = await proxy.get("/broken/a.bin")
    assert r.status == 200 and int(r.headers["Content-Length"]) == len(BODY)
    with pytest.raises(aiohttp.ClientPayloadError):
        await r.read()
    await asyncio.sleep(0.2)
    store = proxy.runtime.store
    assert store is not None
    assert store.lookup("/broken/a.bin") is None
    assert list(store.tmp_dir.glob("*.part")) == []  # the partial body was discarded
    assert await origin.admin("DELETE", "/_origin/faults") in (200, 204)
    r = await proxy.get("/broken/a.bin")
    assert r.headers["X-Cache"] == "MISS" and sha256(await r.read()) == sha256(BODY)


async def test_uncacheable_responses_are_passed(origin: Origin, proxy: ProxyClient) -> None:
    await origin.publish("/m/ns.bin", b"secret", X_Media_Cache_Control="no-store")
    for _ in range(2):
        r = await proxy.get("/m/ns.bin")
        assert r.headers["X-Cache"] == "PASS" and await r.read() == b"secret"
    assert origin.count("/m/ns.bin") == 2


async def test_404_passes(origin: Origin, proxy: ProxyClient) -> None:
    r = await proxy.get("/nope")
    assert r.status == 404


@pytest.mark.parametrize(
    ("path", "status"),
    [("/a/../etc/passwd", 400), ("/a/%2e%2e/b", 400), ("/a%2F..%2Fb", 400), ("/a%zz", 400),
     ("/" + "a" * 9000, 414)],
)
async def test_hostile_paths(origin: Origin, proxy: ProxyClient, path: str, status: int) -> None:
    answer = await raw_request(proxy.port, f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.startswith(f"HTTP/1.1 {status} ".encode())
    assert b"Traceback" not in answer
    assert origin.count(path) == 0 and origin.count("/etc/passwd") == 0


async def test_concurrent_misses_collapse_in_process(origin: Origin, proxy: ProxyClient) -> None:
    big = os.urandom(3_000_000)
    await origin.publish("/m/herd.bin", big)
    await origin.fault(path_prefix="/m/herd", rate_bytes_per_second=6_000_000)
    responses = await asyncio.gather(*(proxy.get("/m/herd.bin") for _ in range(20)))
    bodies = await asyncio.gather(*(r.read() for r in responses))
    assert {sha256(b) for b in bodies} == {sha256(big)}
    assert origin.count("/m/herd.bin") == 1


async def test_stale_entry_is_revalidated_with_a_304(
    origin: Origin, make_proxy: ProxyFactory, clock: Clock
) -> None:
    await origin.publish("/m/rv.bin", BODY, X_Media_Cache_Control="max-age=60")
    proxy = await make_proxy(clock=clock)
    await (await proxy.get("/m/rv.bin")).read()
    await settled(proxy)
    clock.offset = 120
    r = await proxy.get("/m/rv.bin")
    assert r.headers["X-Cache"] == "REVALIDATED"
    assert await r.read() == BODY
    assert int(r.headers["Age"]) < 60
    r = await proxy.get("/m/rv.bin")
    assert r.headers["X-Cache"] == "HIT"
    assert origin.count("/m/rv.bin") == 2


async def test_new_revision_after_expiry_replaces_the_entry(
    origin: Origin, make_proxy: ProxyFactory, clock: Clock
) -> None:
    await origin.publish("/m/nr.bin", BODY, X_Media_Cache_Control="max-age=60")
    proxy = await make_proxy(clock=clock)
    await (await proxy.get("/m/nr.bin")).read()
    await settled(proxy)
    new = os.urandom(1000)
    await origin.publish("/m/nr.bin", new, X_Media_Cache_Control="max-age=60")
    r = await proxy.get("/m/nr.bin")
    assert r.headers["X-Cache"] == "HIT" and await r.read() == BODY  # still fresh
    clock.offset = 120
    r = await proxy.get("/m/nr.bin")
    assert r.headers["X-Cache"] == "EXPIRED" and await r.read() == new
    await settled(proxy)
    r = await proxy.get("/m/nr.bin")
    assert r.headers["X-Cache"] == "HIT" and await r.read() == new


async def test_eviction_keeps_the_cache_under_its_budget(
    origin: Origin, make_proxy: ProxyFactory
) -> None:
    limit = 2 * 1024 * 1024
    proxy = await make_proxy(cache={"max_size_bytes": limit, "eviction_interval_seconds": 0.05})
    bodies = {f"/ev/{i}.bin": os.urandom(400_000) for i in range(10)}
    for path, body in bodies.items():
        await origin.publish(path, body)
    for path in bodies:
        assert await (await proxy.get(path)).read() == bodies[path]
        await asyncio.sleep(0.1)  # let fills commit in order
    store = proxy.runtime.store
    assert store is not None
    for _ in range(50):
        if store.volume() <= limit:
            break
        await asyncio.sleep(0.05)
    assert store.volume() <= limit
    assert store.lookup("/ev/0.bin") is None  # least recently used went first
    last = store.lookup("/ev/9.bin")
    assert last is not None
    last.close()
    r = await proxy.get("/ev/0.bin")
    assert r.headers["X-Cache"] == "MISS" and await r.read() == bodies["/ev/0.bin"]


async def test_row_whose_body_file_vanished_is_a_miss(origin: Origin, proxy: ProxyClient) -> None:
    await origin.publish("/m/gone.bin", BODY)
    await (await proxy.get("/m/gone.bin")).read()
    await asyncio.sleep(0.2)
    store = proxy.runtime.store
    assert store is not None
    bodies = [p for p in Path(store.directory).rglob("*.val")]
    assert len(bodies) == 1
    bodies[0].write_bytes(b"short")  # wrong size: must never be served
    r = await proxy.get("/m/gone.bin")
    assert r.headers["X-Cache"] == "MISS" and await r.read() == BODY


async def test_successful_unsafe_methods_invalidate_the_target(
    origin: Origin, proxy: ProxyClient
) -> None:
    await origin.publish("/m/inv.bin", BODY)
    await (await proxy.get("/m/inv.bin")).read()
    await settled(proxy)
    assert (await proxy.get("/m/inv.bin")).headers["X-Cache"] == "HIT"
    r = await proxy.post("/m/inv.bin", data=b"x")  # the origin refuses (405): no invalidation
    assert r.status == 405
    assert (await proxy.get("/m/inv.bin")).headers["X-Cache"] == "HIT"
    new = os.urandom(1000)
    r = await proxy.put("/m/inv.bin", data=new, headers={"Authorization":
                                                         "Bearer test-admin-token"})
    assert r.status in (200, 201)
    r = await proxy.get("/m/inv.bin")
    assert r.headers["X-Cache"] == "MISS" and await r.read() == new


@pytest.mark.parametrize("abandon_bytes", [1_000_000, 0], ids=["abandon", "always-finish"])
async def test_a_fill_nobody_reads_is_abandoned_past_the_threshold(
    origin: Origin, make_proxy: ProxyFactory, abandon_bytes: int
) -> None:
    big = os.urandom(8_000_000)
    await origin.publish("/ab/movie.mp4", big)
    await origin.fault(path_prefix="/ab/", rate_bytes_per_second=4_000_000)
    proxy = await make_proxy(cache={"fill_abandon_bytes": abandon_bytes})
    async with aiohttp.ClientSession() as session:
        response = await session.get(str(proxy.make_url("/ab/movie.mp4")))
        await response.content.readexactly(100_000)
        response.close()  # the only client leaves early
    fills = proxy.runtime.proxy.fills
    for _ in range(400):
        if not fills:
            break
        await asyncio.sleep(0.02)
    assert not fills
    abandoned = proxy.runtime.metrics.fills.labels("abandoned")._value.get()
    store = proxy.runtime.store
    assert store is not None
    committed = store.lookup("/ab/movie.mp4")
    if abandon_bytes:
        assert abandoned == 1 and committed is None
        assert not list(store.tmp_dir.glob("*.part"))
    else:
        assert abandoned == 0 and committed is not None
        committed.close()
        r = await proxy.get("/ab/movie.mp4")
        assert r.headers["X-Cache"] == "HIT" and await r.read() == big


async def _read_response(reader: asyncio.StreamReader) -> tuple[bytes, dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    status, *lines = head.decode("latin-1").split("\r\n")
    fields = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines if line)}
    body = await asyncio.wait_for(reader.readexactly(int(fields["content-length"])), 10)
    return status.encode(), fields, body


async def test_memory_hits_on_the_wire_pipelined_and_http10(
    origin: Origin, proxy: ProxyClient
) -> None:
    """Small hits leave as pre-serialised bytes: they must be the same response aiohttp would
    have written, delimited exactly (pipelining), and HTTP/1.0 or `close` still honoured."""
    await origin.publish("/w/a.bin", BODY)
    assert (await proxy.get("/w/a.bin")).status == 200
    await settled(proxy)
    via_client = await proxy.get("/w/a.bin")
    assert via_client.headers["X-Cache"] == "HIT" and await via_client.read() == BODY
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
    try:
        writer.write(b"GET /w/a.bin HTTP/1.1\r\nHost: x\r\n\r\n" * 3)
        for _ in range(3):
            status, fields, body = await _read_response(reader)
            assert status == b"HTTP/1.1 200 OK" and body == BODY
            assert fields["x-cache"] == "HIT" and fields["etag"] == via_client.headers["ETag"]
            assert int(fields["age"]) >= 0 and "date" in fields and "via" in fields
            assert "connection" not in fields
        writer.write(b"GET /w/a.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        status, fields, body = await _read_response(reader)
        assert body == BODY and fields.get("connection") == "close"
        assert await asyncio.wait_for(reader.read(), 10) == b""  # and it did close
    finally:
        writer.close()
    answer = await raw_request(proxy.port, "GET /w/a.bin HTTP/1.0\r\nHost: x\r\n\r\n")
    assert answer.startswith(b"HTTP/1.0 200") and answer.endswith(BODY)
