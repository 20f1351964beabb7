"""The closed set of cache outcomes: one value per request, shown in `X-Cache`, the access log
and the `cache_status` metric label alike (like nginx's $upstream_cache_status)."""

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


METHOD_LABELS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "PURGE"})


def method_label(method: str) -> str:
    """Metric label for a method: a closed set, so a client cannot mint label values."""
    return method if method in METHOD_LABELS else "OTHER"


def error_status(status: int, auth: bool) -> CacheStatus:
    """The outcome of a request the proxy refused itself: a 401/403 of access control is a
    denial, not a failure of the proxy (so it does not read as ERROR on dashboards)."""
    return CacheStatus.DENIED if auth and status in (401, 403) else CacheStatus.ERROR
