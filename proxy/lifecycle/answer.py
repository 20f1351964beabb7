"""Writes the one response of a request, from a terminal step, and records its cache status.

Rule: the only module that writes a response or records the cache status (once, after the
access check, so a refused request is recorded by the error path instead). Before any body
it hands the request's claim and pending future over, so others never wait for a body that
may take hours; a fill this request started keeps its claim.
"""

from __future__ import annotations

import math

from aiohttp import HttpVersion11, web
from multidict import CIMultiDict

from proxy import deliver
from proxy.exchange import SESSION_GRANTED_KEY, TARGET_KEY, Exchange, record_status
from proxy.lifecycle import steps
from proxy.lifecycle.admit import fields as request_fields
from proxy.lifecycle.authorize import authorize, granted
from proxy.lifecycle.context import Context, ban_in
from proxy.lifecycle.fill import resume_from_origin
from proxy.lifecycle.streams import streaming
from proxy.origin import OriginResponse
from proxy.policy import respond, session
from proxy.policy.access import Access
from proxy.policy.cache_status import CacheOutcome, Forward, fresh_hit, member
from proxy.policy.freshness import StoredResponse, current_age
from proxy.policy.headers import Headers
from proxy.status import CacheStatus
from proxy.store.fill import Fill
from proxy.store.front import FrontEntry
from proxy.store.index import CachedBody

# Request fields that make an answer more than "the stored 200 as it is".
PLAN_FIELDS = ("range", "if-none-match", "if-modified-since", "if-match", "if-unmodified-since")


async def send(ctx: Context, ex: Exchange, step: steps.Terminal) -> web.StreamResponse:
    if not isinstance(step, steps.Filling):
        ex.held.hand_over()
    request = ex.request
    varied = bool(ex.target.variant)  # the URL has stored variants: a miss is a vary-miss
    match step:
        case steps.Fresh(body=FrontEntry() as entry, age=age):
            return await memory(ctx, request, entry, age)
        case steps.Fresh(body=body, age=age, status=status, ttl=float() as ttl):
            outcome = CacheOutcome(status, ttl=ttl)  # judged by the step already
            return await stored(ctx, request, body, age, status, member=_member(ctx, outcome))
        case steps.Fresh(body=body, age=age, status=status) | steps.Stale(
                body=body, age=age, status=status):
            outcome = CacheOutcome(status, ttl=_ttl(ctx, body.key, body.meta, age))
            return await stored(ctx, request, body, age, status, member=_member(ctx, outcome))
        case steps.Revalidated(body=body, age=age, client_only=client_only, status=status):
            outcome = CacheOutcome(status, ttl=_ttl(ctx, body.key, body.meta, age))
            return await stored(ctx, request, body, age, status, client_only,
                                member=_member(ctx, outcome))
        case steps.Join(fill=fill, status=status):
            outcome = CacheOutcome(status, collapsed=True, vary_miss=varied,
                                   ttl=_ttl(ctx, fill.key, fill.meta, None))
            return await from_fill(ctx, request, fill, status, member=_member(ctx, outcome))
        case steps.Filling(fill=fill, status=status, client_only=client_only):
            outcome = CacheOutcome(status, vary_miss=varied, stored=True,
                                   fwd_status=fill.meta.status,
                                   ttl=_ttl(ctx, fill.key, fill.meta, None))
            return await from_fill(ctx, request, fill, status, client_only,
                                   member=_member(ctx, outcome))
        case steps.Converted(body=body, headers=headers, stored=kept, status=status):
            outcome = CacheOutcome(status, stored=kept)
            return await converted(ctx, request, body, headers, status, _member(ctx, outcome))
        case steps.Uncached(status=status, origin=origin, bypass=bypass):
            assert origin is not None, "the driver fetches before it answers"
            forward = None if request.method in ("GET", "HEAD") else Forward.METHOD
            if forward is None and bypass:
                forward = Forward.BYPASS
            outcome = CacheOutcome(status, vary_miss=varied, fwd_status=origin.status,
                                   forward=forward)
            try:
                return await relay(ctx, request, origin, status, _member(ctx, outcome))
            finally:
                origin.release()
    raise AssertionError(f"not a terminal step: {step!r}")


