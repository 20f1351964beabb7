"""Bodies being sent, for the open-streams gauge and the strict-mode auditor.

Rule: every response that streams a cached body or a fill is registered for exactly as long
as it sends; in strict mode (`cache.abort_streams_on_revoke`) the auditor cuts the streams of
objects purged, deleted or made protected since they began (unless granted access).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import TYPE_CHECKING

from aiohttp import web

from proxy import deliver
from proxy.policy.access import Access
from proxy.policy.bans import response_tags
from proxy.policy.freshness import StoredResponse

if TYPE_CHECKING:
    from proxy.lifecycle.context import Context


@dataclasses.dataclass(eq=False)
class Stream:
    """A response streaming a cached body, as the strict-mode auditor sees it."""

    request: web.BaseRequest
    key: str
    response_time: float  # of the version it is sending
    token: bool  # was granted access (token or callout) when it began


@contextlib.contextmanager
def streaming(ctx: Context, request: web.BaseRequest, key: str, meta: StoredResponse,
              granted: bool) -> Iterator[None]:
    record = Stream(request, key, meta.response_time, granted)
    ctx.streams.setdefault(key, set()).add(record)
    ctx.metrics.open_streams.inc()
    try:
        yield
    finally:
        ctx.metrics.open_streams.dec()
        group = ctx.streams.get(key)
        if group is not None:
            group.discard(record)
            if not group:
                del ctx.streams[key]


def audit(ctx: Context) -> int:
    """Strict mode: cut every running stream whose object was purged or deleted since it
    began, or became protected while the stream carries no valid token. Returns the number
    cut. Runs every second in each worker; bans and the index are shared, so a change learned
    by any worker reaches streams in all of them."""
    if not ctx.streams or ctx.store is None:
        return 0
    cut = 0
    bans = ctx.store.bans()
    for key, group in list(ctx.streams.items()):
        current = ctx.store.peek(key)
        path = key.split("?", 1)[0]
        for stream in list(group):
            tags = response_tags(current.headers) if current is not None else ()
            banned = bans.match(key, tags, stream.response_time)
            revoked = (current is not None and not stream.token and ctx.access.for_object(
                path, current.headers) is Access.PROTECTED)
            if (banned is not None and not banned.soft) or revoked:
                deliver.abort(stream.request)
                group.discard(stream)
                cut += 1
    if cut:
        ctx.metrics.aborted_streams.inc(cut)
    return cut
