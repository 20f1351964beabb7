"""Freshness lifetime and age of a stored response (RFC 9111 §4.2), as a shared cache.

Rule: `now`, request and response times are parameters; nothing here reads a clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from proxy.policy.headers import (
    Headers,
    get,
    parse_age,
    parse_http_date,
    response_cache_control,
)

# RFC 9110 §15.1: status codes heuristically cacheable (206 is excluded: we store full bodies).
HEURISTIC_STATUSES = frozenset({200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501})


@dataclass(frozen=True, slots=True)
class Heuristic:
    fraction: float = 0.1  # RFC 9111 §4.2.2: "10% of the interval since Last-Modified"
    max_seconds: float = 86400.0


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """What the store keeps about a response besides its body: the policy's whole input."""

    status: int
    headers: tuple[tuple[str, str], ...]
    request_time: float  # when we sent the request that produced it
    response_time: float  # when its headers arrived
    body_size: int
    invalidated: bool = False  # soft-purged: must be revalidated before reuse


def date_value(headers: Headers, response_time: float) -> float:
    date = parse_http_date(get(headers, "date"))
    return response_time if date is None else date


def explicit_lifetime(headers: Headers, response_time: float) -> float | None:
    """s-maxage > max-age > Expires (RFC 9111 §4.2.1); None without explicit freshness."""
    cc = response_cache_control(headers)
    s_maxage = cc.seconds("s-maxage")
    if s_maxage is not None:
        return float(s_maxage)
    max_age = cc.seconds("max-age")
    if max_age is not None:
        return float(max_age)
    if get(headers, "cdn-cache-control") is not None:
        return None  # RFC 9213: the targeted field replaces Cache-Control and Expires
    expires_header = get(headers, "expires")
    if expires_header is not None:
        expires = parse_http_date(expires_header)
        if expires is None:
            return 0.0  # RFC 9111 §5.3: an invalid Expires means "already expired"
        return max(0.0, expires - date_value(headers, response_time))
    return None


def lifetime(
    status: int, headers: Headers, response_time: float, heuristic: Heuristic = Heuristic()
) -> float:
    explicit = explicit_lifetime(headers, response_time)
    if explicit is not None:
        return explicit
    cc = response_cache_control(headers)
    if status not in HEURISTIC_STATUSES and not cc.public:
        return 0.0
    last_modified = parse_http_date(get(headers, "last-modified"))
    if last_modified is None:
        return 0.0
    interval = date_value(headers, response_time) - last_modified
    return max(0.0, min(interval * heuristic.fraction, heuristic.max_seconds))


def current_age(stored: StoredResponse, now: float) -> float:
    """RFC 9111 §4.2.3."""
    age_value = parse_age(get(stored.headers, "age")) or 0
    date = date_value(stored.headers, stored.response_time)
    apparent_age = max(0.0, stored.response_time - date)
    response_delay = max(0.0, stored.response_time - stored.request_time)
    corrected_age_value = age_value + response_delay
    corrected_initial_age = max(apparent_age, corrected_age_value)
    resident_time = max(0.0, now - stored.response_time)
    return corrected_initial_age + resident_time


def has_validator(headers: Headers) -> bool:
    return get(headers, "etag") is not None or get(headers, "last-modified") is not None
