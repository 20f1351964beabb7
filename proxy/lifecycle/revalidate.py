"""Background revalidation (stale-while-revalidate): the stale answer goes out at once, one
refresh per key runs behind it.

Rule: one refresh per key across processes (it takes the key's claim, or does nothing); a
refresh goes through the fill runner and the same 304 rules as a foreground revalidation;
it never touches the request's own `Held`.
"""

from __future__ import annotations

import logging

from proxy.errors import ProxyError
from proxy.exchange import Exchange
from proxy.lifecycle import fill as fills
from proxy.lifecycle import steps
from proxy.lifecycle.admit import forward_headers
from proxy.lifecycle.context import Context
from proxy.policy import cachekey, decide, revalidate, vary
from proxy.policy.freshness import StoredResponse
from proxy.policy.headers import Headers
from proxy.status import CacheStatus
from proxy.store.claims import Claim
from proxy.store.fill import Fill

log = logging.getLogger("proxy.handler")


def later(ctx: Context, ex: Exchange, step: steps.Refresh) -> steps.Stale:
    """Start the refresh (unless one is running somewhere) and answer with the stale copy."""
    cached, key = step.body, ex.key
    if ctx.store is not None and key not in ctx.refreshing:
        try:
            claim = ctx.store.claims.try_claim(key)
        except OSError:
            claim = None
        if claim is not None:  # else another request or process is refreshing or filling it
            headers = forward_headers(ctx, ex.request, for_fill=True) + (
                revalidate.conditional_fields(cached.meta.headers))
            ctx.refreshing.add(key)
            ctx.spawn(_refresh(ctx, ex.target, headers, cached.meta, cached.filename, claim))
    return steps.Stale(cached, step.age, CacheStatus.UPDATING)


async def _refresh(ctx: Context, target: cachekey.Target, headers: Headers,
                   stale: StoredResponse, filename: str, claim: Claim) -> None:
    key = target.key
    fill: Fill | None = None
    try:
        request_time = ctx.clock()
        origin = await ctx.origin_request("GET", target, headers)
        response_time = ctx.clock()
        if origin.status == 304:
            origin.release()
            merged = revalidate.merge_304(stale.headers, origin.headers, ctx.shared)
            meta = StoredResponse(stale.status, merged.stored, request_time, response_time,
                                  stale.body_size)
            if ctx.still_storable(meta, headers, target):
                await ctx.store_call("refresh", ctx.refresh, key, filename, meta)
        elif decide.storable("GET", origin.status, headers, origin.headers, response_time,
                             ctx.lifetime_rule(target.path)) and (
                ctx.vary_names(origin.headers) == vary.names_of(target.variant)
        ) and ctx.store is not None:
            meta = StoredResponse(origin.status,
                                  revalidate.for_storage(origin.headers, ctx.shared).stored,
                                  request_time, response_time, origin.content_length or 0)
            fill = fills.open_fill(ctx, claim, target, meta, origin.content_length)
            fill.background = True
            ctx.fills[key] = fill
            await fills.run(ctx, fill, origin)  # releases the claim when it ends
        else:
            origin.close()
    except (ProxyError, OSError) as exc:
        log.info("background refresh of %s failed: %s", key, exc)
    finally:
        if fill is None or fill.claim is not claim:
            claim.release()
        ctx.refreshing.discard(key)
