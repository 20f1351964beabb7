"""The lane's shared state in one worker, and the aiohttp server whose connections carry it.

Rule: `LaneServer` is aiohttp's `web.Server` with one change: its connections are
`LaneHandler`s. Everything else (graceful shutdown, the keep-alive and header timeout,
request factory, access log) is aiohttp's own, so a lane answer is bound by the same timers
and tracked by the same shutdown as any other response.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web, web_protocol

from proxy.lane.handler import LaneHandler
from proxy.lane.routes import Routes
from proxy.lane.tally import Tally
from proxy.logs import log_access
from proxy.policy import forward
from proxy.status import CacheStatus

if TYPE_CHECKING:
    from proxy.lane.routes import Route

log = logging.getLogger(__name__)

# What the lane reads of aiohttp's RequestHandler; checked once, so a future aiohttp that
# moved them switches the lane off (every request then goes through aiohttp) instead of
# breaking connections.
HANDLER_FIELDS = ("_waiter", "_messages", "_request_count", "_paused", "_force_close", "_close",
                  "_loop", "_keepalive_timeout", "_next_keepalive_close_time",
                  "_keepalive_handle", "_process_keepalive", "transport")


def aiohttp_fits() -> bool:
    return all(hasattr(web_protocol.RequestHandler, name) for name in HANDLER_FIELDS)


class Lane:
    """Routes, counters and the access log for lane answers in this worker."""

    def __init__(self, routes: Routes, *, max_line: int, max_field: int,
                 clock: Callable[[], float], touch: Callable[[int, float], None] | None,
                 access_log: logging.Logger | None, real_ip: forward.RealIp | None,
                 real_ip_header: bytes) -> None:
        self.routes = routes
        self.max_line = max_line
        self.max_field = max_field
        self.clock = clock
        self.touch = touch
        self.tally = Tally()
        self.access_log = access_log
        self.real_ip = real_ip
        # Fields the access line shows, collected while parsing only when it is written.
        names = {b"host", b"user-agent", b"referer"}
        if real_ip is not None:
            names.add(real_ip_header)
        self.logs: frozenset[bytes] = frozenset(names) if access_log is not None else frozenset()

    def answered(self, handler: LaneHandler, found: list[Route | None],
                 log_items: list[tuple[bytes, list[tuple[bytes, bytes]]]], body_bytes: int,
                 started: float) -> None:
        each = (time.perf_counter() - started) / len(found)
        self.tally.add(len(found), body_bytes, each)
        if self.touch is not None:
            now = self.clock()
            for route in found:
                if route is not None:
                    self.touch(route.rowid, now)
        if self.access_log is not None:
            self._log(handler, found, log_items, each)

    def _log(self, handler: LaneHandler, found: list[Route | None],
             log_items: list[tuple[bytes, list[tuple[bytes, bytes]]]], each: float) -> None:
        assert self.access_log is not None
        transport = handler.transport
        peername = transport.get_extra_info("peername") if transport is not None else None
        peer = str(peername[0]) if isinstance(peername, (list, tuple)) else (
            None if peername is None else str(peername))
        for route, (_, fields) in zip(found, log_items, strict=True):
            assert route is not None
            # As aiohttp reads them: trailing whitespace stripped, the first of a repeat.
            text = [(name.decode("latin-1"),
                     value.rstrip(b" \t").decode("utf-8", "surrogateescape"))
                    for name, value in fields]
            remote = peer if self.real_ip is None else self.real_ip.client(peer, text)
            values: dict[str, str] = {}
            for name, value in text:
                values.setdefault(name, value)
            log_access(self.access_log, method="GET", key=route.key, status=route.entry.meta.status,
                       cache_status=CacheStatus.HIT.value, body_bytes=len(route.body),
                       seconds=each, remote=remote, protocol="HTTP/1.1",
                       host=values.get("host"), user_agent=values.get("user-agent", ""),
                       referer=values.get("referer", ""))


class LaneServer(web.Server):
    """aiohttp's server, whose connections are LaneHandlers while `lane_for` gives a lane
    (it is made when the app starts, after this server)."""

    def __init__(self, handler: Any, *, lane_for: Callable[[], Lane | None],
                 **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.lane_for = lane_for

    def __call__(self) -> web_protocol.RequestHandler:
        lane = self.lane_for()
        if lane is None:
            return super().__call__()
        return LaneHandler(self, lane=lane, loop=self._loop, **self._kwargs)


async def keep_tidy(lane: Lane, flush: Callable[[], None], period: float = 1.0) -> None:
    """Every `period`: counted answers into the metrics, expired routes out."""
    while True:
        await asyncio.sleep(period)
        flush()
        lane.routes.sweep()
