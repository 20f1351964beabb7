"""Process model: one process (workers = 1), or a supervisor with N worker processes.

Rule: workers bind the public port themselves with SO_REUSEPORT (the kernel spreads
connections) and share the cache directory; the supervisor (`proxy.supervisor`) owns the admin
listener, aggregates metrics across workers (prometheus multiprocess mode) and restarts a
worker that dies. SIGTERM/SIGINT stop everything gracefully within
server.shutdown_timeout_seconds; SIGHUP reloads (`nginx -s reload`: new listeners on the new
configuration, the old ones drain). Before anything listens, the cache directory is locked
against a second instance and both addresses are proved bindable. The cluster membership
(`proxy.cluster`) lives with the admin listener and catches up with missed purges before the
public listener (or any worker) starts.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import shutil
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web, web_protocol, web_response
from prometheus_client import CollectorRegistry

from proxy import listen as listen_mod
from proxy.admin import create_admin_app, node_name
from proxy.app import PublicApp
from proxy.config import Config
from proxy.daemon import (
    CacheLock,
    changed_keys,
    log_drain,
    log_start,
    log_stop,
    log_stopped,
    reload_config,
)
from proxy.errors import StartupError
from proxy.lane.handler import LaneHandler
from proxy.logs import ACCESS_LOGGER, AccessLogger, configure
from proxy.metrics import Metrics
from proxy.store import keysignal
from proxy.store.index import Store
from proxy.store.janitor import pid_alive

if TYPE_CHECKING:
    from proxy.cluster import Cluster

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
READY_DIR_ENV = "MEDIAPROXY_READY_DIR"  # workers drop ready-<pid> here once listening


# On stop or reload: how long a connection accepted just before the listener closed may take
# to deliver its first request (it is then answered, not dropped).
FIRST_REQUEST_GRACE_SECONDS = 0.5

METRICS_PREFIX = "mediaproxy-metrics-"
READY_PREFIX = "mediaproxy-ready-"


def sweep_stale_dirs() -> int:
    """Remove the metrics and readiness dirs of supervisors that no longer run (a `kill -9`
    skips their own cleanup). Only `<prefix><pid>-*` names are judged, by their pid."""
    removed = 0
    root = Path(tempfile.gettempdir())
    for prefix in (METRICS_PREFIX, READY_PREFIX):
        for path in root.glob(f"{prefix}*"):
            pid = path.name[len(prefix):].split("-", 1)[0]
            if pid.isdigit() and not pid_alive(int(pid)) and path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
                log.info("removed %s (its supervisor is gone)", path)
                removed += 1
    return removed


def _host_port(listen: str) -> tuple[str, int]:
    return listen_mod.host_port(listen)


def _quiet_sendfile_disconnects(loop: asyncio.AbstractEventLoop,
                                context: dict[str, object]) -> None:
    """A client that disconnects during `loop.sendfile` makes asyncio's transport raise
    InvalidStateError in `_call_connection_lost` (its sendfile waiter is already done). It is
    harmless (the response was over for that client); log it at debug, pass the rest on."""
    exc = context.get("exception")
    if isinstance(exc, asyncio.InvalidStateError) and "_call_connection_lost" in str(
            context.get("message", "")):
        log.debug("client left during sendfile: %s", context.get("message"))
        return
    loop.default_exception_handler(context)


def awaiting_first_request(handler: web_protocol.RequestHandler) -> bool:
    """A connection whose first request head has not been read yet (just accepted: its
    request may be in flight)."""
    if isinstance(handler, LaneHandler) and handler.lane_heads():
        return False
    return not getattr(handler, "_request_count", 1)


async def stop_serving(runner: web.BaseRunner, grace: float) -> None:
    """Stop listening, give connections accepted just before that up to `grace` seconds to
    deliver their first request, then aiohttp's graceful shutdown. (aiohttp closes every idle
    connection right after the listener: a client whose request was still on its way would
    see the connection closed without an answer, e.g. during a reload.)"""
    for site in list(runner.sites):
        await site.stop()
    server = runner.server
    if server is not None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while loop.time() < deadline and any(
                awaiting_first_request(conn) for conn in server.connections):
            await asyncio.sleep(0.01)
    await runner.cleanup()


class Signals:
    """SIGTERM/SIGINT ask to stop; SIGHUP asks to reload (or is ignored, in a worker: the
    supervisor decides, and a terminal hang-up must not kill the workers under it)."""

    def __init__(self, *, reload: bool) -> None:
        self.stop = asyncio.Event()
        self.reload = asyncio.Event()
        self.reason = ""
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(_quiet_sendfile_disconnects)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stop, sig.name)
        loop.add_signal_handler(signal.SIGHUP, self.reload.set if reload else lambda: None)

    def _stop(self, name: str) -> None:
        self.reason = self.reason or name
        self.stop.set()

    async def wait(self, timeout: float | None = None) -> str:
        """"stop", "reload" or "" (timeout); a pending stop wins over a reload."""
        if not (self.stop.is_set() or self.reload.is_set()):
            waiters = [asyncio.ensure_future(e.wait()) for e in (self.stop, self.reload)]
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            for waiter in waiters:
                waiter.cancel()
        if self.stop.is_set():
            return "stop"
        if self.reload.is_set():
            self.reload.clear()
            return "reload"
        return ""


def _stop_event() -> asyncio.Event:
    return Signals(reload=False).stop


async def _start_site(runner: web.BaseRunner, listen: str, *, reuse_port: bool = False
                      ) -> None:
    host, port = _host_port(listen)
    site = web.TCPSite(runner, host, port, reuse_port=reuse_port, backlog=1024)
    try:
        await site.start()
    except OSError as exc:
        raise StartupError(f"cannot listen on {listen}: {exc.strerror or exc}") from None


def _cluster(config: Config, store_for: Callable[[], Store | None]) -> Cluster | None:
    """This node's cluster membership, or None when it runs alone (redis is not imported)."""
    if not config.cluster.redis_url:
        return None
    from proxy.cluster import Cluster

    return Cluster(config.cluster, node_name(config), store_for)


