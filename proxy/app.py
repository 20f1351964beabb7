"""create_app(config): the public application and the admin application, wired together.

Rule: this is the one place where ProxyError becomes an HTTP response (a one-line reason,
never a traceback), and where long-lived resources (store, origin session, maintenance loop)
are opened and closed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from proxy import deliver
from proxy.config import Config
from proxy.errors import ProxyError, StoreError
from proxy.handler import STATUS_KEY, Proxy
from proxy.metrics import Metrics, StoreCollector
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


async def _maintenance(store: Store, metrics: Metrics, interval: float) -> None:
    """Flush batched access times and cull beyond the size limit, off the event loop."""
    while True:
        await asyncio.sleep(interval)
        jobs = (("access_flush", store.flush_access_times), ("cull", store.cull),
                ("reap", store.reap))
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
                _maintenance(store, metrics, config.cache.eviction_interval_seconds)
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


def create_admin_app(
    config: Config,
    registry: CollectorRegistry,
    store_for_stats: Callable[[], Store | None],
    *,
    workers_ready: Callable[[], tuple[int, int]] | None = None,
) -> web.Application:
    """The admin listener: /metrics, /healthz (process up), /readyz (cache dir usable)."""
    app = web.Application()
    registry.register(
        StoreCollector(
            lambda: _require(store_for_stats()).volume(),
            lambda: _require(store_for_stats()).entry_count(),
            lambda: _superseded(_require(store_for_stats())),
        )
    )

    async def metrics(_: web.Request) -> web.Response:
        body = await asyncio.to_thread(generate_latest, registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        store = store_for_stats()
        problems: list[str] = []
        if store is None:
            problems.append("cache directory unavailable")
        elif not await asyncio.to_thread(store.writable):
            problems.append(f"cache directory not writable: {store.directory}")
        if workers_ready is not None:
            ready, wanted = workers_ready()
            if ready < wanted:
                problems.append(f"{ready} of {wanted} workers listening")
        status = 503 if problems else 200
        return web.Response(status=status, text=json.dumps({"ready": not problems,
                                                            "problems": problems}) + "\n",
                            content_type="application/json")

    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


def _superseded(store: Store) -> tuple[int, int]:
    stats = store.graveyard_stats()
    return stats.files, stats.bytes


def _require(store: Store | None) -> Store:
    if store is None:
        raise StoreError("no store")
    return store
