"""create_app(config): the public application and the admin application, wired together.

Rule: this is the one place where ProxyError becomes an HTTP response (a one-line reason,
never a traceback), and where long-lived resources (store, origin session, maintenance loop)
are opened and closed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web
from prometheus_client import CollectorRegistry

from proxy import deliver
from proxy.config import Config
from proxy.errors import ProxyError, StoreError
from proxy.handler import STATUS_KEY, Proxy
from proxy.metrics import Metrics
from proxy.origin import OriginClient
from proxy.status import CacheStatus
from proxy.store.index import Store

log = logging.getLogger(__name__)

PROXY_KEY = web.AppKey("proxy", Proxy)
STORE_KEY = web.AppKey("store", Store)
METRICS_KEY = web.AppKey("metrics", Metrics)
CONFIG_KEY = web.AppKey("config", Config)
READY_KEY = web.AppKey("ready", dict)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(exc: ProxyError) -> web.Response:
    return web.Response(
        status=exc.status,
        text=f"{exc.status} {exc.reason}: {exc.message}\n",
        headers={"X-Cache": CacheStatus.ERROR.value},
    )


@web.middleware
async def _errors_and_metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
    metrics = request.app[METRICS_KEY]
    started = time.perf_counter()
    try:
        response = await handler(request)
    except ProxyError as exc:
        request[STATUS_KEY] = CacheStatus.ERROR
        response = error_response(exc)
        if exc.status >= 500:
            log.warning("%s %s -> %s: %s", request.method, request.path, exc.status, exc.message)
    except deliver.Truncated:
        # Headers are out and the connection is closed: nothing more can be said.
        response = web.Response(status=200)
    except (ConnectionResetError, asyncio.CancelledError):
        metrics.observe_request(request.get(STATUS_KEY, CacheStatus.ERROR), request.method,
                                request.get(deliver.BYTES_KEY, 0), time.perf_counter() - started)
        raise
    metrics.observe_request(request.get(STATUS_KEY, CacheStatus.ERROR), request.method,
                            request.get(deliver.BYTES_KEY, 0), time.perf_counter() - started)
    return response


async def _maintenance(store: Store, metrics: Metrics, interval: float,
                       memory_ttl_seconds: float) -> None:
    """Flush batched access times, sweep bans, cull beyond the size limit, reap the
    graveyard: all off the event loop."""

    def sweep() -> int:
        return store.sweep_bans(min_ban_age_seconds=memory_ttl_seconds * 2 + 1.0)

    while True:
        await asyncio.sleep(interval)
        jobs = (("access_flush", store.flush_access_times), ("ban_sweep", sweep),
                ("cull", store.cull), ("reap", store.reap))
        for operation, fn in jobs:
            try:
                await asyncio.to_thread(fn)
            except StoreError as exc:
                metrics.store_errors.labels(operation).inc()
                log.warning("store %s failed: %s", operation, exc.message)


def open_store(config: Config) -> Store | None:
    try:
        store = Store(config.cache.dir, max_size_bytes=config.cache.max_size_bytes)
    except StoreError as exc:
        log.error("cache unavailable, passing every request to the origin: %s", exc.message)
        return None
    swept = store.sweep_temp()
    if swept:
        log.info("swept %d temp files left by stopped processes", swept)
    return store


def create_app(
    config: Config,
    *,
    registry: CollectorRegistry | None = None,
    clock: Callable[[], float] = time.time,
) -> web.Application:
    """The public application. With `registry` None a private registry is made."""
    registry = registry if registry is not None else CollectorRegistry()
    metrics = Metrics(registry)
    app = web.Application(
        middlewares=[_errors_and_metrics],
        # Above our own limit, so an over-long target gets our 414 rather than the parser's 400.
        handler_args={"max_line_size": config.server.max_url_bytes * 2 + 1024,
                      "max_field_size": config.server.max_header_bytes},
        client_max_size=1024**2,
    )
    app[CONFIG_KEY] = config
    app[METRICS_KEY] = metrics
    app[READY_KEY] = {}

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        store = open_store(config)
        origin = OriginClient(config.origin, chunk_bytes=config.cache.fill_chunk_bytes)
        await origin.start()
        proxy = Proxy(config, store, origin, metrics, clock)
        app[PROXY_KEY] = proxy
        maintenance = None
        if store is not None:
            app[STORE_KEY] = store
            maintenance = asyncio.create_task(
                _maintenance(store, metrics, config.cache.eviction_interval_seconds,
                             config.cache.memory_ttl_seconds)
            )
        yield
        if maintenance is not None:
            maintenance.cancel()
            await asyncio.gather(maintenance, return_exceptions=True)
        await proxy.close()
        await origin.close()
        if store is not None:
            store.close()

    app.cleanup_ctx.append(lifecycle)

    async def handle(request: web.Request) -> web.StreamResponse:
        return await request.app[PROXY_KEY].handle(request)

    app.router.add_route("*", "/{tail:.*}", handle)
    return app
