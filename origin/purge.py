"""Tells a cache that an item changed: POST {"url": "<path>"} to a configured purge URL.

Rule: fire-and-forget. A purge never delays or fails the admin request that caused it; it has a
short timeout and its failures are logged, not raised.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp

PURGE_TIMEOUT_SECONDS = 2.0

log = logging.getLogger(__name__)


class PurgeNotifier:
    def __init__(self, url: str, token: str | None) -> None:
        self._url = url
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=PURGE_TIMEOUT_SECONDS)
        )

    def notify(self, path: str) -> None:
        if self._session is None:
            log.warning("purge of %s skipped: notifier not started", path)
            return
        task = asyncio.get_running_loop().create_task(self._post(self._session, path))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post(self, session: aiohttp.ClientSession, path: str) -> None:
        try:
            async with session.post(self._url, json={"url": path}, headers=self._headers) as resp:
                if resp.status >= 400:
                    log.warning("purge of %s: %s answered %d", path, self._url, resp.status)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("purge of %s via %s failed: %r", path, self._url, exc)

    async def close(self) -> None:
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=PURGE_TIMEOUT_SECONDS)
        for task in self._tasks:
            task.cancel()
        if self._session is not None:
            await self._session.close()
            self._session = None
