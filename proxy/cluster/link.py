"""This node's connection to Redis: the client, the key names, and the library boundary.

Rule: every Redis command is awaited through `Link.call`, which turns redis-py and socket
errors into `ClusterUnavailable`; nothing else in the cluster package catches RedisError
except where a connection is being closed anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from proxy.config import ClusterConfig
from proxy.errors import ProxyError

T = TypeVar("T")

SOCKET_TIMEOUT_SECONDS = 2.0  # one Redis command; a blackholed Redis must not stall a purge


class ClusterUnavailable(ProxyError):
    """Redis could not be reached or answered with an error (translated from redis-py)."""

    status = 503
    reason = "cluster_unavailable"


def redact(url: str) -> str:
    """The Redis URL without its password, for logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class Link:
    def __init__(self, config: ClusterConfig, node: str, clock: Callable[[], float]) -> None:
        self.config = config
        self.node = node
        self.clock = clock
        self.channel = config.channel
        self.ack_channel = f"{config.channel}:acks"
        self.bans_key = f"{config.channel}:bans"
        self.nodes_key = f"{config.channel}:nodes"
        self.redis: aioredis.Redis = aioredis.Redis.from_url(
            config.redis_url, decode_responses=True,
            socket_timeout=SOCKET_TIMEOUT_SECONDS, socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
            retry=Retry(NoBackoff(), 0),  # we reconnect ourselves, with backoff (node.py)
            client_name=f"mediaproxy-{node}")
        self.connected = False  # a session is up: subscribed, caught up, announced
        self.closing = asyncio.Event()

    def node_key(self, node: str) -> str:
        return f"{self.channel}:node:{node}"

    def applied_key(self, node: str) -> str:
        return f"{self.channel}:applied:{node}"

    async def call(self, awaitable: Awaitable[T]) -> T:
        """The library boundary: redis-py and socket errors become ClusterUnavailable."""
        try:
            return await awaitable
        except (RedisError, OSError) as exc:
            raise ClusterUnavailable(str(exc) or type(exc).__name__) from exc

    async def pause(self, seconds: float) -> None:
        """Sleep, but not past close()."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.closing.wait()


async def stop(tasks: list[asyncio.Task[None]], interval_seconds: float = 0.1) -> None:
    """Cancel until done. One cancel() is not always enough on Python 3.11: redis-py awaits
    `asyncio.wait_for`, which there drops a cancellation that races with its result; the loops
    also end by themselves once `closing` is set."""
    pending = {t for t in tasks if not t.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=interval_seconds)
    for task in tasks:  # retrieve outcomes, so none is reported as never retrieved
        if not task.cancelled():
            task.exception()


def awaited(result: Awaitable[Any] | Any) -> Awaitable[Any]:
    """redis-py types some commands `Awaitable[T] | T` (shared with its sync client)."""
    assert inspect.isawaitable(result)
    return result


def as_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return 0.0
