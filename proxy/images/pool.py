"""The asyncio side of the conversion processes: `await pool.convert(source, spec)`.

Rule: each conversion runs in one of `pool_workers` spawned processes, one job at a time per
process; a conversion that outlives `timeout_seconds` gets its process killed, and a process
that dies (a codec crash, the OOM killer) is replaced: either way the caller gets a typed
refusal (422) and the pool keeps its size. A caller that goes away does not cancel the
conversion (another request may be waiting for the same key). Processes are also recycled
after RECYCLE_AFTER jobs, to bound what a leaking codec can hold.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from proxy.errors import ConversionCrashed, ConversionTimeout, ImageRefused
from proxy.imageconfig import FREE_FORM, ImagesConfig
from proxy.images import worker
from proxy.images.spec import Converted, Limits, Spec
from proxy.metrics import Metrics

log = logging.getLogger(__name__)

RECYCLE_AFTER = 1000  # jobs per process before it is replaced
_CONTEXT = multiprocessing.get_context("spawn")  # no fork of an event loop and its threads


@dataclass(slots=True, eq=False)  # identity: kept in a set
class _Process:
    process: BaseProcess
    conn: Connection
    jobs: int = 0

    def call(self, job: tuple[bytes | str, Spec, str | None]) -> tuple[Any, ...]:
        """Blocking round trip, run in a thread; EOFError/OSError when the process died."""
        self.conn.send(job)
        reply: tuple[Any, ...] = self.conn.recv()
        return reply

    def stop(self) -> None:
        # Kill before closing our end: a thread blocked reading it then sees EOF.
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)
        self.conn.close()


@dataclass(slots=True)
class PoolStats:
    converted: int = 0
    refused: int = 0
    timeouts: int = 0
    crashes: int = 0
    replaced: int = 0
    queued: int = 0  # callers waiting for a free process right now
    busy: int = 0
    pids: list[int] = field(default_factory=list)


class ConversionPool:
    def __init__(self, config: ImagesConfig, *, metrics: Metrics | None = None,
                 initializer: Callable[[], None] | None = None) -> None:
        self.limits = Limits.of(config)
        self.size = config.pool_workers
        self.timeout_seconds = config.timeout_seconds
        self.stats = PoolStats()
        self.metrics = metrics
        if metrics is not None:
            metrics.init_images(p.name for p in config.presets)
        self._initializer = initializer  # runs in each process after setup (tests' hooks)
        self._idle: asyncio.Queue[_Process] = asyncio.Queue()
        self._all: set[_Process] = set()
        self._closed = False

    async def start(self) -> None:
        processes = await asyncio.gather(*(asyncio.to_thread(self._spawn)
                                           for _ in range(self.size)))
        for process in processes:
            self._idle.put_nowait(process)

    async def close(self) -> None:
        self._closed = True
        for process in list(self._all):
            await asyncio.to_thread(process.stop)
        self._all.clear()

    async def __aenter__(self) -> ConversionPool:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def pids(self) -> list[int]:
        return sorted(p.process.pid or 0 for p in self._all)

    async def convert(self, source: bytes | str | Path, spec: Spec, *, preset: str = FREE_FORM,
                      out_path: str | Path | None = None) -> Converted:
        """Convert `source` (the original's bytes, or a path to them) as `spec` says; the
        result's bytes are returned, or written to `out_path` (then `Converted.path`).
        `preset` labels the metrics. Raises ImageRefused (415/422: ConversionTimeout,
        ConversionCrashed among them)."""
        if self._closed:
            raise ImageRefused("the conversion pool is closed", status=503,
                               reason="conversion_unavailable")
        job = (source if isinstance(source, bytes) else str(source), spec,
               None if out_path is None else str(out_path))
        task = asyncio.ensure_future(self._run(job))
        reply, seconds = await asyncio.shield(task)  # a caller leaving leaves the job running
        if reply[0] == "ok":
            self.stats.converted += 1
        elif reply[0] in ("refused", "error"):
            self.stats.refused += 1
        if self.metrics is not None:
            self._observe(preset, spec, job[0], reply, seconds)
        return _outcome(reply)

    async def _run(self, job: tuple[bytes | str, Spec, str | None]
                   ) -> tuple[tuple[Any, ...], float]:
        self._count("queued", 1)
        try:
            process = await self._idle.get()
        finally:
            self._count("queued", -1)
        self._count("busy", 1)
        started = time.monotonic()
        try:
            if not process.process.is_alive():  # died while idle: not this image's fault
                process = await self._replace(process)
            try:
                reply = await asyncio.wait_for(asyncio.to_thread(process.call, job),
                                               self.timeout_seconds)
            except TimeoutError:
                self.stats.timeouts += 1
                log.warning("conversion timed out after %.1f s; replacing process %s",
                            time.monotonic() - started, process.process.pid)
                process = await self._replace(process)
                return ("timeout",), time.monotonic() - started
            except (EOFError, OSError) as exc:
                self.stats.crashes += 1
                log.warning("conversion process %s died (%s, exit %s); replacing it",
                            process.process.pid, type(exc).__name__, process.process.exitcode)
                process = await self._replace(process)
                return ("crashed",), time.monotonic() - started
            seconds = time.monotonic() - started
            process.jobs += 1
            if process.jobs >= RECYCLE_AFTER:
                process = await self._replace(process)
            return reply, seconds
        finally:
            self._count("busy", -1)
            if self._closed:
                await asyncio.to_thread(process.stop)
            else:
                self._idle.put_nowait(process)

    def _observe(self, preset: str, spec: Spec, source: bytes | str, reply: tuple[Any, ...],
                 seconds: float) -> None:
        assert self.metrics is not None
        kind = reply[0]
        if kind == "refused":
            outcome = "not_allowed" if reply[1] == 415 else "over_limits"
        else:
            outcome = _OUTCOMES[kind]
        converted: Converted | None = reply[1] if kind == "ok" else None
        source_bytes = converted.source_bytes if converted else (
            len(source) if isinstance(source, bytes) else 0)
        self.metrics.observe_conversion(preset, spec.format, outcome, seconds, source_bytes,
                                        converted.output_bytes if converted else 0)

    def _count(self, name: str, delta: int) -> None:
        setattr(self.stats, name, getattr(self.stats, name) + delta)
        if self.metrics is not None:
            gauge = self.metrics.conversion_queue if name == "queued" else \
                self.metrics.conversion_busy
            gauge.inc(delta)

    def _spawn(self) -> _Process:
        parent, child = _CONTEXT.Pipe()
        process = _CONTEXT.Process(target=worker.main, args=(child, self.limits,
                                                               self._initializer),
                                   name="mediaproxy-images", daemon=True)
        process.start()
        child.close()
        spawned = _Process(process, parent)
        self._all.add(spawned)
        return spawned

    async def _replace(self, process: _Process) -> _Process:
        self._all.discard(process)
        self.stats.replaced += 1
        await asyncio.to_thread(process.stop)
        return await asyncio.to_thread(self._spawn)


_OUTCOMES = {"ok": "ok", "timeout": "timeout", "crashed": "crashed", "error": "failed"}


def _outcome(reply: tuple[Any, ...]) -> Converted:
    kind = reply[0]
    if kind == "ok":
        converted: Converted = reply[1]
        return converted
    if kind == "refused":
        raise ImageRefused(reply[3], status=reply[1], reason=reply[2])
    if kind == "timeout":
        raise ConversionTimeout("the conversion took too long")
    if kind == "crashed":
        raise ConversionCrashed("the conversion process died")
    log.warning("conversion failed: %s", reply[1])
    raise ImageRefused("the image could not be converted", reason="conversion_failed")
