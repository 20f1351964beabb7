"""Process model: one process (workers = 1), or a supervisor with N worker processes.

Rule: workers bind the public port themselves with SO_REUSEPORT (the kernel spreads
connections) and share the cache directory; the supervisor owns the admin listener,
aggregates metrics across workers (prometheus multiprocess mode) and restarts a worker that
dies. SIGTERM/SIGINT stop everything gracefully within server.shutdown_timeout_seconds. The
cluster membership (`proxy.cluster`) lives with the admin listener and catches up with missed
purges before the public listener (or any worker) starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CollectorRegistry

from proxy.admin import create_admin_app, node_name
from proxy.app import PublicApp, open_store, sweep_bans
from proxy.config import Config
from proxy.errors import StoreError
from proxy.logs import AccessLogger
from proxy.store.index import Store

if TYPE_CHECKING:
    from proxy.cluster import Cluster

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
READY_DIR_ENV = "MEDIAPROXY_READY_DIR"  # workers drop ready-<pid> here once listening


METRICS_PREFIX = "mediaproxy-metrics-"
READY_PREFIX = "mediaproxy-ready-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_dirs() -> int:
    """Remove the metrics and readiness dirs of supervisors that no longer run (a `kill -9`
    skips their own cleanup). Only `<prefix><pid>-*` names are judged, by their pid."""
    removed = 0
    root = Path(tempfile.gettempdir())
    for prefix in (METRICS_PREFIX, READY_PREFIX):
        for path in root.glob(f"{prefix}*"):
            pid = path.name[len(prefix):].split("-", 1)[0]
            if pid.isdigit() and not _pid_alive(int(pid)) and path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
                log.info("removed %s (its supervisor is gone)", path)
                removed += 1
    return removed


def _host_port(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


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


def _stop_event() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_quiet_sendfile_disconnects)
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def _start_site(runner: web.BaseRunner, listen: str, *, reuse_port: bool = False
                      ) -> None:
    host, port = _host_port(listen)
    site = web.TCPSite(runner, host, port, reuse_port=reuse_port, backlog=1024)
    await site.start()


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
            "access_log": logging.getLogger("mediaproxy.access")}


async def run_single(config: Config) -> None:
    """workers = 1: public and admin listeners in this process."""
    registry = CollectorRegistry()
    public = PublicApp(config, registry=registry)
    await public.start()
    cluster = _cluster(config, lambda: public.store)
    admin = create_admin_app(config, registry, lambda: public.store, cluster=cluster)
    public_runner = web.ServerRunner(public.make_server(**_access_log_args(config)),
                                     shutdown_timeout=config.server.shutdown_timeout_seconds)
    admin_runner = web.AppRunner(admin, access_log=None)
    await public_runner.setup()
    await admin_runner.setup()
    try:
        if cluster is not None:
            await cluster.start()  # bounded: applies missed purges before we serve
        await _start_site(public_runner, config.server.listen)
        await _start_site(admin_runner, config.server.admin_listen)
        log.info("mediaproxy serving on %s (admin %s), origin %s", config.server.listen,
                 config.server.admin_listen, config.origin.url)
        await _stop_event().wait()
        log.info("stopping")
    finally:
        if cluster is not None:
            await cluster.close()
        await admin_runner.cleanup()
        await public_runner.cleanup()
        await public.close()


async def run_worker(config: Config, index: int) -> None:
    """One of N workers: the public listener only, SO_REUSEPORT."""
    public = PublicApp(config, registry=CollectorRegistry(), sweeps_bans=False)
    await public.start()
    runner = web.ServerRunner(public.make_server(**_access_log_args(config)),
                              shutdown_timeout=config.server.shutdown_timeout_seconds)
    await runner.setup()
    try:
        await _start_site(runner, config.server.listen, reuse_port=True)
        log.info("worker %d (pid %d) serving on %s", index, os.getpid(), config.server.listen)
        ready_dir = os.environ.get(READY_DIR_ENV)
        if ready_dir:
            Path(ready_dir, f"ready-{os.getpid()}").touch()
        await _stop_event().wait()
    finally:
        await runner.cleanup()
        await public.close()


class Supervisor:
    def __init__(self, config: Config, config_path: str | None) -> None:
        self.config = config
        self.config_path = config_path
        self.children: dict[int, subprocess.Popen[bytes]] = {}
        sweep_stale_dirs()
        # The pid in the name lets the next supervisor remove them if this one is killed -9.
        self.multiproc_dir = Path(tempfile.mkdtemp(prefix=f"{METRICS_PREFIX}{os.getpid()}-"))
        self.ready_dir = Path(tempfile.mkdtemp(prefix=f"{READY_PREFIX}{os.getpid()}-"))
        self.store: Store | None = None

    def _spawn(self, index: int) -> None:
        from prometheus_client import multiprocess

        old = self.children.get(index)
        if old is not None:
            multiprocess.mark_process_dead(old.pid, str(self.multiproc_dir))  # type: ignore[no-untyped-call]
        args = [sys.executable, "-m", "proxy", "worker", "--index", str(index)]
        if self.config_path is not None:
            args += ["--config", self.config_path]
        env = dict(os.environ, **{MULTIPROC_ENV: str(self.multiproc_dir),
                                  READY_DIR_ENV: str(self.ready_dir)})
        self.children[index] = subprocess.Popen(args, env=env)

    def workers_ready(self) -> tuple[int, int]:
        """(workers listening, workers configured)."""
        live = {c.pid for c in self.children.values() if c.poll() is None}
        ready = {int(p.name.split("-", 1)[1]) for p in self.ready_dir.glob("ready-*")}
        return len(live & ready), self.config.server.workers

    async def run(self) -> None:
        # Sweep before any worker starts: nothing can be filling yet.
        self.store = open_store(self.config)
        os.environ[MULTIPROC_ENV] = str(self.multiproc_dir)
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(  # type: ignore[no-untyped-call]
            registry, path=str(self.multiproc_dir)
        )
        cluster = _cluster(self.config, lambda: self.store)
        admin = create_admin_app(self.config, registry, lambda: self.store,
                                 workers_ready=self.workers_ready, cluster=cluster)
        runner = web.AppRunner(admin, access_log=None)
        await runner.setup()
        stop = _stop_event()
        sweeper: asyncio.Task[None] | None = None
        try:
            if cluster is not None:
                await cluster.start()  # bounded: applies missed purges before workers serve
            for index in range(self.config.server.workers):
                self._spawn(index)
            await _start_site(runner, self.config.server.admin_listen)
            log.info("supervisor %d: %d workers on %s (admin %s)", os.getpid(),
                     self.config.server.workers, self.config.server.listen,
                     self.config.server.admin_listen)
            restarts: dict[int, float] = {}
            sweeper = asyncio.create_task(self._sweep_bans())
            while not stop.is_set():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.5)
                for index, child in list(self.children.items()):
                    if child.poll() is not None and not stop.is_set():
                        # Back off a worker that dies at once, so a bad config cannot spin.
                        if time.monotonic() - restarts.get(index, 0.0) < 1.0:
                            await asyncio.sleep(1.0)
                        log.warning("worker %d exited with %s, restarting", index,
                                    child.returncode)
                        restarts[index] = time.monotonic()
                        self._spawn(index)
        finally:
            if sweeper is not None:
                sweeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sweeper
            if cluster is not None:
                await cluster.close()
            await self._stop_children()
            await runner.cleanup()
            if self.store is not None:
                self.store.close()
            shutil.rmtree(self.multiproc_dir, ignore_errors=True)
            shutil.rmtree(self.ready_dir, ignore_errors=True)

    async def _sweep_bans(self) -> None:
        """Purge sweeps run here, not in the workers: their CPU is for serving."""
        store = self.store
        if store is None:
            return
        while True:
            await asyncio.sleep(self.config.cache.eviction_interval_seconds)
            try:
                await asyncio.to_thread(sweep_bans, store, self.config)
            except StoreError as exc:
                log.warning("ban sweep failed: %s", exc.message)

    async def _stop_children(self) -> None:
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.config.server.shutdown_timeout_seconds + 2
        while time.monotonic() < deadline and any(c.poll() is None for c in self.children.values()):
            await asyncio.sleep(0.05)
        for child in self.children.values():
            if child.poll() is None:
                child.kill()
                child.wait()


def serve(config: Config, config_path: str | None) -> None:
    if config.server.workers == 1:
        asyncio.run(run_single(config))
    else:
        asyncio.run(Supervisor(config, config_path).run())
