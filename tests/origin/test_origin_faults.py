"""Injected faults are real socket behaviour: delay, throttle, truncation, error statuses."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from origin.app import FAULTS_KEY
from origin.faults import Fault, parse_fault
from tests.origin.origin_testing import ADMIN, Client, body_of, publish

BODY = body_of(10_000)


async def test_delay_before_headers(client: Client) -> None:
    await publish(client, "/slow/a", BODY)
    async with client.post(
        "/_origin/faults", json={"path_prefix": "/slow/", "delay_seconds": 0.4}, headers=ADMIN
    ) as resp:
        assert resp.status == 201
        assert (await resp.json())["faults"] == [{"path_prefix": "/slow/", "delay_seconds": 0.4}]
    started = time.monotonic()
    async with client.get("/slow/a") as resp:
        assert await resp.read() == BODY
    assert time.monotonic() - started >= 0.4
    with pytest.raises(asyncio.TimeoutError):
        async with client.get("/slow/a", timeout=aiohttp.ClientTimeout(total=0.1)):
            pass
    async with client.delete("/_origin/faults", headers=ADMIN) as resp:
        assert resp.status == 204
    started = time.monotonic()
    async with client.get("/slow/a") as resp:
        assert resp.status == 200
    assert time.monotonic() - started < 0.4


async def test_truncate_sends_full_length_then_closes(client: Client) -> None:
    await publish(client, "/t", BODY)
    client.app[FAULTS_KEY].add(Fault(path_prefix="/t", truncate_after_bytes=1000))
    async with client.get("/t") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Length"] == str(len(BODY))
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()

    # On the wire: exactly the first 1000 body bytes, then EOF.
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    try:
        writer.write(b"GET /t HTTP/1.1\r\nHost: origin\r\n\r\n")
        raw = await asyncio.wait_for(reader.read(-1), 5)
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"Content-Length: 10000" in head
    assert body == BODY[:1000]


async def test_status_fault_with_count(client: Client) -> None:
    await publish(client, "/x/a", BODY)
    client.app[FAULTS_KEY].add(Fault(path_prefix="/x/", status=503, count=2))
    for _ in range(2):
        async with client.get("/x/a") as resp:
            assert resp.status == 503
    async with client.get("/x/a") as resp:
        assert resp.status == 200


async def test_rate_throttles_the_body(client: Client) -> None:
    body = body_of(100_000)
    await publish(client, "/r", body)
    client.app[FAULTS_KEY].add(Fault(path_prefix="/r", rate_bytes_per_second=400_000))
    started = time.monotonic()
    async with client.get("/r") as resp:
        assert await resp.read() == body
    assert time.monotonic() - started >= 0.2


async def test_longest_prefix_wins(client: Client) -> None:
    rules = client.app[FAULTS_KEY]
    rules.add(Fault(path_prefix="/", status=500))
    rules.add(Fault(path_prefix="/media/", status=503))
    assert (fault := rules.match("/media/a")) is not None and fault.status == 503
    assert (fault := rules.match("/other")) is not None and fault.status == 500


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"delay_seconds": 1}, "path_prefix"),
        ({"path_prefix": "/x"}, "needs one of"),
        ({"path_prefix": "/x", "status": 99}, "status"),
        ({"path_prefix": "/x", "delay_seconds": "soon"}, "delay_seconds"),
        ({"path_prefix": "/x", "rate_bytes_per_second": 0}, "rate_bytes_per_second"),
        ({"path_prefix": "/x", "explode": True}, "unknown"),
        ([1], "object"),
    ],
)
def test_parse_fault_rejects(body: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_fault(body)


async def test_fault_endpoints_validate_and_need_admin(client: Client) -> None:
    async with client.post("/_origin/faults", json={"path_prefix": "/x", "status": 503}) as resp:
        assert resp.status == 401
    async with client.post("/_origin/faults", data=b"{", headers=ADMIN) as resp:
        assert resp.status == 400
    async with client.post("/_origin/faults", json={"path_prefix": "x"}, headers=ADMIN) as resp:
        assert resp.status == 400
        assert "path_prefix" in (await resp.json())["error"]
    async with client.get("/_origin/faults", headers=ADMIN) as resp:
        assert (await resp.json()) == {"faults": []}
