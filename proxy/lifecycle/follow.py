"""Following a fill another process (or request) runs: join it, or take what it stored.

Rule: reads the claim's published notice, never writes it; one follow per call, bounded by
the origin's timeouts; a followed file is registered with the request's `Held`.
"""

from __future__ import annotations

import asyncio
import io
import time

from proxy.exchange import Exchange
from proxy.lifecycle import steps
from proxy.lifecycle.admit import joinable
from proxy.lifecycle.context import Context
from proxy.status import CacheStatus
from proxy.store.fill import RemoteFill
from proxy.store.index import meta_from_dict
from proxy.store.retention import hold

POLL_SECONDS = 0.005


async def wait(ctx: Context, ex: Exchange, step: steps.Follow
               ) -> steps.Join | steps.Current | steps.Uncached:
    """Serve the claimant's fill, or what it stored once its claim is released."""
    assert ctx.store is not None
    claims = ctx.store.claims
    key = ex.key
    timeouts = ctx.config.origin
    deadline = time.monotonic() + timeouts.connect_timeout_seconds + (
        timeouts.read_timeout_seconds)
    while time.monotonic() < deadline:
        if not claims.is_held(key):
            return steps.Current(step.stale, step.status, step.round)
        info = claims.read_meta(key)
        if info is not None and not info.get("done"):
            if info.get("pass") or info.get("spilled"):
                return steps.Uncached(CacheStatus.PASS)
            try:
                handle = io.FileIO(claims.part_path(key, info), "r")
                hold(handle.fileno())
            except FileNotFoundError:
                await asyncio.sleep(POLL_SECONDS)  # committed meanwhile: the claim goes next
                continue
            remote = ex.held.body(RemoteFill(claims, key, meta_from_dict(info["meta"]),
                                             info.get("expected"), handle))
            remote.vary_names = tuple(info.get("vary_names", ()))
            remote.variant = str(info.get("variant", ""))
            if ctx.purged(remote) or not joinable(ctx, remote, ex.request):
                return steps.Uncached(CacheStatus.PASS)
            return steps.Join(remote)
        await asyncio.sleep(POLL_SECONDS)
    return steps.Uncached(CacheStatus.PASS)
