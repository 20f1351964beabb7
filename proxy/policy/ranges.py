"""Range and If-Range against a stored representation of known size (RFC 9110 §14).

Rule: one satisfiable range gives 206; several ranges or a malformed header are ignored and
the full 200 is sent (RFC 9110 §14.2 lets a server ignore Range), which bounds the work a
hostile `bytes=0-,0-,0-...` can cause to one parse of a capped header.
"""

from __future__ import annotations

from dataclasses import dataclass

from proxy.policy.headers import ETag, parse_etag, parse_http_date, strong_match

MAX_RANGE_HEADER = 1024


@dataclass(frozen=True, slots=True)
class Full:
    pass


@dataclass(frozen=True, slots=True)
class Partial:
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end}/{size}"


@dataclass(frozen=True, slots=True)
class Unsatisfiable:
    def content_range(self, size: int) -> str:
        return f"bytes */{size}"


RangeDecision = Full | Partial | Unsatisfiable


def _parse_single(spec: str, size: int) -> Partial | Unsatisfiable | None:
    """One byte-range-spec; None when malformed."""
    first, sep, last = spec.strip().partition("-")
    if not sep:
        return None
    first, last = first.strip(), last.strip()
    if not first:
        if not last.isdigit() or not last.isascii():
            return None
        suffix = int(last)
        if suffix == 0 or size == 0:
            return Unsatisfiable()
        return Partial(max(0, size - suffix), size - 1)  # RFC 9110 §14.1.3 suffix range
    if not first.isdigit() or not first.isascii():
        return None
    start = int(first)
    if last:
        if not last.isdigit() or not last.isascii():
            return None
        end = int(last)
        if end < start:
            return None  # RFC 9110 §14.1.1: invalid, the header is ignored
    else:
        end = size - 1
    if start >= size:
        return Unsatisfiable()
    return Partial(start, min(end, size - 1))


def if_range_allows(if_range: str | None, etag: ETag | None, last_modified: float | None) -> bool:
    """RFC 9110 §13.1.5: the Range applies only if the validator still matches (strongly)."""
    if if_range is None:
        return True
    value = if_range.strip()
    if value.startswith('"') or value.startswith("W/"):
        tag = parse_etag(value)
        return tag is not None and etag is not None and strong_match(tag, etag)
    date = parse_http_date(value)
    return date is not None and last_modified is not None and date == last_modified


def select(
    method: str,
    range_header: str | None,
    if_range: str | None,
    size: int,
    etag: ETag | None,
    last_modified: float | None,
) -> RangeDecision:
    if method != "GET" or range_header is None:
        return Full()  # RFC 9110 §14.2: Range is defined for GET only
    if len(range_header) > MAX_RANGE_HEADER:
        return Full()
    unit, sep, specs = range_header.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return Full()
    parts = specs.split(",")
    if len(parts) != 1:
        return Full()
    decision = _parse_single(parts[0], size)
    if decision is None:
        return Full()
    if not if_range_allows(if_range, etag, last_modified):
        return Full()
    return decision