def _member(ctx: Context, outcome: CacheOutcome) -> str | None:
    """Our Cache-Status member (RFC 9211), from the same outcome as X-Cache and the log."""
    return member(ctx.via, outcome) if ctx.config.server.cache_status else None


def _ttl(ctx: Context, key: str, meta: StoredResponse, age: float | None) -> float:
    """Freshness left (negative: stale), as this cache judges it for `key`."""
    known = ctx.facts(key, meta)
    return known.lifetime_seconds - (known.age(ctx.clock()) if age is None else age)


def purged(request: web.BaseRequest, response: web.Response) -> web.Response:
    """The answer to a PURGE request (its JSON was written by `purge`)."""
    record_status(request, CacheStatus.PASS)
    return response


async def memory(ctx: Context, request: web.BaseRequest, entry: FrontEntry, age: float
                 ) -> web.StreamResponse:
    """A hit from the memory tier; the plain GET of a fresh object leaves as pre-built bytes."""
    await authorize(ctx, request, entry.meta.headers)
    record_status(request, CacheStatus.HIT)
    headers = request.headers
    if request.method == "GET" and not any(name in headers for name in PLAN_FIELDS) and (
            SESSION_GRANTED_KEY not in request):
        request[deliver.BYTES_KEY] = len(entry.body)
        status_member = fresh_hit(ctx.via, entry.facts.lifetime_seconds - age) if (
            ctx.config.server.cache_status) else None
        if entry.wire_head is not None and request.version == HttpVersion11 and (
                request.keep_alive):
            tail = b"Age: %d\r\n\r\n" % max(0, math.floor(age))
            if status_member is not None:  # ASCII by construction (sf-token or sf-string)
                tail = b"Cache-Status: " + status_member.encode() + b"\r\n" + tail
            if ctx.routes is not None:
                _route(ctx, request, entry, entry.wire_head)
            return deliver.WireResponse(entry.meta.status, (entry.wire_head, tail, entry.body))
        fields = CIMultiDict((*entry.hit_headers, ("Age", str(max(0, math.floor(age))))))
        if status_member is not None:
            fields.add("Cache-Status", status_member)
        return web.Response(status=entry.meta.status, headers=fields, body=entry.body)
    plan = respond.plan(request.method, headers.items(), entry.meta.status,
                        entry.meta.headers, len(entry.body), age)
    out = client_headers(ctx, request, plan.headers, CacheStatus.HIT, _member(ctx, CacheOutcome(
        CacheStatus.HIT, ttl=entry.facts.lifetime_seconds - age)))
    if not plan.send_body:
        if plan.content_length is not None and plan.status not in (304,):
            out["Content-Length"] = str(plan.content_length)
        return web.Response(status=plan.status, headers=out)
    length = len(entry.body) if plan.length is None else plan.length
    body = entry.body[plan.offset:plan.offset + length]
    request[deliver.BYTES_KEY] = len(body)
    return web.Response(status=plan.status, headers=out, body=body)


def _route(ctx: Context, request: web.BaseRequest, entry: FrontEntry, head: bytes) -> None:
    """Let the lane answer the same target from these bytes while they hold, when nothing
    but the target decided this answer: no variant, a public object, no per-request
    revalidation, an origin-form target as sent (ASCII, so its bytes are its text)."""
    assert ctx.routes is not None
    target = request.get(TARGET_KEY)
    raw = request.raw_path
    if target is None or target.variant or ctx.implicit_vary or not raw.startswith("/") or (
            not raw.isascii()) or entry.facts.must_revalidate_always or (
            entry.facts.recheck_seconds is not None):
        return
    if ctx.access.for_object(target.path, entry.meta.headers) is not Access.PUBLIC:
        return
    # Judged against the table the route is then bound to: a purge landing (in another
    # process) since this request's own ban check cannot slip under the route.
    bans = ctx.bans_seen_now()
    if ban_in(bans, entry.key, entry.meta) is None:
        ctx.routes.add(raw.encode("ascii"), entry, head, entry.loaded_at, bans)


