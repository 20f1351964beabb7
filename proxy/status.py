"""The closed set of cache outcomes (defined in `proxy.policy.outcome`, re-exported here) and
the helpers that label a request by it."""

from __future__ import annotations

from proxy.policy.outcome import CacheStatus

__all__ = ["METHOD_LABELS", "CacheStatus", "error_status", "method_label"]

METHOD_LABELS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "PURGE"})


def method_label(method: str) -> str:
    """Metric label for a method: a closed set, so a client cannot mint label values."""
    return method if method in METHOD_LABELS else "OTHER"


def error_status(status: int, auth: bool) -> CacheStatus:
    """The outcome of a request the proxy refused itself: a 401/403 of access control is a
    denial, not a failure of the proxy (so it does not read as ERROR on dashboards)."""
    return CacheStatus.DENIED if auth and status in (401, 403) else CacheStatus.ERROR
