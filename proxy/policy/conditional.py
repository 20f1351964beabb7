"""Preconditions against the stored representation's validators (RFC 9110 §13).

Rule: evaluated in the order of RFC 9110 §13.2.2, only against what the origin sent us
(stored ETag and Last-Modified); the proxy never invents validators of its own.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from proxy.policy.headers import (
    ANY,
    ETag,
    Headers,
    get,
    parse_etag,
    parse_etag_list,
    parse_http_date,
    strong_match,
    weak_match,
)


class Precondition(enum.Enum):
    PROCEED = "proceed"
    NOT_MODIFIED = "not_modified"  # 304
    FAILED = "failed"  # 412


@dataclass(frozen=True, slots=True)
class Validators:
    etag: ETag | None
    last_modified: float | None
    date: float | None = None  # the stored Date: If-Modified-Since's fallback, nothing else

    @classmethod
    def from_headers(cls, headers: Headers) -> Validators:
        return cls(parse_etag(get(headers, "etag")), parse_http_date(get(headers, "last-modified")),
                   parse_http_date(get(headers, "date")))


def evaluate(method: str, request: Headers, stored: Validators) -> Precondition:
    safe = method in ("GET", "HEAD")
    if_match = parse_etag_list(get(request, "if-match"))
    if if_match is not None:
        # RFC 9110 §13.1.1: strong comparison; "*" matches any current representation.
        if if_match != ANY and not (
            stored.etag is not None
            and isinstance(if_match, list)
            and any(strong_match(tag, stored.etag) for tag in if_match)
        ):
            return Precondition.FAILED
    else:
        since = parse_http_date(get(request, "if-unmodified-since"))
        # RFC 9110 §13.1.4: ignored when invalid or when we have no Last-Modified.
        if since is not None and stored.last_modified is not None and stored.last_modified > since:
            return Precondition.FAILED

    if_none_match = parse_etag_list(get(request, "if-none-match"))
    if if_none_match is not None:
        # RFC 9110 §13.1.2: weak comparison.
        matched = if_none_match == ANY or (
            stored.etag is not None
            and isinstance(if_none_match, list)
            and any(weak_match(tag, stored.etag) for tag in if_none_match)
        )
        if matched:
            return Precondition.NOT_MODIFIED if safe else Precondition.FAILED
        return Precondition.PROCEED
    if safe:
        since = parse_http_date(get(request, "if-modified-since"))
        # RFC 9110 §13.1.3: only with a valid date. RFC 9111 §4.3.2: a cache compares it with
        # the stored Last-Modified, or, when there is none, the stored Date. (If-Unmodified-
        # Since and If-Range keep to Last-Modified: a Date is no validator of the content.)
        modified = stored.last_modified if stored.last_modified is not None else stored.date
        if since is not None and modified is not None and modified <= since:
            return Precondition.NOT_MODIFIED
    return Precondition.PROCEED
