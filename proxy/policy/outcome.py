"""The closed set of cache outcomes: one value per request, shown in `X-Cache`, `Cache-Status`,
the access log and the `cache_status` metric label alike (like nginx's $upstream_cache_status).

Rule: defined here, in policy, so pure policy (`cache_status`) can map it; `proxy.status`
re-exports it for everyone else.
"""

from __future__ import annotations

import enum


class CacheStatus(enum.Enum):
    HIT = "HIT"  # served from the store, fresh
    MISS = "MISS"  # fetched from the origin (and stored, or joined a fill that stores it)
    EXPIRED = "EXPIRED"  # stored copy was stale and the origin sent a new one
    STALE = "STALE"  # stale copy served because the origin failed
    REVALIDATED = "REVALIDATED"  # stale copy confirmed by a 304 from the origin
    UPDATING = "UPDATING"  # stale copy served while a refresh runs in the background
    PASS = "PASS"  # not from the cache and not stored (unsafe method, uncacheable, store down)
    ERROR = "ERROR"  # answered by the proxy itself with an error status
    DENIED = "DENIED"  # refused by access control (401/403): no cache outcome to report
