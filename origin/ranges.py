"""Range and If-Range against one stored revision (RFC 9110 §14), as pure functions.

Rule: only a single byte range is served. Multiple ranges, other units and malformed values are
ignored (a full 200), as §14.2 allows; a valid range that misses the body is Unsatisfiable (416).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from origin.conditional import EntityTag, parse_http_date

# int-range / suffix-range (RFC 9110 §14.1.1); no whitespace inside a range-spec.
_INT_RANGE = re.compile(r"([0-9]{1,19})-([0-9]{0,19})")
_SUFFIX_RANGE = re.compile(r"-([0-9]{1,19})")


@dataclass(frozen=True, slots=True)
class FullBody:
    pass


@dataclass(frozen=True, slots=True)
class Partial:
    start: int
    end: int  # inclusive, as in Content-Range

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self, size_bytes: int) -> str:
        return f"bytes {self.start}-{self.end}/{size_bytes}"


@dataclass(frozen=True, slots=True)
class Unsatisfiable:
    @staticmethod
    def content_range(size_bytes: int) -> str:
        return f"bytes */{size_bytes}"  # RFC 9110 §15.5.17


Selection = FullBody | Partial | Unsatisfiable


def parse_range(value: str, size_bytes: int) -> Selection:
    unit, sep, specs = value.partition("=")
    if not sep or unit.strip().lower() != "bytes":  # range units are case-insensitive (§14.1)
        return FullBody()
    # The list grammar allows empty elements (§5.6.1).
    parts = [part.strip() for part in specs.split(",") if part.strip()]
    if len(parts) != 1:
        return FullBody()
    spec = parts[0]
    if match := _INT_RANGE.fullmatch(spec):
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) else None
        if last is not None and last < first:
            return FullBody()  # invalid range-spec: ignore the header (§14.1.1)
        if first >= size_bytes:
            return Unsatisfiable()
        end = size_bytes - 1 if last is None else min(last, size_bytes - 1)
        return Partial(first, end)
    if match := _SUFFIX_RANGE.fullmatch(spec):
        suffix = int(match.group(1))
        if suffix == 0 or size_bytes == 0:
            return Unsatisfiable()  # §14.1.3: a suffix must select at least one byte
        return Partial(max(0, size_bytes - suffix), size_bytes - 1)
    return FullBody()


def if_range_allows(value: str, *, etag: str, last_modified: int) -> bool:
    """RFC 9110 §13.1.5: strong ETag comparison, or a date exactly equal to Last-Modified."""
    value = value.strip()
    if value.startswith(('"', "W/")):
        candidate = EntityTag.parse(value)
        current = EntityTag.parse(etag)
        return candidate is not None and current is not None and candidate.strong_equals(current)
    date = parse_http_date(value)
    return date is not None and date == last_modified


def select(
    *,
    range_header: str | None,
    if_range: str | None,
    size_bytes: int,
    etag: str,
    last_modified: int,
) -> Selection:
    if range_header is None:
        return FullBody()
    if if_range is not None and not if_range_allows(
        if_range, etag=etag, last_modified=last_modified
    ):
        return FullBody()
    return parse_range(range_header, size_bytes)
