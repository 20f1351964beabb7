"""Builds the origin application: routing, request counting, and the database's lifetime.

Rule: /_origin/ is reserved for the origin's own endpoints; every other path is media (GET and
HEAD public, PUT/DELETE/PATCH admin). Public reads also send `X-Media-Access: public|protected`.
Tests read `app[STATS_KEY]` (counts) and set `app[FAULTS_KEY]` (faults) in-process.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web

from origin import admin, sessions
from origin.conditional import format_http_date
from origin.faults import FaultRules
from origin.grants import SessionGrants
from origin.keys import (
    FAULTS_KEY,
    LIBRARY_KEY,
    PURGE_KEY,
    SESSIONS_KEY,
    SETTINGS_KEY,
    STATS_KEY,
    OriginSettings,
)
from origin.library import Library
from origin.public import serve_media
from origin.purge import PurgeNotifier
from origin.stats import RequestStats

__all__ = ["FAULTS_KEY", "STATS_KEY", "create_app"]

RESERVED_PREFIX = "/_origin/"
CLIENT_CLOSED_REQUEST = 499
_PUBLIC_METHODS = "GET, HEAD"
_ALL_METHODS = "GET, HEAD, PUT, DELETE, PATCH"

log = logging.getLogger(__name__)


@web.middleware
async def count_requests(request: web.Request, handler: admin.Handler) -> web.StreamResponse:
    stats = request.app[STATS_KEY]
    stats.record_request(request.method, request.path)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        stats.record_status(exc.status)
        raise
    except (asyncio.CancelledError, ConnectionError):
        # The client left before the headers went out, or the server cancelled the handler
        # (aiohttp's handler_cancellation, on in its test server): counted as nginx counts it.
        stats.record_status(CLIENT_CLOSED_REQUEST)
        raise
    except Exception:
        # Handlers stream bodies themselves and catch what happens after the headers, so a
        # response is still ours to send here.
        log.exception("%s %s failed", request.method, request.path)
        stats.record_status(500)
        return web.Response(status=500, text="internal error\n")
    stats.record_status(response.status)
    return response


async def dispatch(request: web.Request) -> web.StreamResponse:
    if request.path.startswith(RESERVED_PREFIX):
        return admin.error(404, f"no origin endpoint {request.method} {request.path}")
    method = request.method
    if method in ("GET", "HEAD"):
        return await serve_media(request)
    if method == "PUT":
        return await admin.publish(request)
    if method == "DELETE":
        return await admin.delete(request)
    if method == "PATCH":
        return await admin.update(request)
    allow = _PUBLIC_METHODS if admin.refusal(request) is not None else _ALL_METHODS
    return web.Response(status=405, headers={"Allow": allow}, text=f"method {method} not allowed\n")


def create_app(
    db_path: Path,
    *,
    admin_token: str | None,
    default_cache_control: str = "max-age=60",
    purge_url: str | None = None,
    purge_token: str | None = None,
    clock: Callable[[], float] = time.time,
) -> web.Application:
    """The origin over the SQLite file `db_path` (created if missing).

    `clock` gives unix seconds for Last-Modified and Date; tests inject the proxy's fake clock
    so both sides agree on time.
    """
    if re.search(r"[\x00-\x1f\x7f]", default_cache_control) or not default_cache_control.strip():
        raise ValueError("default_cache_control must be a non-empty header value")
    if admin_token is not None and not admin_token:
        raise ValueError("admin_token must not be empty (None disables the admin API)")
    app = web.Application(middlewares=[count_requests])
    app[SETTINGS_KEY] = OriginSettings(
        admin_token=admin_token, default_cache_control=default_cache_control.strip()
    )
    app[STATS_KEY] = RequestStats()
    app[FAULTS_KEY] = FaultRules()
    app[SESSIONS_KEY] = SessionGrants()

    library = Library(db_path, clock=clock)
    app[LIBRARY_KEY] = library

    async def date_from_clock(request: web.Request, response: web.StreamResponse) -> None:
        response.headers["Date"] = format_http_date(int(clock()))

    app.on_response_prepare.append(date_from_clock)

    async def library_context(app: web.Application) -> AsyncIterator[None]:
        try:
            await library.start()
            yield
        finally:
            await library.close()

    app.cleanup_ctx.append(library_context)

    if purge_url is not None:
        notifier = PurgeNotifier(purge_url, purge_token)
        app[PURGE_KEY] = notifier

        async def purge_context(app: web.Application) -> AsyncIterator[None]:
            await notifier.start()
            yield
            await notifier.close()

        app.cleanup_ctx.append(purge_context)

    app.router.add_get(RESERVED_PREFIX + "stats", admin.stats)
    app.router.add_post(RESERVED_PREFIX + "stats/reset", admin.reset_stats)
    app.router.add_get(RESERVED_PREFIX + "faults", admin.list_faults)
    app.router.add_post(RESERVED_PREFIX + "faults", admin.add_fault)
    app.router.add_delete(RESERVED_PREFIX + "faults", admin.clear_faults)
    app.router.add_get(RESERVED_PREFIX + "auth", sessions.auth_check)
    app.router.add_put(RESERVED_PREFIX + "sessions/{session}", sessions.put_session)
    app.router.add_delete(RESERVED_PREFIX + "sessions/{session}", sessions.delete_session)
    app.router.add_route("*", "/{path:.*}", dispatch)
    return app