def _access_log_args(config: Config) -> dict[str, object]:
    if not config.log.access_log:
        return {"access_log": None}
    return {"access_log_class": AccessLogger,
            "access_log": logging.getLogger(ACCESS_LOGGER)}


def public_runner(public: PublicApp, config: Config) -> web.ServerRunner:
    """The public listener's runner (single process, each generation, and every worker)."""
    # aiohttp fills in `Server: Python/x aiohttp/y` from this module global when a response
    # has none: ours names no versions (server.server_header).
    web_response.SERVER_SOFTWARE = config.server.server_header  # type: ignore[attr-defined]
    return web.ServerRunner(public.make_server(**_access_log_args(config)),
                            shutdown_timeout=config.server.shutdown_timeout_seconds)


class Generation:
    """workers = 1: the public listener and its PublicApp on one configuration. A reload
    starts a new generation beside the old one (SO_REUSEPORT), then drains the old."""

    def __init__(self, config: Config, registry: CollectorRegistry,
                 metrics: Metrics | None = None) -> None:
        self.config = config
        # Counters carry on across reloads: a new generation takes over the old one's Metrics.
        self.public = PublicApp(config, registry=registry if metrics is None
                                else CollectorRegistry())
        if metrics is not None:
            self.public.metrics = metrics
        self.runner = public_runner(self.public, config)

    async def prepare(self) -> None:
        await self.public.start()
        await self.runner.setup()

    async def listen(self) -> None:
        await _start_site(self.runner, self.config.server.listen, reuse_port=True)

    async def close(self) -> None:
        # Stops accepting, then open responses get the timeout.
        await stop_serving(self.runner, FIRST_REQUEST_GRACE_SECONDS)
        await self.public.close()


# Cyclic GC: a collection every 50,000 net allocations instead of 700 (a hit allocates a few
# hundred objects, so the default ran a gen-0 pass every few requests), and the objects made
# at start-up (modules, config, the app) frozen out of every later pass. Measured on 4 KiB
# disk hits of one worker: +10-15 % req/s, p99 34 -> 17 ms.
GC_THRESHOLDS = (50_000, 50, 1000)


