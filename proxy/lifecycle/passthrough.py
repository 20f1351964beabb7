"""Requests that go to the origin as they are: unsafe methods, and reads the cache cannot
answer (relayed uncached).

Rule: one origin request per call; never touches a claim or a fill. A successful unsafe
request invalidates what it changed (RFC 9111 §4.4).
"""

from __future__ import annotations

from proxy.exchange import Exchange
from proxy.lifecycle import steps
from proxy.lifecycle.admit import forward_headers
from proxy.lifecycle.authorize import authorize
from proxy.lifecycle.context import Context
from proxy.origin import OriginResponse
from proxy.policy import cachekey, decide, groups
from proxy.policy.access import Access
from proxy.policy.bans import BanKind
from proxy.status import CacheStatus


async def unsafe(ctx: Context, ex: Exchange) -> steps.Uncached:
    """Any method but GET, HEAD and PURGE: forwarded with its body, then invalidation."""
    request, target = ex.request, ex.target
    if ctx.access.by_rule(target.path) is Access.PROTECTED:
        # Every method, before any origin work: an origin view that answers POST or PROPFIND
        # with the item would otherwise hand it out tokenless.
        await authorize(ctx, request, ())
    data = request.content if request.body_exists else None
    # The body is framed by what aiohttp's parser read: its length, or chunked when the
    # client sent it chunked (never the client's own framing fields).
    length = request.content_length if data is not None else None
    origin = await ctx.origin_request(
        request.method, target, forward_headers(ctx, request, for_fill=False, body_length=length),
        data=data)
    try:
        await _invalidate(ctx, ex, origin)
    except BaseException:
        origin.release()
        raise
    return steps.Uncached(CacheStatus.PASS, origin)


async def fetch(ctx: Context, ex: Exchange, step: steps.Uncached) -> steps.Uncached:
    """A GET or HEAD relayed uncached: the client's own conditionals and ranges go along, so
    the origin can answer 304 or 206 itself."""
    request = ex.request
    origin = await ctx.origin_request(request.method, ex.target,
                                      forward_headers(ctx, request, for_fill=False))
    return steps.Uncached(step.status, origin, step.bypass)


async def _invalidate(ctx: Context, ex: Exchange, origin: OriginResponse) -> None:
    """A successful unsafe request makes our copies of what it changed unusable."""
    if ctx.store is None:
        return
    for path in decide.invalidated_by(ex.request.method, origin.status, ex.target.key,
                                      origin.headers, ctx.origin.base.raw_authority):
        parts = path.partition("?")
        normal = cachekey.normalise_target(parts[0], parts[2], strip_params=ctx.token_params)
        if isinstance(normal, cachekey.Rejected):
            continue
        ctx.forget(normal.key)
        await ctx.store_call("invalidate", ctx.store.add_ban, BanKind.EXACT, normal.key,
                             soft=False, now=ctx.clock())
    # RFC 9875 §3: the groups the origin names in Cache-Group-Invalidation on its answer to an
    # unsafe request are invalidated, on every node (safe methods' answers are ignored).
    names = groups.invalidated_groups(ex.request.method, origin.status, origin.headers)
    for name in names:
        if ctx.config.cluster.redis_url and ctx.config.admin.token:
            handed = await ctx.purge_via_admin({"group": name})
            if handed is not None and handed.status == 200:
                continue
        await ctx.store_call("invalidate", ctx.store.add_ban, BanKind.TAG, groups.tag(name),
                             soft=False, now=ctx.clock())
