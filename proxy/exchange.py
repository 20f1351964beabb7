"""One request's record as the lifecycle sees it, and the per-request keys others read.

Rule: everything a request holds that must be released (cached bodies' file descriptors, the
claim on its key, the in-process future others wait on) is registered in `Held`, and released
by it once, whatever path the request took; `hand_over` lets others go before a long body.
Imported by `app`, `logs`, `deliver` and `lifecycle`; imports nothing of theirs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from types import TracebackType
from typing import Any

from aiohttp import web

from proxy.policy import cachekey, tokens
from proxy.status import CacheStatus

STATUS_KEY = web.RequestKey("cache_status", CacheStatus)
KEY_KEY = web.RequestKey("cache_key", str)
TARGET_KEY = web.RequestKey("target", cachekey.Target)
VERDICT_KEY: web.RequestKey[tokens.Verdict] = web.RequestKey("token_verdict")
# Set once a protected object may be sent to this request (valid token or callout allow).
GRANTED_KEY: web.RequestKey[bool] = web.RequestKey("access_granted")
# Granted by the auth callout: the answer must not be stored by shared caches in front.
SESSION_GRANTED_KEY: web.RequestKey[bool] = web.RequestKey("session_granted")
# The TCP peer, when the client's address (`request.remote`) was read from a trusted proxy's
# forwarding header (see `app.client_request_factory`).
PEER_KEY: web.RequestKey[str | None] = web.RequestKey("peer")


def record_status(request: web.BaseRequest, status: CacheStatus) -> None:
    """The one writer of a request's cache status (X-Cache, the access log, the metric)."""
    request[STATUS_KEY] = status


@dataclasses.dataclass(eq=False)
class Held:
    """The one owner of what a request holds. Use as `async with ex.held:`."""

    pending: dict[str, asyncio.Future[Any]]
    bodies: list[Any] = dataclasses.field(default_factory=list)  # CachedBody: fds
    claim: Any = None  # store.claims.Claim
    future: asyncio.Future[Any] | None = None
    key: str = ""

    def body(self, cached: Any) -> Any:
        """Keep `cached` (a CachedBody) open until the request ends; returns it."""
        self.bodies.append(cached)
        return cached

    def take(self, claim: Any, key: str) -> asyncio.Future[Any]:
        """Hold `claim` on `key` and park a future in-process requests for `key` await."""
        self.claim, self.key = claim, key
        self.future = asyncio.get_running_loop().create_future()
        self.pending[key] = self.future
        return self.future

    def fail(self, error: Any, notice: dict[str, Any]) -> None:
        """The request that went to the origin for the key failed: waiters in this process
        get `error` from the future, followers elsewhere `notice` from the claim, at once."""
        if self.claim is not None and self.claim.held:
            with contextlib.suppress(OSError):
                self.claim.publish(notice)
        if self.future is not None and not self.future.done():
            self.future.set_result(error)

    def hand_over(self, result: Any = None) -> None:
        """Let others go: release the claim (unless a running fill took it over) and resolve
        the future (with `result`, the fill others may join, or None)."""
        if self.claim is not None and not self.claim.owned_by_fill:
            self.claim.release()
        future = self.future
        if future is not None:
            if not future.done():
                future.set_result(result)
            if self.pending.get(self.key) is future:
                del self.pending[self.key]

    async def __aenter__(self) -> Held:
        return self

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.hand_over()
        for cached in self.bodies:
            cached.close()
        self.bodies.clear()


@dataclasses.dataclass(eq=False)
class Exchange:
    """A GET or HEAD on its way through the lifecycle."""

    request: web.BaseRequest
    target: cachekey.Target
    held: Held
    trail: list[str] = dataclasses.field(default_factory=list)  # step names, for tests/logs

    @property
    def key(self) -> str:
        return self.target.key
