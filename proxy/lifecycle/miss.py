"""The claimant's one origin request: a fetch, or a revalidation of the copy it holds.

Rule: one origin request per call; what to do with the answer comes from `decide.on_origin`
(refresh, stale on error, gone, or a new answer stored by a fill or relayed); a fill started
here takes the claim over, and in-process waiters are handed it at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging

from proxy.errors import OriginError, StoreError
from proxy.exchange import Exchange
from proxy.lifecycle import fill as fills
from proxy.lifecycle import steps
from proxy.lifecycle.admit import fields, forward_headers, revary, vary_fields
from proxy.lifecycle.context import Context
from proxy.origin import OriginResponse
from proxy.policy import decide, revalidate, vary
from proxy.policy.bans import BanKind
from proxy.policy.freshness import StoredResponse, current_age
from proxy.policy.headers import Headers
from proxy.status import CacheStatus
from proxy.store.budget import NoRoom
from proxy.store.fill import Fill, FillOutcome
from proxy.store.index import CachedBody

log = logging.getLogger("proxy.handler")


async def ask_origin(ctx: Context, ex: Exchange, step: steps.Claimed) -> steps.Terminal:
    request, key, cached = ex.request, ex.key, step.stale
    replaced = committed_meanwhile(ctx, ex, cached)
    if replaced is not None:
        return replaced
    headers = forward_headers(ctx, request, for_fill=True)
    if cached is not None:
        headers += revalidate.conditional_fields(cached.meta.headers)
    stale_facts = ctx.facts(key, cached.meta) if cached is not None else None
    request_time = ctx.clock()
    origin: OriginResponse | None = None
    try:
        origin = await ctx.origin_request("GET", ex.target, headers)
    except OriginError as exc:
        if not isinstance(decide.on_origin(None, stale_facts, fields(request), ctx.clock()),
                          decide.StaleOnError):
            ex.held.fail(exc, {"failed": {"status": exc.status, "message": exc.message,
                                          "at": ctx.clock()}})
            raise
    decision = decide.on_origin(None if origin is None else origin.status, stale_facts,
                                fields(request), ctx.clock())
    match decision:
        case decide.StaleOnError():
            if origin is not None:
                origin.release()
            assert cached is not None
            return steps.Stale(cached, current_age(cached.meta, ctx.clock()), CacheStatus.STALE)
        case decide.Refresh():
            assert origin is not None and cached is not None
            origin.release()
            return await _refreshed(ctx, ex, cached, origin, headers, request_time)
        case decide.Gone():
            # Deleted at the origin: a ban (not a local delete) so every worker's memory tier
            # and, in strict mode, every running stream of it learn it at once.
            assert ctx.store is not None
            ctx.forget(key)
            await ctx.store_call("ban", ctx.store.add_ban, BanKind.EXACT, key, soft=False,
                                 now=ctx.clock())
    assert origin is not None  # Failed re-raised above
    return new_answer(ctx, ex, origin, headers, request_time, step.status)


def committed_meanwhile(ctx: Context, ex: Exchange, cached: CachedBody | None
                        ) -> steps.Fresh | None:
    """Another process may have committed or refreshed the key between our lookup and our
    claim: that, if it is new to us and usable as it is now (a stale entry is what we are
    here to replace)."""
    current = ctx.lookup(ex.key)
    if current is None and revary(ctx, ex):
        current = ctx.lookup(ex.key)
    key = ex.key
    if current is None:
        return None
    if ctx.ban_for(key, current.meta) is not None:
        current.close()  # purged (or soft-purged): not a substitute for asking the origin
        return None
    replaced = cached is None or current.filename != cached.filename or (
        current.meta.response_time > cached.meta.response_time)
    known = ctx.facts(key, current.meta)
    decision = decide.on_request_facts(known, fields(ex.request), ctx.clock())
    if replaced and isinstance(decision, decide.Serve):
        return steps.Fresh(ex.held.body(current), decision.age_seconds,
                           ttl=known.lifetime_seconds - decision.age_seconds)
    current.close()
    return None


async def _refreshed(ctx: Context, ex: Exchange, cached: CachedBody, origin: OriginResponse,
                     sent: Headers, request_time: float) -> steps.Revalidated:
    merged = revalidate.merge_304(cached.meta.headers, origin.headers, ctx.shared)
    meta = StoredResponse(status=cached.meta.status, headers=merged.stored,
                          request_time=request_time, response_time=ctx.clock(),
                          body_size=cached.size)
    if ctx.still_storable(meta, sent, ex.target):
        await ctx.store_call("refresh", ctx.refresh, ex.key, cached.filename, meta)
    cached.meta = meta
    # Per-client fields of the 304 (Set-Cookie...) go to this client only.
    return steps.Revalidated(cached, current_age(meta, ctx.clock()), merged.client_only)


def new_answer(ctx: Context, ex: Exchange, origin: OriginResponse, sent: Headers,
               request_time: float, status: CacheStatus) -> steps.Filling | steps.Uncached:
    """A full origin response (to the request fields `sent`): stored while it is served (a
    fill others may join), or relayed."""
    request, target = ex.request, ex.target
    response_time = ctx.clock()
    fill: Fill | None = None
    client_only: Headers = ()
    storable = decide.storable(  # judged on what the origin was sent (RFC 9111 §3.5)
        "GET", origin.status, sent, origin.headers, response_time, ctx.lifetime_rule(target.path))
    claim = ex.held.claim
    if storable:
        split = revalidate.for_storage(origin.headers, ctx.shared)
        client_only = split.client_only  # this client's own fields, kept out of the store
        meta = StoredResponse(origin.status, split.stored, request_time, response_time,
                              origin.content_length or 0)
        names = ctx.vary_names(origin.headers)
        # Stored under its own variant's key (RFC 9111 §4.1), side by side with others.
        stored_target = dataclasses.replace(
            target, variant=vary.variant(names, vary_fields(ctx, request)) if names else "")
        try:
            fill = fills.open_fill(ctx, claim, stored_target, meta, origin.content_length)
        except NoRoom as exc:
            # Larger than the budget can hold now: relayed uncached, not a store failure.
            ctx.metrics.fills.labels(FillOutcome.NO_ROOM.value).inc()
            log.info("not storing %s: %s", target.key, exc)
        except (StoreError, OSError) as exc:
            ctx.metrics.store_errors.labels("fill_create").inc()
            log.warning("cannot start fill: %s", exc)
    elif not decide.storable("GET", origin.status, (), origin.headers, response_time,
                             ctx.lifetime_rule(target.path)):
        # Hit-for-pass, only for what the *response* makes unstorable: a request field
        # (no-store, Authorization) must not switch caching off for everyone else.
        ctx.pass_keys[target.key] = True
        with contextlib.suppress(OSError):
            claim.publish({"pass": True})
    # Later requests join through ctx.fills (or the store), never through a future that
    # outlives its fill: waiters in this process get the fill (or None) now.
    ex.held.hand_over(fill)
    if fill is None:
        return steps.Uncached(CacheStatus.PASS, origin)
    fills.start(ctx, fill, origin)
    return steps.Filling(fill, status, client_only)
