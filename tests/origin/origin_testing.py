"""Shared helpers for the origin's tests: the admin token, a publish call, bounded polling.

Rule: every network call in these tests is bounded in time (the client session's timeout or an
explicit one), and waiting is polling with a deadline, never a bare sleep.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient

ADMIN_TOKEN = "test-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
TIMEOUT = aiohttp.ClientTimeout(total=10)

Client = TestClient[web.Request, web.Application]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def body_of(size: int, seed: int = 0) -> bytes:
    """Distinct, non-repeating bytes, so a wrong offset never reads equal data."""
    block = hashlib.sha256(seed.to_bytes(8, "big")).digest()
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(block + counter.to_bytes(8, "big")).digest()
        counter += 1
    return bytes(out[:size])


async def publish(
    client: Client, path: str, body: bytes, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    async with client.put(path, data=body, headers={**ADMIN, **(headers or {})}) as resp:
        assert resp.status in (200, 201), await resp.text()
        result: dict[str, Any] = await resp.json()
        return result


async def wait_until(predicate: Callable[[], bool], timeout_seconds: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_seconds} s")
        await asyncio.sleep(0.02)
