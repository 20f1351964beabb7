"""The `Cache-Status` member (RFC 9211) of one answer, derived from its closed `CacheStatus`.

Rule: one source: the member is a function of the same outcome that X-Cache, the access log
and the metric label show, plus the few facts the outcome alone does not carry (was this a
collapsed request, a Vary miss, was the response stored, its freshness left). Answers the
proxy makes up itself (ERROR, DENIED) get no member (RFC 9211 §2: "SHOULD NOT append a
Cache-Status member to responses that it generates locally"); the member goes last in the
field, after whatever the origin (and the caches behind it) sent (§2: the first member is
the cache closest to the origin, the last the one closest to the user agent).

| outcome | member |
|---|---|
| HIT | `hit; ttl=N`; `fwd=uri-miss; collapsed` (or vary-miss) when it joined another's fill |
| UPDATING | `hit; ttl=-N; detail=stale-while-revalidate` (a refresh runs in the background) |
| MISS | `fwd=uri-miss` or `fwd=vary-miss`; `fwd-status`, `stored`, `ttl` when stored |
| EXPIRED | `fwd=stale` (or `fwd=request` when only the request's directives refused the copy) |
| REVALIDATED | as EXPIRED, with `fwd-status=304` |
| STALE | `fwd=stale; fwd-status=5xx` (none without an answer); `detail=origin-error` |
| PASS | `fwd=method` (unsafe method), `fwd=bypass` (hit-for-pass, store unavailable) or as MISS |
| ERROR, DENIED | none |
"""

from __future__ import annotations

import enum
import functools
import math
from dataclasses import dataclass

from proxy.policy.outcome import CacheStatus
from proxy.policy.sfv import serialize_token_or_string

FIELD = "Cache-Status"
_SF_INTEGER_MAX = 999_999_999_999_999  # RFC 9651 §3.3.1


class Forward(enum.Enum):
    """RFC 9211 §2.2 `fwd` values we use: why the request went to the origin."""

    BYPASS = "bypass"  # the cache was configured (or made, hit-for-pass) not to handle it
    METHOD = "method"  # the method must be forwarded (unsafe, or not cacheable)
    URI_MISS = "uri-miss"  # nothing stored for the URL
    VARY_MISS = "vary-miss"  # stored for the URL, but not for this request's Vary fields
    REQUEST = "request"  # a usable copy was there, the request's directives refused it
    STALE = "stale"  # the copy was stale


@dataclass(frozen=True, slots=True)
class CacheOutcome:
    """What the lifecycle knows of one answer when it writes it."""

    status: CacheStatus
    collapsed: bool = False  # joined a fill another request started (RFC 9211 §2.6)
    vary_miss: bool = False  # the URL had stored responses, none for this variant
    stored: bool = False  # this answer is being stored (a fill that will commit)
    ttl: float | None = None  # freshness left in seconds (negative: stale), when known
    fwd_status: int | None = None  # the origin's status, when it differs from the answer's
    forward: Forward | None = None  # overrides the reason derived from `status`
    detail: str | None = None  # overrides the detail derived from `status`


def forward_of(outcome: CacheOutcome) -> Forward | None:
    """The `fwd` reason of an outcome; None for a hit, and for answers made up locally."""
    if outcome.forward is not None:
        return outcome.forward
    miss = Forward.VARY_MISS if outcome.vary_miss else Forward.URI_MISS
    match outcome.status:
        case CacheStatus.HIT:
            return miss if outcome.collapsed else None
        case CacheStatus.UPDATING | CacheStatus.ERROR | CacheStatus.DENIED:
            return None
        case CacheStatus.MISS | CacheStatus.PASS:
            return miss
        case CacheStatus.EXPIRED | CacheStatus.REVALIDATED | CacheStatus.STALE:
            return Forward.STALE
    raise AssertionError(outcome.status)


def _detail(outcome: CacheOutcome) -> str | None:
    if outcome.detail is not None:
        return outcome.detail
    if outcome.status is CacheStatus.UPDATING:
        return "stale-while-revalidate"
    if outcome.status is CacheStatus.STALE:
        return "origin-error"
    return None


def member(cache_name: str, outcome: CacheOutcome) -> str | None:
    """Our list member, e.g. `mediaproxy; fwd=uri-miss; fwd-status=200; stored; ttl=60`,
    or None when the answer is the proxy's own (no member is added)."""
    if outcome.status in (CacheStatus.ERROR, CacheStatus.DENIED):
        return None
    parts = [_name(cache_name)]
    forward = forward_of(outcome)
    if forward is None:
        parts.append("hit")
    else:
        parts.append(f"fwd={forward.value}")
        fwd_status = outcome.fwd_status
        if fwd_status is None and outcome.status is CacheStatus.REVALIDATED:
            fwd_status = 304
        if fwd_status is not None and 100 <= fwd_status <= 999:
            parts.append(f"fwd-status={fwd_status}")
        if outcome.stored:
            parts.append("stored")
        if outcome.collapsed:
            parts.append("collapsed")
    if outcome.ttl is not None and math.isfinite(outcome.ttl):
        parts.append(f"ttl={_seconds(outcome.ttl)}")
    detail = _detail(outcome)
    if detail is not None:
        parts.append(f"detail={serialize_token_or_string(detail)}")
    return "; ".join(parts)


def fresh_hit(cache_name: str, ttl: float) -> str:
    """`member` of a plain HIT with its freshness left, built directly: the memory tier's hot
    path (the same text as `member(cache_name, CacheOutcome(HIT, ttl=ttl))`)."""
    if not math.isfinite(ttl):
        return f"{_name(cache_name)}; hit"
    return f"{_name(cache_name)}; hit; ttl={_seconds(ttl)}"


@functools.lru_cache(maxsize=8)
def _name(cache_name: str) -> str:
    return serialize_token_or_string(cache_name)


def _seconds(ttl: float) -> int:
    # Whole seconds (sf-integer), rounded down so 0.4 s of staleness reads as stale.
    return max(-_SF_INTEGER_MAX, min(math.floor(ttl), _SF_INTEGER_MAX))
