"""The public application: long-lived resources, and the one place errors become responses.

Rule: `PublicApp.handle` is the whole request entry point (aiohttp's low-level `web.Server`
calls it directly: no router, no middleware chain, which measured 1.5-2x the small-hit rate
of a `web.Application` here). ProxyError becomes a one-line plain-text answer with its status;
anything unexpected is logged and becomes a bare 500, never a traceback to the client.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from proxy import deliver
from proxy.config import Config, ServerConfig
from proxy.errors import AuthError, ImageRefused, ProxyError, StoreError
from proxy.exchange import PEER_KEY, STATUS_KEY, record_status
from proxy.lane.lane import Lane, LaneServer, aiohttp_fits, keep_tidy
from proxy.lane.routes import Routes
from proxy.lifecycle import Proxy
from proxy.logs import ACCESS_LOGGER
from proxy.metrics import Metrics
from proxy.origin import OriginClient
from proxy.policy import forward
from proxy.status import CacheStatus, error_status
from proxy.store.index import ORPHAN_MIN_AGE_SECONDS, Store

if TYPE_CHECKING:
    from proxy.images.pool import ConversionPool

log = logging.getLogger(__name__)

ORPHAN_SCAN_PERIOD_SECONDS = 12.0


def error_response(exc: ProxyError) -> web.Response:
    """The answer to a refused or failed request; its cache status is `error_status`."""
    status = error_status(exc.status, auth=isinstance(exc, AuthError))
    if isinstance(exc, ImageRefused):
        # A conversion refused (bad parameters, not an image, over the limits): machine-
        # readable, never stored, the connection kept (the request itself was well formed).
        return web.json_response({"error": exc.reason, "detail": exc.message},
                                 status=exc.status, headers={
                                     "X-Cache": status.value, "Cache-Control": "no-store"})
    if exc.status == 400:
        # A malformed request (a body on a GET, a bad target) leaves the connection in a
        # state we do not trust: answer and close it, as nginx does.
        response = web.Response(status=400, text=f"400 {exc.reason}: {exc.message}\n",
                                headers={"X-Cache": status.value, "Cache-Control": "no-store"})
        response.force_close()
        return response
    if isinstance(exc, AuthError):
        # Machine-readable, and no more detail than the reason: nothing that helps forging.
        headers = {"X-Cache": status.value, "Cache-Control": "no-store"}
        if exc.status == 401:
            headers["WWW-Authenticate"] = 'Signed-URL realm="media"'
        return web.json_response({"error": exc.reason}, status=exc.status, headers=headers)
    # Server-side failures say what failed, never where: the origin's address and the OS
    # error stay in the log (PublicApp.handle logs every 5xx with its detail).
    text = _PUBLIC_REASONS.get(exc.reason, exc.message) if exc.status >= 500 else exc.message
    return web.Response(
        status=exc.status,
        text=f"{exc.status} {exc.reason}: {text}\n",
        headers={"X-Cache": status.value},
    )


_PUBLIC_REASONS = {
    "origin_error": "the origin could not be reached or broke the response",
    "origin_timeout": "the origin did not answer in time",
    "store_error": "the cache is not usable",
    "internal_error": "internal error",
}


def client_request_factory(server: ServerConfig) -> Callable[..., web.BaseRequest] | None:
    """With trusted proxies configured, requests whose `remote` is the client behind them
    (from the configured forwarding header, believed only from a trusted peer), so tokens
    bound to an address, purge networks, the callout and the logs all see the real client.
    None (aiohttp's own requests) otherwise."""
    trusted = forward.parse_networks(server.trusted_networks())
    if not trusted:
        return None
    real_ip = forward.RealIp(trusted, server.real_ip_header.lower())

    def make(message: Any, payload: Any, protocol: Any, writer: Any, task: Any
             ) -> web.BaseRequest:
        peername = protocol.peername
        peer = str(peername[0]) if isinstance(peername, (list, tuple)) else (
            None if peername is None else str(peername))
        remote = real_ip.client(peer, message.headers.items())
        request = web.BaseRequest(message, payload, protocol, writer, task,
                                  asyncio.get_running_loop(), remote=remote)
        request[PEER_KEY] = peer
        return request

    return make


def sweep_bans(store: Store, config: Config) -> int:
    """Sweep purged entries; a ban retires once no worker's memory tier can still hold a copy
    loaded before it."""
    return store.sweep_bans(min_ban_age_seconds=config.cache.memory_ttl_seconds * 2 + 1.0)


def open_store(config: Config) -> Store | None:
    try:
        store = Store(config.cache.dir, max_size_bytes=config.cache.max_size_bytes,
                      min_free_bytes=config.cache.min_free_bytes)
    except StoreError as exc:
        log.error("cache unavailable, passing every request to the origin: %s", exc.message)
        return None
    # Owner-only: the cache holds protected items, and their headers, in plain files.
    with contextlib.suppress(OSError):
        os.chmod(config.cache.dir, 0o700)
    swept = store.sweep_temp()
    if swept:
        log.info("swept %d temp files left by stopped processes", swept)
    return store


class PublicApp:
    """Everything one worker needs to answer public requests."""

    def __init__(
        self,
        config: Config,
        *,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], float] = time.time,
        sweeps_bans: bool = True,
    ) -> None:
        self.config = config
        # False in the workers of a supervisor, which sweeps purged entries itself, off the
        # processes that serve (a 100,000-entry sweep would otherwise take their CPU).
        self.sweeps_bans = sweeps_bans
        self.clock = clock
        self.metrics = Metrics(registry if registry is not None else CollectorRegistry())
        self.store: Store | None = None
        self.origin = OriginClient(config.origin, chunk_bytes=config.cache.fill_chunk_bytes,
                                   keep_fields=frozenset({config.auth.access_header.lower()}))
        self._proxy: Proxy | None = None
        self._pool: ConversionPool | None = None
        self._maintenance: asyncio.Task[None] | None = None
        self._startup_check: asyncio.Task[None] | None = None
        self._tidy: asyncio.Task[None] | None = None
        self.lane: Lane | None = None  # made at start, when the memory tier keeps routes
        # Background store jobs run here, one at a time, so close() can wait for the one in
        # flight before the store is closed under it.
        self._jobs = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="maintenance")

    @property
    def proxy(self) -> Proxy:
        if self._proxy is None:
            raise RuntimeError("PublicApp.start() has not run")
        return self._proxy

    async def start(self) -> None:
        self.store = open_store(self.config)
        await self.origin.start()
        if self.config.images.enabled:
            from proxy.images.pool import ConversionPool  # spawns libvips processes

            self._pool = ConversionPool(self.config.images, metrics=self.metrics)
            await self._pool.start()
        self._proxy = Proxy(self.config, self.store, self.origin, self.metrics, self.clock,
                            pool=self._pool)
        await self._proxy.start()
        self.lane = self._make_lane(self._proxy.ctx.routes)
        if self.lane is not None:
            self._tidy = asyncio.create_task(keep_tidy(self.lane, self.flush_lane))
        if self.store is not None:
            self._maintenance = asyncio.create_task(self._maintain(self.store))
            self._startup_check = asyncio.create_task(self._check_leftovers(self.store))

    def _make_lane(self, routes: Routes | None) -> Lane | None:
        """The lane of this worker's connections, when routes are kept and this aiohttp
        has the handler the lane was written against."""
        if routes is None:
            return None
        if not aiohttp_fits():
            log.warning("server.fast_hits: this aiohttp's request handler is not the one the "
                        "lane was written for; every request takes the full path")
            return None
        server = self.config.server
        trusted = forward.parse_networks(server.trusted_networks())
        header = server.real_ip_header.lower()
        # The access log aiohttp's handler writes (server.public_runner), by name.
        logger = logging.getLogger(ACCESS_LOGGER) if self.config.log.access_log else None
        return Lane(routes, max_line=server.max_url_bytes * 2 + 1024,
                    max_field=server.max_header_bytes, clock=self.clock,
                    touch=self.store.touch if self.store is not None else None,
                    access_log=logger,
                    real_ip=forward.RealIp(trusted, header) if trusted else None,
                    real_ip_header=header.encode("ascii"))

    def flush_lane(self) -> None:
        if self.lane is not None:
            self.lane.tally.flush(self.metrics)

    async def close(self) -> None:
        for task in (self._tidy, self._maintenance, self._startup_check):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await asyncio.to_thread(self._jobs.shutdown, True)
        self.flush_lane()
        if self._proxy is not None:
            await self._proxy.close()
        if self._pool is not None:
            await self._pool.close()
        await self.origin.close()
        if self.store is not None:
            self.store.close()

    def make_server(self, **handler_args: Any) -> web.Server:
        server_config = self.config.server
        return LaneServer(
            self.handle,
            lane_for=lambda: self.lane,
            request_factory=client_request_factory(server_config),
            # Above our own limit, so an over-long target gets our 414, not the parser's 400.
            max_line_size=server_config.max_url_bytes * 2 + 1024,
            max_field_size=server_config.max_header_bytes,
            # aiohttp closes a connection still waiting for a complete request head this long
            # after it opened or after its previous response (the timer is not reset by bytes
            # that trickle in): the header timeout against slowloris, and the idle keep-alive.
            keepalive_timeout=server_config.header_timeout_seconds,
            **handler_args,
        )

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        started = time.perf_counter()
        failure: ProxyError | None = None
        try:
            response = await self.proxy.handle(request)
        except ProxyError as exc:
            failure = exc
            if exc.status >= 500:
                log.warning("%s %s -> %s: %s", request.method, request.path, exc.status,
                            exc.message)
        except (deliver.Truncated, ConnectionResetError):
            # Headers are out and the connection is closed (cut short on purpose, or the
            # client left): nothing more can be said, and nothing went wrong on our side.
            response = web.Response(status=200)
        except asyncio.CancelledError:
            self._observe(request, started)
            raise
        except Exception:
            log.exception("unexpected error on %s %s", request.method, request.path)
            failure = ProxyError("internal error")
        if failure is not None:
            record_status(request, error_status(failure.status,
                                                auth=isinstance(failure, AuthError)))
            response = error_response(failure)
        self._observe(request, started)
        return response

    def _observe(self, request: web.BaseRequest, started: float) -> None:
        self.metrics.observe_request(request.get(STATUS_KEY, CacheStatus.ERROR), request.method,
                                     request.get(deliver.BYTES_KEY, 0),
                                     time.perf_counter() - started)

    async def _run_job(self, fn: Callable[..., object], *args: object) -> object:
        future = asyncio.get_running_loop().run_in_executor(self._jobs, fn, *args)
        # Cancelling us must not abandon the thread mid-transaction: wait it out.
        return await asyncio.shield(future)

    async def _check_leftovers(self, store: Store) -> None:
        """Start-up check, in the background (serving starts at once): one full pass over the
        body directories for a crash's leftovers, once they are old enough to be told from a
        commit in flight. The maintenance loop then rescans one directory every
        ORPHAN_SCAN_PERIOD_SECONDS."""
        await asyncio.sleep(ORPHAN_MIN_AGE_SECONDS + 1.0)
        try:
            await self._run_job(store.scan_orphans, 256)
        except StoreError as exc:
            self.metrics.store_errors.labels("orphan_scan").inc()
            log.warning("start-up orphan scan failed: %s", exc.message)

    async def _maintain(self, store: Store) -> None:
        """Flush batched access times, sweep bans, cull beyond the size limit, reap the
        graveyard: all off the event loop."""
        cache = self.config.cache

        def sweep() -> int:
            if not self.sweeps_bans:
                return 0
            return sweep_bans(store, self.config)

        scanned_at = time.monotonic()

        def rolling_scan() -> int:
            # A safety net behind the start-up pass (orphans come only from crashes): one
            # directory per worker every ORPHAN_SCAN_PERIOD_SECONDS, a full pass in under an
            # hour with two workers, instead of a steady CPU cost on a large cache.
            nonlocal scanned_at
            if time.monotonic() - scanned_at < ORPHAN_SCAN_PERIOD_SECONDS:
                return 0
            scanned_at = time.monotonic()
            return store.scan_orphans(dirs=1)

        jobs = (("access_flush", store.flush_access_times), ("ban_sweep", sweep),
                ("cull", store.cull), ("reap", store.reap),
                ("tmp_sweep", store.claims.sweep), ("orphan_scan", rolling_scan))
        audited = 0.0
        while True:
            await asyncio.sleep(cache.eviction_interval_seconds)
            if cache.abort_streams_on_revoke and time.monotonic() - audited >= 1.0:
                audited = time.monotonic()
                try:
                    self.proxy.audit_streams()  # on the loop: it aborts transports
                except StoreError as exc:
                    self.metrics.store_errors.labels("stream_audit").inc()
                    log.warning("stream audit failed: %s", exc.message)
            for operation, fn in jobs:
                try:
                    await self._run_job(fn)
                except StoreError as exc:
                    self.metrics.store_errors.labels(operation).inc()
                    log.warning("store %s failed: %s", operation, exc.message)