async def stored(ctx: Context, request: web.BaseRequest, cached: CachedBody, age: float,
                 status: CacheStatus, client_only: Headers = (), *, member: str | None = None
                 ) -> web.StreamResponse:
    """A stored body by sendfile from the fd opened at lookup."""
    fields = (*cached.meta.headers, *client_only) if client_only else cached.meta.headers
    await authorize(ctx, request, fields)
    record_status(request, status)
    plan = respond.plan(request.method, request_fields(request), cached.meta.status, fields,
                        cached.size, age)
    out = client_headers(ctx, request, plan.headers, status, member)
    with streaming(ctx, request, cached.key, cached.meta, granted(ctx, request)):
        return await deliver.send_file(request, plan, cached.file, out)


async def from_fill(ctx: Context, request: web.BaseRequest, fill: Fill, status: CacheStatus,
                    client_only: Headers = (), *, member: str | None = None
                    ) -> web.StreamResponse:
    """A body as it arrives from the origin (this request's fill, or one it joined)."""
    fields = (*fill.meta.headers, *client_only) if client_only else fill.meta.headers
    # Counted as a reader while the callout may be asked, so the fill is not abandoned as
    # "every client left" while its only client waits for its answer.
    held = fill.open_reader() if ctx.callout is not None and isinstance(fill, Fill) else None
    try:
        await authorize(ctx, request, fields)  # every field this client will get
    finally:
        if held is not None:
            fill.release_reader(held)
    record_status(request, status)
    # Age only on answers from the cache (RFC 9111 §5.1), i.e. for those joining a fill.
    age = current_age(fill.meta, ctx.clock()) if status is CacheStatus.HIT else None
    plan = respond.plan(request.method, request_fields(request), fill.meta.status, fields,
                        fill.expected, age)
    out = client_headers(ctx, request, plan.headers, status, member)
    with streaming(ctx, request, fill.key, fill.meta, granted(ctx, request)):
        resume = None if isinstance(fill, Fill) else resume_from_origin(
            ctx, request, request[TARGET_KEY], fill)
        return await deliver.send_fill(request, plan, fill, out, resume)


async def converted(ctx: Context, request: web.BaseRequest, body: bytes, fields: Headers,
                    status: CacheStatus, member: str | None) -> web.StreamResponse:
    """A conversion this request made (stored or not), from its bytes."""
    await authorize(ctx, request, fields)
    record_status(request, status)
    plan = respond.plan(request.method, request_fields(request), 200, fields, len(body), None)
    out = client_headers(ctx, request, plan.headers, status, member)
    if not plan.send_body:
        if plan.content_length is not None and plan.status != 304:
            out["Content-Length"] = str(plan.content_length)
        return web.Response(status=plan.status, headers=out)
    length = len(body) if plan.length is None else plan.length
    request[deliver.BYTES_KEY] = length
    return web.Response(status=plan.status, headers=out,
                        body=body[plan.offset:plan.offset + length])


async def relay(ctx: Context, request: web.BaseRequest, origin: OriginResponse,
                status: CacheStatus, member: str | None = None) -> web.StreamResponse:
    """The origin's answer as it is; nothing stored."""
    await authorize(ctx, request, origin.headers)
    record_status(request, status)
    head = request.method == "HEAD" or origin.status in (204, 304) or origin.status < 200
    plan = respond.Plan(
        status=origin.status,
        headers=tuple((k, v) for k, v in origin.headers if k.lower() != "content-length"),
        offset=0,
        length=origin.content_length,
        send_body=not head,
        content_length=origin.content_length,
    )
    out = client_headers(ctx, request, plan.headers, status, member)
    return await deliver.relay(request, plan, origin, out)


def client_headers(ctx: Context, request: web.BaseRequest, fields: Headers,
                   status: CacheStatus, member: str | None = None) -> CIMultiDict[str]:
    out = deliver.build_headers(tuple(fields), status, ctx.via, ctx.hidden,
                                x_cache=ctx.config.server.x_cache, cache_status=member)
    if SESSION_GRANTED_KEY in request:
        value = session.private_cache_control(out.getall("Cache-Control", []))
        out.popall("Cache-Control", None)
        out["Cache-Control"] = value
    return out