def tune_gc() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def run_single(config: Config, config_path: str | None = None) -> int:
    """workers = 1: public and admin listeners in this process."""
    registry = CollectorRegistry()
    current = Generation(config, registry)
    await current.prepare()
    cluster = _cluster(config, lambda: current.public.store)
    admin = create_admin_app(config, registry, lambda: current.public.store, cluster=cluster,
                             config_for=lambda: current.config)
    admin_runner = web.AppRunner(admin, access_log=None)
    await admin_runner.setup()
    tune_gc()
    draining: set[asyncio.Task[None]] = set()
    try:
        signals = Signals(reload=True)
        if cluster is not None:
            await cluster.start()  # bounded: applies missed purges before we serve
        await current.listen()
        await _start_site(admin_runner, config.server.admin_listen)
        log.info("mediaproxy serving on %s (admin %s), origin %s", config.server.listen,
                 config.server.admin_listen, config.origin.url, extra={"event": "ready"})
        while await signals.wait() == "reload":
            fresh = await _reload_single(config_path, current)
            if fresh is None:
                continue
            old, current = current, fresh
            log_drain("the previous listener", 1, old.config.server.shutdown_timeout_seconds)
            task = asyncio.create_task(old.close())
            draining.add(task)
            task.add_done_callback(draining.discard)
        log_stop(signals.reason)
        log_drain("open connections", 1, current.config.server.shutdown_timeout_seconds)
    finally:
        if cluster is not None:
            await cluster.close()
        await admin_runner.cleanup()
        await current.close()
        if draining:
            await asyncio.gather(*draining, return_exceptions=True)
    return 0


async def _reload_single(config_path: str | None, current: Generation) -> Generation | None:
    new = reload_config(config_path, current.config)
    if new is None:
        return None
    configure(new.log)
    changed = changed_keys(current.config, new)
    fresh = Generation(new, CollectorRegistry(), metrics=current.public.metrics)
    try:
        await fresh.prepare()
        await fresh.listen()
    except Exception as exc:  # whatever the new one hit, the running one keeps serving
        message = exc.message if isinstance(exc, StartupError) else repr(exc)
        log.error("reload failed, still running the previous configuration: %s", message,
                  extra={"event": "reload_failed", "error": message})
        await fresh.close()
        return None
    log.info("reloaded: %s", ", ".join(changed) or "no setting changed",
             extra={"event": "reload", "changed": changed})
    return fresh


async def run_worker(config: Config, index: int) -> None:
    """One of N workers: the public listener only, SO_REUSEPORT."""
    public = PublicApp(config, registry=CollectorRegistry(), sweeps_bans=False)
    await public.start()
    tune_gc()
    runner = public_runner(public, config)
    await runner.setup()
    try:
        stop = _stop_event()
        await _start_site(runner, config.server.listen, reuse_port=True)
        log.info("worker %d (pid %d) serving on %s", index, os.getpid(), config.server.listen,
                 extra={"event": "worker_ready", "index": index})
        ready_dir = os.environ.get(READY_DIR_ENV)
        if ready_dir:
            Path(ready_dir, f"ready-{os.getpid()}").touch()
        await stop.wait()
    finally:
        await stop_serving(runner, FIRST_REQUEST_GRACE_SECONDS)
        await public.close()


def preflight(config: Config) -> None:
    """Addresses resolve (else ConfigError) and nobody else holds them (else StartupError)."""
    listen_mod.probe_bind(config.server.listen, "server.listen")
    listen_mod.probe_bind(config.server.admin_listen, "server.admin_listen")


def serve(config: Config, config_path: str | None) -> int:
    """Run until stopped; the exit status (0, or 1 when workers kept failing)."""
    lock = CacheLock(config.cache.dir)
    lock.acquire()  # first: a second instance is told the directory is taken
    # No process of ours uses the directory now: a key-signal file left empty by a start
    # without room is made again by the first store to open.
    keysignal.reset(Path(config.cache.dir) / keysignal.SIGNAL_FILE)
    try:
        preflight(config)
        log_start(config, "single" if config.server.workers == 1 else "supervisor")
        if config.server.workers == 1:
            status = asyncio.run(run_single(config, config_path))
        else:
            from proxy.supervisor import Supervisor

            status = asyncio.run(Supervisor(config, config_path).run())
        log_stopped()
        return status
    finally:
        lock.release()
