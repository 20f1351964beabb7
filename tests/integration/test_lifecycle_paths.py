"""Characterisation table of the request lifecycle: one row per way a request can end.

Each row gives a pre-state (made through the real origin and proxy), a request, and what must
come out: status, `X-Cache`, how many requests the origin got for the row's path, and the body
(sha256). Written before the handler was split into `proxy/lifecycle/` and unchanged by it;
cross-process rows (a fill followed from another worker) live in `tests/e2e`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from proxy.signing import sign_url
from tests.conftest import ADMIN_TOKEN, Clock, Origin, ProxyFactory, sha256
from tests.integration.test_proxy import settled

SMALL = os.urandom(4000)  # memory tier
LARGE = os.urandom(300_000)  # above memory_body_max_bytes: sendfile from disk
SECRET = "0123456789abcdef0123"

Prepare = Callable[[Origin, Any, Clock], Awaitable[None]]


@dataclass(frozen=True)
class Row:
    name: str
    prepare: Prepare
    status: int
    cache: str
    origin_requests: int | None  # for the row's path, after the request (None: not fixed)
    body: bytes | None = None
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    path: str = "/t/item"
    target: str | None = None  # request target when it differs from path (tokens)


async def publish(origin: Origin, body: bytes, cc: str = "max-age=600", **extra: str) -> None:
    await origin.publish("/t/item", body, X_Media_Cache_Control=cc, **extra)


async def prime(proxy: Any, path: str = "/t/item", **headers: str) -> None:
    r = await proxy.get(path, headers=headers)
    await r.read()
    await settled(proxy)


def stored(body: bytes, cc: str = "max-age=600", then: Prepare | None = None,
           **extra: str) -> Prepare:
    async def prepare(origin: Origin, proxy: Any, clock: Clock) -> None:
        await publish(origin, body, cc, **extra)
        await prime(proxy)
        if then is not None:
            await then(origin, proxy, clock)
    return prepare


def nothing(body: bytes, cc: str = "max-age=600") -> Prepare:
    async def prepare(origin: Origin, proxy: Any, clock: Clock) -> None:
        await publish(origin, body, cc)
    return prepare


async def age(origin: Origin, proxy: Any, clock: Clock) -> None:
    clock.offset += 1200


async def age_and_republish(origin: Origin, proxy: Any, clock: Clock) -> None:
    clock.offset += 1200
    await publish(origin, LARGE[::-1])


async def age_and_break_origin(origin: Origin, proxy: Any, clock: Clock) -> None:
    clock.offset += 1200
    await origin.fault(path_prefix="/t/", status=503)


async def purge(origin: Origin, proxy: Any, clock: Clock) -> None:
    r = await proxy.request("PURGE", "/t/item", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert r.status == 200


async def soft_purge(origin: Origin, proxy: Any, clock: Clock) -> None:
    r = await proxy.request("PURGE", "/t/item", headers={
        "Authorization": f"Bearer {ADMIN_TOKEN}", "X-Purge-Soft": "1"})
    assert r.status == 200


async def no_store(origin: Origin, proxy: Any, clock: Clock) -> None:
    await publish(origin, SMALL, "no-store")
    await prime(proxy)


async def break_origin(origin: Origin, proxy: Any, clock: Clock) -> None:
    await origin.fault(path_prefix="/t/", status=503)


async def down(origin: Origin, proxy: Any, clock: Clock) -> None:
    await publish(origin, SMALL)
    await origin.fault(path_prefix="/t/", status=502)


ROWS = [
    Row("cold miss, small", nothing(SMALL), 200, "MISS", 1, SMALL),
    Row("cold miss, large", nothing(LARGE), 200, "MISS", 1, LARGE),
    Row("hit from memory", stored(SMALL), 200, "HIT", 1, SMALL),
    Row("hit from disk", stored(LARGE), 200, "HIT", 1, LARGE),
    Row("head miss is not a fill", nothing(LARGE), 200, "MISS", 1, b"", method="HEAD"),
    Row("head hit", stored(LARGE), 200, "HIT", 1, b"", method="HEAD"),
    Row("range hit", stored(LARGE), 206, "HIT", 1, LARGE[10:20],
        headers={"Range": "bytes=10-19"}),
    Row("conditional hit", stored(LARGE), 304, "HIT", 1, b"",
        headers={"If-None-Match": "*"}),
    Row("unsatisfiable range", stored(LARGE), 416, "HIT", 1, None,
        headers={"Range": "bytes=999999-"}),
    Row("stale, validator: 304", stored(LARGE, then=age), 200, "REVALIDATED", 2, LARGE),
    Row("stale, changed at the origin", stored(LARGE, then=age_and_republish), 200, "EXPIRED",
        2, LARGE[::-1]),
    Row("stale-while-revalidate", stored(LARGE, "max-age=600, stale-while-revalidate=6000",
                                        then=age), 200, "UPDATING", None, LARGE),
    Row("stale-if-error", stored(LARGE, "max-age=600, stale-if-error=6000",
                                 then=age_and_break_origin), 200, "STALE", 2, LARGE),
    Row("stale, origin fails, no grace", stored(LARGE, then=age_and_break_origin), 503, "PASS",
        2, None),
    Row("request no-cache revalidates", stored(LARGE), 200, "REVALIDATED", 2, LARGE,
        headers={"Cache-Control": "no-cache"}),
    Row("purged: a miss again", stored(LARGE, then=purge), 200, "MISS", 2, LARGE),
    Row("soft-purged: revalidated", stored(LARGE, then=soft_purge), 200, "REVALIDATED", 2,
        LARGE),
    Row("not storable, then hit-for-pass", no_store, 200, "PASS", 2, SMALL),
    Row("origin error status relayed", break_origin, 503, "PASS", 1, None),
    Row("origin down on a miss", down, 502, "PASS", 1, None),
    Row("post passes", nothing(SMALL), 405, "PASS", 1, None, method="POST"),
    Row("protected, no token", stored(SMALL, X_Media_Access="protected"), 401, "DENIED", 1,
        None),
    Row("protected, token", stored(SMALL, X_Media_Access="protected"), 200, "HIT", 1, SMALL,
        target="signed"),
    Row("body on a get", nothing(SMALL), 400, "ERROR", 0, None,
        headers={"Content-Length": "3"}),
]


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
async def test_lifecycle_exit(row: Row, origin: Origin, make_proxy: ProxyFactory,
                              clock: Clock) -> None:
    proxy = await make_proxy(clock=clock, admin={"token": ADMIN_TOKEN},
                             auth={"keys": f"k1={SECRET}"})
    await row.prepare(origin, proxy, clock)
    target = row.target or row.path
    if target == "signed":
        target = sign_url(row.path, key_id="k1", secret=SECRET, ttl_seconds=600, now=clock())
    if row.method == "GET" and "Content-Length" in row.headers:
        from tests.conftest import raw_request

        answer = await raw_request(proxy.port, f"GET {target} HTTP/1.1\r\nHost: x\r\n"
                                   "Content-Length: 3\r\n\r\nabc", timeout=3)
        assert answer.startswith(b"HTTP/1.1 400") and b"X-Cache: ERROR" in answer
        assert origin.count(row.path) == row.origin_requests
        return
    r = await proxy.request(row.method, target, headers=row.headers, data=None)
    body = await r.read()
    assert (r.status, r.headers.get("X-Cache")) == (row.status, row.cache), body[:200]
    if row.body is not None:
        assert sha256(body) == sha256(row.body)
    await settled(proxy)
    for _ in range(100):  # a background refresh may still be on its way
        if not proxy.runtime.proxy.refreshing:
            break
        await asyncio.sleep(0.01)
    if row.origin_requests is not None:
        made = sum(origin.count(row.path, method) for method in ("GET", "HEAD", "POST"))
        assert made == row.origin_requests
