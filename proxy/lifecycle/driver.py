"""The whole lifecycle of a request on one screen: admit, then one loop over typed steps.

Rule: the driver chooses what runs next and does no I/O of its own; every transition is
listed in `steps.py`; `answer.send` writes the one response. A request's held resources are
released by `ex.held`, whatever path it took.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, assert_never

from aiohttp import web

from proxy import deliver
from proxy.config import Config
from proxy.exchange import TARGET_KEY, Exchange, Held
from proxy.lifecycle import (
    admit,
    answer,
    collapse,
    convert,
    follow,
    hit,
    miss,
    passthrough,
    purge,
    revalidate,
    steps,
    streams,
)
from proxy.lifecycle.authorize import authorize
from proxy.lifecycle.context import Context
from proxy.metrics import Metrics
from proxy.origin import OriginClient
from proxy.policy.access import Access
from proxy.store.fill import Fill
from proxy.store.index import Store

if TYPE_CHECKING:
    from proxy.images.pool import ConversionPool

log = logging.getLogger("proxy.handler")


class Proxy:
    def __init__(self, config: Config, store: Store | None, origin: OriginClient,
                 metrics: Metrics, clock: Callable[[], float] = time.time, *,
                 pool: ConversionPool | None = None) -> None:
        self.ctx = Context(config, store, origin, metrics, clock)
        self.ctx.pool = pool  # image conversions (`?preset=`), when [images] has presets

    async def handle(self, request: web.BaseRequest) -> web.StreamResponse:
        ctx = self.ctx
        if request.method == "PURGE":
            return answer.purged(request, await purge.handle(ctx, request))
        if request.method not in ("GET", "HEAD"):
            target = ctx.target(request, ctx.token_params)
            request[TARGET_KEY] = target
            ex = Exchange(request, target, Held(ctx.pending))
            return await answer.send(ctx, ex, await passthrough.unsafe(ctx, ex))
        admit.refuse_body(request)
        for attempt in (1, 2):
            target = admit.exchange_target(ctx, request)
            if ctx.access.by_rule(target.path) is Access.PROTECTED:
                await authorize(ctx, request, ())  # configured as protected: before any work
            conversion = convert.requested(ctx, request, target)  # `?preset=`: its own path
            if conversion is not None:
                ex = Exchange(request, target, Held(ctx.pending))
                async with ex.held:
                    return await self._run(ex, conversion)
            memory = hit.from_memory(ctx, target.key, request)  # the measured hot path
            if memory is not None:
                response = await answer.memory(ctx, request, memory.body, memory.age)
                ctx.metrics.memory_hits.inc()  # once allowed (a 401/403 is no hit)
                return response
            ex = Exchange(request, target, Held(ctx.pending))
            try:
                async with ex.held:
                    return await self._run(ex)
            except deliver.FillClosed:
                if attempt == 2:
                    raise
                # The fill it joined completed meanwhile: look again, variant included.
                ctx.vary_known.pop(target.url_key)
        raise AssertionError("unreachable")

    async def _run(self, ex: Exchange, first: steps.Step | None = None) -> web.StreamResponse:
        ctx = self.ctx
        step: steps.Step = steps.Lookup() if first is None else first
        while True:
            ex.trail.append(type(step).__name__)
            match step:
                case steps.Lookup():
                    step = hit.lookup(ctx, ex)
                case steps.Refresh():
                    step = revalidate.later(ctx, ex, step)
                case steps.Miss():
                    step = await collapse.choose(ctx, ex, step)
                case steps.Follow():
                    step = await follow.wait(ctx, ex, step)
                case steps.Current():
                    step = hit.current(ctx, ex, step)
                case steps.Claimed():
                    step = await miss.ask_origin(ctx, ex, step)
                case steps.Uncached(origin=None):
                    step = await passthrough.fetch(ctx, ex, step)
                case steps.Convert():
                    step = convert.lookup(ctx, ex, step)
                case steps.ConvertRefresh():
                    step = convert.remake_later(ctx, ex, step)
                case steps.ConvertMiss():
                    step = await convert.claim(ctx, ex, step)
                case steps.ConvertFollow():
                    step = await convert.wait(ctx, ex, step)
                case steps.ConvertClaimed():
                    step = await convert.fetch_source(ctx, ex, step)
                case steps.Source():
                    step = await convert.make(ctx, ex, step)
                case (steps.Fresh() | steps.Stale() | steps.Revalidated() | steps.Join()
                      | steps.Filling() | steps.Uncached() | steps.Converted()):
                    ctx.trails.append((ex.key, tuple(ex.trail)))
                    log.debug("%s %s: %s", ex.request.method, ex.key, " > ".join(ex.trail))
                    return await answer.send(ctx, ex, step)
                case _:
                    assert_never(step)

    # -- for the app and the tests ------------------------------------------------------------

    @property
    def fills(self) -> dict[str, Fill]:
        return self.ctx.fills

    @property
    def refreshing(self) -> set[str]:
        return self.ctx.refreshing

    def audit_streams(self) -> int:
        return streams.audit(self.ctx)

    async def start(self) -> None:
        await self.ctx.start()

    async def close(self) -> None:
        await self.ctx.close()
