"""The auth callout's I/O half: asks the configured endpoint whether a session may read an
item, remembers the answer per (session, item) for a short time, and fails closed.

Rule: `check` never raises; a refused connection, a timeout or an unexpected status is
`Outcome.FAILED`, which the handler turns into a 503 (or 403), never into an allow. One
request per (session, item) is in flight at a time in a worker; concurrent requests share it.
Failures are never remembered, so the first request after the endpoint recovers asks again.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable

import aiohttp
from cachetools import TTLCache
from multidict import CIMultiDict
from yarl import URL

from proxy.config import AuthConfig, split_csv
from proxy.metrics import Metrics
from proxy.policy.headers import Headers
from proxy.policy.session import Outcome, credentials, interpret, session_id

log = logging.getLogger(__name__)

_Key = tuple[str, bytes]  # (session digest, digest of method and item): bounded size


class AuthCallout:
    def __init__(self, config: AuthConfig, origin_base: URL, metrics: Metrics,
                 clock: Callable[[], float] = time.time) -> None:
        url = config.callout_url
        self.url = URL(url) if url.startswith(("http://", "https://")) else URL(
            str(origin_base).rstrip("/") + url, encoded=True)
        self.forward = tuple(split_csv(config.callout_headers))
        self.cookie = config.callout_cookie
        self.timeout = config.callout_timeout_seconds
        self.metrics = metrics
        size = config.callout_cache_entries
        self._allowed: TTLCache[_Key, bool] | None = TTLCache(
            size, config.callout_allow_seconds, timer=clock
        ) if config.callout_allow_seconds > 0 else None
        self._denied: TTLCache[_Key, bool] | None = TTLCache(
            size, config.callout_deny_seconds, timer=clock
        ) if config.callout_deny_seconds > 0 else None
        self._pending: dict[_Key, asyncio.Task[Outcome]] = {}
        self._session: aiohttp.ClientSession | None = None
        self._failing = False
        self._generation = 0  # moves on every forget(): answers asked before are not kept

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=64, keepalive_timeout=4.0),
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept"),
        )

    async def close(self) -> None:
        for task in list(self._pending.values()):
            task.cancel()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def credentials(self, request: Headers) -> tuple[tuple[str, str], ...]:
        """The session fields this request carries (empty: it has no session to ask about)."""
        return credentials(request, self.forward, self.cookie)

    def forget(self) -> None:
        """Drop every remembered answer (after a purge: access may have changed)."""
        if self._allowed is not None:
            self._allowed.clear()
        if self._denied is not None:
            self._denied.clear()
        self._generation += 1
        self._pending = {}  # calls in flight predate the purge: nobody new joins them

    async def check(self, fields: tuple[tuple[str, str], ...], item: str, method: str
                    ) -> Outcome:
        key = (session_id(fields), hashlib.sha256(f"{method} {item}".encode()).digest())
        if self._allowed is not None and key in self._allowed:
            self.metrics.auth_callouts.labels("allow", "remembered").inc()
            return Outcome.ALLOW
        if self._denied is not None and key in self._denied:
            self.metrics.auth_callouts.labels("deny", "remembered").inc()
            return Outcome.DENY
        pending = self._pending
        task = pending.get(key)
        if task is None:
            task = asyncio.ensure_future(self._ask(key, fields, item, method))
            pending[key] = task
            task.add_done_callback(lambda _t: pending.pop(key, None))
        # Shielded: a client that leaves does not cancel the answer others are waiting for.
        return await asyncio.shield(task)

    async def _ask(self, key: _Key, fields: tuple[tuple[str, str], ...], item: str,
                   method: str) -> Outcome:
        # Exactly what the answer is remembered by: session fields, method and item (no
        # client address, which would make a remembered answer wrong for another address).
        headers = CIMultiDict(fields)
        headers["X-Original-URI"] = item
        headers["X-Original-Method"] = method
        generation = self._generation
        started = time.monotonic()
        outcome = Outcome.FAILED
        try:
            if self._session is None:
                raise RuntimeError("auth callout not started")
            async with self._session.get(self.url, headers=headers,
                                         allow_redirects=False) as response:
                outcome = interpret(response.status)
                if outcome is Outcome.FAILED:
                    log.warning("auth callout answered %d: refusing (fail closed)",
                                response.status)
        except Exception as exc:  # any failure refuses (CancelledError is not an Exception)
            if not self._failing:
                log.warning("auth callout %s failed: %s: refusing until it answers",
                            self.url, exc.__class__.__name__)
            self._failing = True
        else:
            if self._failing:
                log.info("auth callout %s answers again", self.url)
            self._failing = False
        self.metrics.auth_callout_duration.observe(time.monotonic() - started)
        self.metrics.auth_callouts.labels(outcome.value, "endpoint").inc()
        if generation != self._generation:
            return outcome  # a purge came meanwhile: this answer is for its callers only
        if outcome is Outcome.ALLOW and self._allowed is not None:
            self._allowed[key] = True
        elif outcome is Outcome.DENY and self._denied is not None:
            self._denied[key] = True
        return outcome
