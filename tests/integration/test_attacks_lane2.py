"""Second attack review of the lane (server.fast_hits), in process: what a client that never
reads can make a worker hold, tag purges on lane connections, and conversions and other
methods on a routed URL; each against the same proxy with the lane off."""

from __future__ import annotations

import asyncio
import os
import socket

from proxy.lane.handler import LaneHandler
from tests.conftest import Origin, ProxyClient, ProxyFactory
from tests.integration.test_attacks_lane import lane_hits
from tests.integration.wire import Wire

LARGE = os.urandom(64 * 1024)


def buffered(proxy: ProxyClient) -> int:
    """Bytes the proxy's connections hold in their transports' write buffers."""
    runner = proxy.server.runner
    assert runner is not None and runner.server is not None
    return sum(conn.transport.get_write_buffer_size() for conn in runner.server.connections
               if conn.transport is not None)


async def held_by_a_client_that_never_reads(proxy: ProxyClient, path: str) -> int:
    """A client pipelining 40 GETs of `path` in one write and reading nothing: the most the
    proxy buffers for it over a short while."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    most = 0
    try:
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", proxy.port))
        sock.send(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode() * 200)
        for _ in range(50):
            await asyncio.sleep(0.01)
            most = max(most, buffered(proxy))
    finally:
        sock.close()
    return most


async def test_a_client_that_never_reads_makes_the_lane_hold_no_more_than_aiohttp(
        origin: Origin, make_proxy: ProxyFactory) -> None:
    """Pipelined GETs of a 64 KiB routed object from a client that never reads: the lane
    buffers no more output for it than aiohttp's own drain does (it held: a read whose
    answers pass 1 MiB goes to aiohttp, and a paused transport stops the lane)."""
    await origin.publish("/nr/l.bin", LARGE, X_Media_Cache_Control="max-age=600")
    on = await make_proxy()
    off = await make_proxy(server={"fast_hits": False})
    held = {}
    for name, proxy in (("on", on), ("off", off)):
        for _ in range(3):
            wire = await Wire.open(proxy.port)
            assert (await wire.get("/nr/l.bin")).body == LARGE
            await wire.close()
        held[name] = await held_by_a_client_that_never_reads(proxy, "/nr/l.bin")
    assert lane_hits(on) > 0
    assert held["off"] > 0
    assert held["on"] <= max(held["off"], 2 * (len(LARGE) + 1024)), held


async def test_a_read_handed_to_aiohttp_leaves_nothing_of_its_requests_in_the_lane(
        origin: Origin, make_proxy: ProxyFactory) -> None:
    """With the access log on, the lane collects each request's logged fields while it parses
    a read; a read it does not answer must not leave them on the connection. (They stayed
    until the next read: a connection paused on a client that never reads kept its last
    read's worth, about 11 times the read's size. Production shape, 2 workers, 100 clients
    pipelining 2,000 GETs of a 64 KiB routed object and never reading: workers' RSS +113 MiB
    with the lane against +43 MiB without; +45 MiB once they are dropped.)"""
    await origin.publish("/nr/s.bin", b"s" * 100, X_Media_Cache_Control="max-age=600")
    proxy = await make_proxy(log={"access_log": True})
    wire = await Wire.open(proxy.port)
    for _ in range(3):
        assert (await wire.get("/nr/s.bin")).status == 200
    runner = proxy.server.runner
    assert runner is not None and runner.server is not None
    (handler,) = runner.server.connections
    assert isinstance(handler, LaneHandler)
    parse = handler._lane_parse
    assert parse.lane.logs
    before = lane_hits(proxy)
    one = b"GET /nr/s.bin HTTP/1.1\r\nHost: test\r\nReferer: " + b"r" * 2000 + b"\r\n\r\n"
    handler.data_received(one * 50)  # answered by the lane
    assert lane_hits(proxy) == before + 50
    assert parse.log_items == [] and parse.found == []
    handler.data_received(one * 20 + b"GET /nr/miss.bin HTTP/1.1\r\nHost: test\r\n\r\n")
    assert lane_hits(proxy) == before + 50  # handed to aiohttp whole
    assert parse.log_items == [] and parse.found == []
    for _ in range(70):
        await wire.answer()
    await wire.close()
