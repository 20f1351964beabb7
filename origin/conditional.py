"""Preconditions of a request against one stored revision (RFC 9110 §13), as pure functions.

Rule: no I/O and no clock. The caller passes the request headers and the revision's validators
and turns the returned outcome into a status; HTTP dates have one-second precision throughout.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC
from enum import Enum

# entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE (RFC 9110 §8.8.3); etagc excludes DQUOTE and space.
_ENTITY_TAG = re.compile(r'(W/)?("[\x21\x23-\x7e\x80-\xff]*")')


class Outcome(Enum):
    PROCEED = "proceed"
    NOT_MODIFIED = "not_modified"  # 304
    PRECONDITION_FAILED = "precondition_failed"  # 412


@dataclass(frozen=True, slots=True)
class EntityTag:
    weak: bool
    opaque: str  # with its quotes

    @classmethod
    def parse(cls, value: str) -> EntityTag | None:
        match = _ENTITY_TAG.fullmatch(value.strip())
        if match is None:
            return None
        return cls(weak=match.group(1) is not None, opaque=match.group(2))

    def strong_equals(self, other: EntityTag) -> bool:
        # RFC 9110 §8.8.3.2: both strong and identical.
        return not self.weak and not other.weak and self.opaque == other.opaque

    def weak_equals(self, other: EntityTag) -> bool:
        return self.opaque == other.opaque


def format_http_date(unix_seconds: int) -> str:
    """IMF-fixdate (RFC 9110 §5.6.7)."""
    return email.utils.formatdate(unix_seconds, usegmt=True)


def parse_http_date(value: str) -> int | None:
    """Unix seconds of an HTTP-date in any of its three forms; None when invalid."""
    try:
        parsed = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        # RFC 850 and asctime dates carry no zone; HTTP dates are always GMT.
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp())


def _list_matches(header: str, etag: EntityTag, *, strong: bool) -> bool:
    if header.strip() == "*":
        # A stored revision always exists when this is evaluated.
        return True
    for match in _ENTITY_TAG.finditer(header):
        candidate = EntityTag(weak=match.group(1) is not None, opaque=match.group(2))
        if candidate.strong_equals(etag) if strong else candidate.weak_equals(etag):
            return True
    return False


def evaluate(method: str, headers: Mapping[str, str], *, etag: str, last_modified: int) -> Outcome:
    """Apply If-Match, If-Unmodified-Since, If-None-Match, If-Modified-Since in RFC order."""
    current = EntityTag.parse(etag)
    if current is None:
        raise ValueError(f"not an entity-tag: {etag!r}")
    safe = method in ("GET", "HEAD")

    # RFC 9110 §13.2.2 step 1, §13.1.1: If-Match uses the strong comparison.
    if_match = headers.get("If-Match")
    if if_match is not None:
        if not _list_matches(if_match, current, strong=True):
            return Outcome.PRECONDITION_FAILED
    else:
        # Step 2, §13.1.4: only without If-Match; an invalid date is ignored.
        since = _date_header(headers, "If-Unmodified-Since")
        if since is not None and last_modified > since:
            return Outcome.PRECONDITION_FAILED

    # Step 3, §13.1.2: If-None-Match uses the weak comparison.
    if_none_match = headers.get("If-None-Match")
    if if_none_match is not None:
        if _list_matches(if_none_match, current, strong=False):
            return Outcome.NOT_MODIFIED if safe else Outcome.PRECONDITION_FAILED
    elif safe:
        # Step 4, §13.1.3: only without If-None-Match, only for GET and HEAD.
        since = _date_header(headers, "If-Modified-Since")
        if since is not None and last_modified <= since:
            return Outcome.NOT_MODIFIED
    return Outcome.PROCEED


def _date_header(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    return None if value is None else parse_http_date(value)
