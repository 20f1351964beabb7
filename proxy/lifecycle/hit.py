"""Hits: the memory tier and the disk index, and "whatever is stored now" for followers.

Rule: one lookup per call, returning a step; a body found is registered with the request's
`Held` (its fd stays open until the request ends, so a replaced or purged file keeps serving
intact bytes to this request).
"""

from __future__ import annotations

import dataclasses
import http
import os
import time
from typing import assert_never

from aiohttp import web

from proxy import deliver
from proxy.exchange import Exchange
from proxy.lifecycle import steps
from proxy.lifecycle.admit import fields, revary
from proxy.lifecycle.context import Context
from proxy.policy import decide, respond
from proxy.policy.freshness import StoredResponse
from proxy.policy.headers import get
from proxy.status import CacheStatus
from proxy.store.front import FrontEntry
from proxy.store.index import CachedBody


def from_memory(ctx: Context, key: str, request: web.BaseRequest) -> steps.Fresh | None:
    """A fresh, unpurged copy in this worker's memory tier (the measured hot path: it runs
    before any per-request record is made)."""
    if ctx.front is None:
        return None
    entry = ctx.front.get(key)
    if entry is None:
        return None
    now = ctx.clock()
    decision = decide.on_request_facts(entry.facts, request.headers.items(), now)
    if ctx.ban_for(key, entry.meta) is None and isinstance(decision, decide.Serve):
        if ctx.store is not None:
            ctx.store.touch(entry.rowid, now)
        return steps.Fresh(entry, decision.age_seconds)
    ctx.front.drop(key)  # stale, purged or soft-purged: the disk path decides
    return None


def lookup(ctx: Context, ex: Exchange) -> steps.Fresh | steps.Refresh | steps.Miss:
    key = ex.key
    cached = ctx.lookup(key)
    if cached is None:
        return steps.Miss(None)
    ban = ctx.ban_for(key, cached.meta)
    if ban is not None and not ban.soft:
        cached.close()  # purged: the sweep will delete it; to us it is already gone
        return steps.Miss(None)
    ex.held.body(cached)
    if ban is not None:
        cached.meta = dataclasses.replace(cached.meta, invalidated=True)
    known = ctx.facts(key, cached.meta)
    decision = decide.on_request_facts(known, fields(ex.request), ctx.clock())
    match decision:
        case decide.Serve(age_seconds=age):
            entry = remember(ctx, cached) if ban is None else None
            return steps.Fresh(entry if entry is not None else cached, age,
                               ttl=known.lifetime_seconds - age)
        case decide.Revalidate():
            return steps.Miss(cached, CacheStatus.EXPIRED)
        case decide.Fetch():
            return steps.Miss(None, CacheStatus.EXPIRED)
        case decide.ServeStale(age_seconds=age):
            return steps.Refresh(cached, age)
        case _:
            assert_never(decision)


def current(ctx: Context, ex: Exchange, step: steps.Current) -> steps.Fresh | steps.Miss:
    """Whatever entry is in the store now (someone else just filled or refreshed it), if
    this request may have it as it is."""
    key = ex.key
    cached = ctx.lookup(key)
    if cached is None and revary(ctx, ex):
        key = ex.key
        cached = ctx.lookup(key)
    if cached is None:
        return steps.Miss(step.stale, step.status, step.round + 1, step.claim_key)
    known = ctx.facts(key, cached.meta)
    decision = decide.on_request_facts(known, fields(ex.request), ctx.clock())
    if ctx.ban_for(key, cached.meta) is not None or not isinstance(decision, decide.Serve):
        cached.close()  # purged, or not usable for this request: claim and fetch
        return steps.Miss(step.stale, step.status, step.round + 1, step.claim_key)
    return steps.Fresh(ex.held.body(cached), decision.age_seconds,
                       ttl=known.lifetime_seconds - decision.age_seconds)


def remember(ctx: Context, cached: CachedBody) -> FrontEntry | None:
    """Copy a small body into the memory tier (from the page cache, one pread)."""
    front = ctx.front
    if front is None or cached.size > front.max_body_bytes:
        return None
    try:
        body = os.pread(cached.file.fileno(), cached.size, 0)
    except OSError:
        return None
    if len(body) != cached.size:
        return None
    hit_headers, wire = hit_head(ctx, cached.meta, cached.size)
    entry = FrontEntry(cached.key, cached.filename, cached.rowid, cached.meta,
                       ctx.facts(cached.key, cached.meta), body, hit_headers, wire,
                       loaded_at=ctx.clock(), loaded_mono=time.monotonic(),
                       slot=cached.slot, signal=cached.signal)
    front.put(entry)
    return entry


def hit_head(ctx: Context, meta: StoredResponse, size: int
             ) -> tuple[tuple[tuple[str, str], ...], bytes | None]:
    """A plain 200 HIT's fields without Age, and the same serialised (None when aiohttp must
    write them): a pure function of the stored version, remembered so a copy reloaded into
    the memory tier is not built again."""
    found, head = ctx.heads.get((meta, size))
    if found and head is not None:
        return head
    # Built with an Age (so any stored Age is dropped), then without it: `answer.memory`
    # adds the current one per request.
    plan = respond.plan("GET", (), meta.status, meta.headers, size, 0)
    hit_headers = tuple((k, v) for k, v in deliver.build_headers(
        plan.headers, CacheStatus.HIT, ctx.via, ctx.hidden,
        x_cache=ctx.config.server.x_cache).items() if k.lower() != "age")
    wire = None
    # Without Date aiohttp adds one per response; 204 and 304 have no Content-Length.
    if get(hit_headers, "date") is not None and plan.status not in (204, 304):
        wire = deliver.wire_head(plan.status, reason(plan.status), hit_headers, size)
    ctx.heads.put((meta, size), (hit_headers, wire))
    return hit_headers, wire


def reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""
