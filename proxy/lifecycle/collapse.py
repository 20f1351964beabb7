"""Collapsed forwarding: across every process, one request at a time goes to the origin for a
key; everyone else joins its fill or follows its outcome.

Rule: one claim attempt per call, returning a step; a claim obtained is registered with the
request's `Held` (with the in-process future) before any await, so requests for the key in
this process park on the one that goes to the origin. A fill that a purge covers keeps the
key's claim for its own readers; requests after the purge collapse on a generation of the
claim instead (`steps.generation`).
"""

from __future__ import annotations

import asyncio
import logging

from proxy.errors import OriginError
from proxy.exchange import Exchange
from proxy.lifecycle import steps
from proxy.lifecycle.admit import joinable
from proxy.lifecycle.context import Context
from proxy.status import CacheStatus

log = logging.getLogger("proxy.handler")


async def choose(ctx: Context, ex: Exchange, step: steps.Miss
                 ) -> steps.Join | steps.Follow | steps.Claimed | steps.Current | steps.Miss | (
                     steps.Uncached):
    request, key = ex.request, ex.key
    claim_key = step.claim_key or key
    if step.round >= steps.ROUNDS:
        return steps.Uncached(CacheStatus.PASS)
    fill = ctx.fills.get(key)
    if fill is not None and fill.closed:
        fill = None  # ended meanwhile: its entry (if committed) is in the store
    if fill is not None:
        ban = ctx.ban_for(fill.key, fill.meta)
        if ban is not None and not ban.soft:
            # A purge covers the fill in progress: it will not be committed, and its
            # superseded bytes go to nobody new. Collapse on a new fill instead.
            if not step.claim_key:
                return steps.Miss(step.stale, step.status, step.round,
                                  steps.generation(key, ban.id))
        elif fill.spill_error is None and joinable(ctx, fill, request):
            return steps.Join(fill)
        else:
            # The disk failed under this fill (it relays to its own readers only), it is
            # another variant than this request's, or this request may not reuse it.
            return steps.Uncached(CacheStatus.PASS)
    if request.method == "HEAD" and step.stale is None:
        # A HEAD must not start a multi-GB fill: ask the origin for headers only.
        return steps.Uncached(step.status)
    store = ctx.store
    if store is None or key in ctx.pass_keys:
        return steps.Uncached(CacheStatus.PASS, bypass=True)
    pending = ctx.pending.get(claim_key)
    if pending is not None:
        result = await asyncio.shield(pending)
        if isinstance(result, OriginError):
            # The request we waited for found the origin failing: so do we, at once.
            raise type(result)(result.message)
        if result is not None and result.joinable and joinable(ctx, result, request):
            return steps.Join(result)
        return steps.Current(step.stale, step.status, step.round, step.claim_key)
    try:
        claim = store.claims.try_claim(claim_key)
    except OSError as exc:
        # Read-only, full or vanished cache directory: serve from the origin.
        ctx.metrics.store_errors.labels("claim").inc()
        log.warning("cannot claim %s: %s", key, exc)
        return steps.Uncached(CacheStatus.PASS)
    if claim is None:
        # Another process (or request) holds the claim. Each follower follows on its own:
        # parking siblings on a follower would make them wait for its whole body.
        return steps.Follow(step.stale, step.status, step.round, step.claim_key)
    ex.held.take(claim, claim_key)  # no await since the pending check above
    return steps.Claimed(step.stale, step.status)
