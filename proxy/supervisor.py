"""The supervisor of `workers > 1`: starts, restarts, reloads and stops the worker processes.

Rule: a worker runs the configuration the supervisor validated, handed over serialized on its
stdin (it never re-reads the file, so an edit cannot half-apply); it is started through a
bootstrap that imports this installation's `proxy` package by its path, so another
distribution's `proxy` module on sys.path (or in the working directory) cannot be picked up.
A reload (SIGHUP) starts a full new set of workers, waits until they listen, then drains the
old set; if the new set does not come up, the old one keeps serving. A worker that dies after
serving (it had started listening, or ran FAST_DEATH_SECONDS: killed, OOM) is replaced at once;
one that dies before that is a failed start and restarts with backoff, and GIVE_UP_DEATHS of them
within GIVE_UP_WINDOW_SECONDS stop the supervisor (exit 1): a broken start cannot loop forever,
and a busy node whose workers are killed now and then is never given up.
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
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry

from proxy import config as config_mod
from proxy.admin import create_admin_app
from proxy.app import open_store, sweep_bans
from proxy.config import Config
from proxy.daemon import changed_keys, log_drain, log_stop, reload_config
from proxy.errors import StoreError
from proxy.logs import configure
from proxy.server import (
    METRICS_PREFIX,
    MULTIPROC_ENV,
    READY_DIR_ENV,
    READY_PREFIX,
    Signals,
    _cluster,
    _start_site,
    sweep_stale_dirs,
)
from proxy.store.index import Store

log = logging.getLogger("proxy.server")

GIVE_UP_DEATHS = 5
GIVE_UP_WINDOW_SECONDS = 30.0
FAST_DEATH_SECONDS = 10.0  # a worker dying sooner than this after its start failed to start
READY_TIMEOUT_SECONDS = 30.0
# The directory holding this installation's `proxy` package goes first on the worker's path.
PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)
BOOTSTRAP = ("import sys; sys.path.insert(0, sys.argv.pop(1)); "
             "from proxy.cli import main; sys.exit(main(sys.argv[1:]))")


@dataclass
class Worker:
    index: int
    proc: subprocess.Popen[bytes]
    generation: int
    deadline: float = 0.0  # when draining: killed if still running after this
    started: float = field(default_factory=time.monotonic)

    @property
    def pid(self) -> int:
        return self.proc.pid


class Supervisor:
    def __init__(self, config: Config, config_path: str | None) -> None:
        self.config = config
        self.config_path = config_path
        self.workers: dict[int, Worker] = {}
        self.draining: list[Worker] = []
        self.respawn_at: dict[int, float] = {}
        self.deaths: deque[float] = deque()
        self.generation = 0
        sweep_stale_dirs()
        # The pid in the name lets the next supervisor remove them if this one is killed -9.
        self.multiproc_dir = Path(tempfile.mkdtemp(prefix=f"{METRICS_PREFIX}{os.getpid()}-"))
        self.ready_dir = Path(tempfile.mkdtemp(prefix=f"{READY_PREFIX}{os.getpid()}-"))
        self.store: Store | None = None

    def _spawn(self, index: int, config: Config) -> Worker:
        args = [sys.executable, "-c", BOOTSTRAP, PACKAGE_ROOT, "worker", "--index", str(index)]
        env = dict(os.environ, **{MULTIPROC_ENV: str(self.multiproc_dir),
                                  READY_DIR_ENV: str(self.ready_dir)})
        proc = subprocess.Popen(args, env=env, stdin=subprocess.PIPE)
        assert proc.stdin is not None
        with contextlib.suppress(OSError):  # it died at once: the loop sees the exit
            proc.stdin.write(config_mod.to_json(config).encode())
        with contextlib.suppress(OSError):
            proc.stdin.close()
        return Worker(index, proc, self.generation)

    def _ready(self, worker: Worker) -> bool:
        return (self.ready_dir / f"ready-{worker.pid}").exists()

    def _reaped(self, worker: Worker) -> None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid, str(self.multiproc_dir))  # type: ignore[no-untyped-call]
        with contextlib.suppress(FileNotFoundError):
            (self.ready_dir / f"ready-{worker.pid}").unlink()

    def workers_ready(self) -> tuple[int, int]:
        """(workers listening, workers configured)."""
        ready = sum(1 for w in self.workers.values() if w.proc.poll() is None and self._ready(w))
        return ready, self.config.server.workers

    async def run(self) -> int:
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
                                 workers_ready=self.workers_ready, cluster=cluster,
                                 config_for=lambda: self.config)
        runner = web.AppRunner(admin, access_log=None)
        await runner.setup()
        signals = Signals(reload=True)
        sweeper: asyncio.Task[None] | None = None
        status = 0
        try:
            if cluster is not None:
                await cluster.start()  # bounded: applies missed purges before workers serve
            for index in range(self.config.server.workers):
                self.workers[index] = self._spawn(index, self.config)
            await _start_site(runner, self.config.server.admin_listen)
            log.info("supervisor %d: %d workers on %s (admin %s)", os.getpid(),
                     self.config.server.workers, self.config.server.listen,
                     self.config.server.admin_listen, extra={"event": "ready"})
            sweeper = asyncio.create_task(self._sweep_bans())
            while True:
                event = await signals.wait(0.2)
                if event == "stop":
                    log_stop(signals.reason)
                    break
                if event == "reload":
                    await self._reload()
                if not self._watch():
                    status = 1
                    break
                self._reap_draining()
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
        return status

    def _watch(self) -> bool:
        """Restart dead workers with backoff; False when they keep dying (give up)."""
        now = time.monotonic()
        for index, worker in list(self.workers.items()):
            if worker.proc.poll() is None:
                continue
            served = self._ready(worker)  # it had started listening: not a failed start
            self._reaped(worker)
            del self.workers[index]
            if served or now - worker.started >= FAST_DEATH_SECONDS:
                log.warning("worker %d (pid %d) exited with status %s after %.0f s; replacing "
                            "it", index, worker.pid, worker.proc.returncode,
                            now - worker.started,
                            extra={"event": "worker_exit", "index": index,
                                   "exit_status": worker.proc.returncode})
                self.respawn_at[index] = now
                continue
            self.deaths.append(now)
            while self.deaths and now - self.deaths[0] > GIVE_UP_WINDOW_SECONDS:
                self.deaths.popleft()
            if len(self.deaths) >= GIVE_UP_DEATHS:
                log.error("workers keep dying (%d exits within %.0f s, the last with status "
                          "%s); giving up", len(self.deaths), GIVE_UP_WINDOW_SECONDS,
                          worker.proc.returncode,
                          extra={"event": "give_up", "exit_status": worker.proc.returncode})
                return False
            delay = min(0.5 * 2 ** (len(self.deaths) - 1), 8.0)
            log.warning("worker %d (pid %d) exited with status %s; restarting in %.1f s",
                        index, worker.pid, worker.proc.returncode, delay,
                        extra={"event": "worker_exit", "index": index,
                               "exit_status": worker.proc.returncode})
            self.respawn_at[index] = now + delay
        for index, due in list(self.respawn_at.items()):
            if now >= due:
                del self.respawn_at[index]
                self.workers[index] = self._spawn(index, self.config)
        return True

    async def _reload(self) -> None:
        new = reload_config(self.config_path, self.config)
        if new is None:
            return
        configure(new.log)
        changed = changed_keys(self.config, new)
        self.generation += 1
        fresh = {i: self._spawn(i, new) for i in range(new.server.workers)}
        problem = await self._wait_ready(list(fresh.values()))
        if problem:
            log.error("reload failed, the previous workers keep serving: %s", problem,
                      extra={"event": "reload_failed", "error": problem})
            for worker in fresh.values():
                worker.deadline = time.monotonic()  # nothing to drain: it never served
                with contextlib.suppress(ProcessLookupError):
                    worker.proc.send_signal(signal.SIGTERM)
                self.draining.append(worker)
            self.generation -= 1
            return
        old = list(self.workers.values())
        self.workers, self.config = fresh, new
        self.respawn_at.clear()
        if self.store is not None:
            self.store.max_size_bytes = new.cache.max_size_bytes
            self.store.min_free_bytes = new.cache.min_free_bytes
        timeout = new.server.shutdown_timeout_seconds
        for worker in old:
            worker.deadline = time.monotonic() + timeout + 2
            with contextlib.suppress(ProcessLookupError):
                worker.proc.send_signal(signal.SIGTERM)
        self.draining += old
        log.info("reloaded: %s; %d new workers listening", ", ".join(changed) or
                 "no setting changed", len(fresh),
                 extra={"event": "reload", "changed": changed, "workers": len(fresh),
                        "generation": self.generation})
        log_drain("workers of the previous configuration", len(old), timeout)

    async def _wait_ready(self, workers: list[Worker]) -> str:
        """"" once every worker listens, else what went wrong."""
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            for worker in workers:
                if worker.proc.poll() is not None:
                    return (f"a new worker exited with status {worker.proc.returncode} "
                            "before listening")
            if all(self._ready(w) for w in workers):
                return ""
            await asyncio.sleep(0.05)
        return f"new workers not listening after {READY_TIMEOUT_SECONDS:.0f} s"

    def _reap_draining(self) -> None:
        now = time.monotonic()
        for worker in list(self.draining):
            if worker.proc.poll() is None and now > worker.deadline:
                worker.proc.kill()
            if worker.proc.poll() is not None:
                self.draining.remove(worker)
                self._reaped(worker)
                log.info("worker pid %d drained (exit status %s)", worker.pid,
                         worker.proc.returncode,
                         extra={"event": "drained", "exit_status": worker.proc.returncode})

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
        children = [*self.workers.values(), *self.draining]
        live = [w for w in children if w.proc.poll() is None]
        timeout = self.config.server.shutdown_timeout_seconds
        if live:
            log_drain("workers", len(live), timeout)
        for worker in live:
            with contextlib.suppress(ProcessLookupError):
                worker.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout + 2
        while time.monotonic() < deadline and any(w.proc.poll() is None for w in children):
            await asyncio.sleep(0.05)
        for worker in children:
            if worker.proc.poll() is None:
                worker.proc.kill()
                worker.proc.wait()



