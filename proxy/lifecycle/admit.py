"""Admission: the request's target and variant, what may be joined, what the origin is sent.

Rule: pure reads of the request and the per-process memos; raises BadRequest only. The fields
a variant is named by are the fields as the origin is sent them on a fill.
"""

from __future__ import annotations

import dataclasses

from aiohttp import web

from proxy.errors import BadRequest, StoreError
from proxy.exchange import KEY_KEY, PEER_KEY, TARGET_KEY, Exchange
from proxy.lifecycle.context import Context
from proxy.policy import cachekey, decide, forward, vary
from proxy.policy.headers import Headers, end_to_end
from proxy.store.fill import FillView

_MEMO_TARGET_BYTES = 512  # bounded memory: 10,000 short targets at most


def fields(request: web.BaseRequest) -> list[tuple[str, str]]:
    return list(request.headers.items())


def refuse_body(request: web.BaseRequest) -> None:
    """A GET or HEAD must not carry a body: refused rather than drained (a body on a
    cacheable read has no meaning, RFC 9110 §9.3.1, and is the classic way to desynchronise
    the next hop)."""
    if forward.carries_body(request.headers.items()):
        error = BadRequest("a GET or HEAD request must not carry a body")
        error.reason = "body_not_allowed"
        raise error


def exchange_target(ctx: Context, request: web.BaseRequest) -> cachekey.Target:
    """The normalised target of a GET/HEAD (token parameters dropped) with its variant."""
    raw = request.raw_path
    found, memo = ctx.targets.get(raw)
    if not found or memo is None:
        memo = ctx.target(request, ctx.strip_params)
        if len(raw) <= _MEMO_TARGET_BYTES:
            ctx.targets.put(raw, memo)
    target = with_variant(ctx, memo, request)
    request[KEY_KEY] = target.url_key
    request[TARGET_KEY] = target
    return target


def with_variant(ctx: Context, target: cachekey.Target, request: web.BaseRequest
                 ) -> cachekey.Target:
    """If responses for this URL vary, the target of this request's variant. The names are
    remembered per process for a second: a stale answer costs a fetch, never a wrong
    variant (variants are only ever stored under their own key)."""
    url_key = target.url_key
    known, names = ctx.vary_known.get(url_key)
    if not known:
        try:
            names = ctx.store.vary_names(url_key) if ctx.store is not None else None
        except StoreError:
            names = None
        ctx.vary_known.put(url_key, names)
    if ctx.implicit_vary:
        names = tuple(sorted({*(names or ()), *ctx.implicit_vary}))
    if not names:
        return target
    return dataclasses.replace(target, variant=vary.variant(names, vary_fields(ctx, request)))


def revary(ctx: Context, ex: Exchange) -> bool:
    """An entry just stored (here or in another process) may vary, while this request's key
    was made before its Vary record existed: name the request's variant now (True when it
    changed), so it finds that entry instead of fetching again."""
    if ex.target.variant:
        return False
    ctx.vary_known.pop(ex.target.url_key)
    varied = with_variant(ctx, ex.target, ex.request)
    if not varied.variant:
        return False
    ex.target = varied
    ex.request[TARGET_KEY] = varied
    return True


def vary_fields(ctx: Context, request: web.BaseRequest) -> Headers:
    """The request fields a variant is selected by: as the origin sees them on a fill, so
    fields never sent on fills (hop-by-hop and those `Connection` names, the callout's
    session fields, the unkeyed forwarding family) count as absent: a session secret never
    enters a cache key, sessions share the one anonymous variant, and a variant is never
    named by a value the origin did not see."""
    return [(k, v) for k, v in end_to_end(request.headers.items())
            if (name := k.lower()) not in ctx.session_fields and not forward.unkeyed(name)]


def fill_matches(ctx: Context, fill: FillView, request: web.BaseRequest) -> bool:
    """May this request be answered from `fill`? Not if the fill's response varies on a
    field whose value in this request differs."""
    if not fill.vary_names:
        return True
    return vary.variant(fill.vary_names, vary_fields(ctx, request)) == fill.variant


def reusable(ctx: Context, fill: FillView, request: web.BaseRequest) -> bool:
    """May this request be answered from the response `fill` is storing? Only as a stored
    response could (RFC 9111 §4): a request with no-cache, max-age=0 or min-fresh, or a
    response that is no-cache or stale on arrival, is not served from a fill, for which the
    window is the whole transfer."""
    decision = decide.on_request_facts(ctx.facts(fill.key, fill.meta), fields(request),
                                       ctx.clock())
    return isinstance(decision, decide.Serve)


def joinable(ctx: Context, fill: FillView, request: web.BaseRequest) -> bool:
    return fill_matches(ctx, fill, request) and reusable(ctx, fill, request)


def forward_headers(ctx: Context, request: web.BaseRequest, *, for_fill: bool,
                    body_length: int | None = None) -> list[tuple[str, str]]:
    """The fields sent to the origin for `request` (framing, unkeyed and, for reads, session
    fields never among them: `policy/forward.py`)."""
    if for_fill:
        strip = ctx.fill_strip
    elif request.method in ("GET", "HEAD"):
        strip = ctx.session_fields
    else:
        strip = frozenset()
    peer = request.get(PEER_KEY, request.remote)
    return forward.origin_request_fields(
        fields(request), peer=peer, via=ctx.via, strip=strip,
        peer_trusted=forward.in_networks(peer, ctx.trusted_proxies),
        body_length=body_length, token_cookie=ctx.config.auth.cookie_name)
