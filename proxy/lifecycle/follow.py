"""Following a fill another process (or request) runs: join it, or take what it stored.

Rule: reads the claim's published notice, never writes it; one follow per call, bounded by
the origin's timeouts; a followed file is registered with the request's `Held`. A claimant's
failure is learnt from its notice at once (the follower answers with the same error rather
than asking the origin again with full timeouts of its own).
"""

from __future__ import annotations

import asyncio
import io
import time
from typing import Any

from proxy.errors import OriginError, OriginTimeout
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
               ) -> steps.Join | steps.Current | steps.Miss | steps.Uncached:
    """Serve the claimant's fill, or what it stored once its claim is released."""
    assert ctx.store is not None
    claims = ctx.store.claims
    claim_key = step.claim_key or ex.key
    since = ctx.clock()
    timeouts = ctx.config.origin
    deadline = time.monotonic() + timeouts.connect_timeout_seconds + (
        timeouts.read_timeout_seconds)
    while time.monotonic() < deadline:
        held = claims.is_held(claim_key)
        info = claims.read_meta(claim_key)  # after is_held: a failure is published first
        if info is not None:
            _raise_if_failed(info, since)
        if not held:
            return steps.Current(step.stale, step.status, step.round, step.claim_key)
        if info is not None and not info.get("done"):
            if info.get("pass") or info.get("spilled"):
                return steps.Uncached(CacheStatus.PASS)
            if "meta" not in info:
                await asyncio.sleep(POLL_SECONDS)
                continue
            try:
                handle = io.FileIO(claims.part_path(claim_key, info), "r")
                hold(handle.fileno())
            except FileNotFoundError:
                await asyncio.sleep(POLL_SECONDS)  # committed meanwhile: the claim goes next
                continue
            remote = ex.held.body(RemoteFill(claims, claim_key, meta_from_dict(info["meta"]),
                                             info.get("expected"), handle))
            remote.key = str(info.get("key", ex.key))
            remote.vary_names = tuple(info.get("vary_names", ()))
            remote.variant = str(info.get("variant", ""))
            ban = ctx.ban_for(remote.key, remote.meta)
            if ban is not None and not ban.soft:
                # Purged while it fills: collapse with the others on a new fill.
                if step.claim_key:
                    return steps.Uncached(CacheStatus.PASS)
                return steps.Miss(step.stale, step.status, step.round + 1,
                                  steps.generation(ex.key, ban.id))
            if not joinable(ctx, remote, ex.request):
                return steps.Uncached(CacheStatus.PASS)
            return steps.Join(remote)
        await asyncio.sleep(POLL_SECONDS)
    return steps.Uncached(CacheStatus.PASS)


def _raise_if_failed(info: dict[str, Any], since: float) -> None:
    failed = info.get("failed")
    if not isinstance(failed, dict) or not isinstance(failed.get("at"), int | float):
        return
    if failed["at"] < since - 1.0:
        return  # an older claimant's: not the request this one waited for
    message = str(failed.get("message", "origin request failed"))
    if failed.get("status") == 504:
        raise OriginTimeout(message)
    raise OriginError(message)
