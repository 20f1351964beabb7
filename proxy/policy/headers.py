"""Header parsing shared by the policy modules: Cache-Control, HTTP dates, entity tags, hop-by-hop.

Rule: parsers never raise on bad input. A malformed value parses to "absent" (or to the
conservative reading the RFC asks for) so that hostile headers become ordinary decisions.
"""

from __future__ import annotations

import datetime
import email.utils
from collections.abc import Collection, Iterable
from dataclasses import dataclass

Headers = Collection[tuple[str, str]]
"""Ordered header fields as (name, value) pairs, names in any case."""

# RFC 9110 §7.6.1: connection-specific fields a proxy must not forward. Proxy-Authenticate and
# Proxy-Authorization are addressed to this hop as well (RFC 9110 §11.7).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authenticate",
        "proxy-authorization",
    }
)

MAX_DELTA_SECONDS = 2**31  # RFC 9111 §1.2.2: cap delta-seconds instead of overflowing


def get(headers: Headers, name: str) -> str | None:
    """The first value of `name`, or None."""
    lname = name.lower()
    for key, value in headers:
        if key.lower() == lname:
            return value
    return None


def get_all(headers: Headers, name: str) -> list[str]:
    lname = name.lower()
    return [value for key, value in headers if key.lower() == lname]


def get_joined(headers: Headers, name: str) -> str | None:
    """All values of a list-valued field joined by commas (RFC 9110 §5.3), or None."""
    values = get_all(headers, name)
    return ", ".join(values) if values else None


def split_list(value: str) -> list[str]:
    """Split a comma-separated list field, honouring quoted strings (RFC 9110 §5.6.1)."""
    items: list[str] = []
    current: list[str] = []
    quoted = False
    escaped = False
    for ch in value:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\" and quoted:
            current.append(ch)
            escaped = True
        elif ch == '"':
            current.append(ch)
            quoted = not quoted
        elif ch == "," and not quoted:
            items.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    items.append("".join(current).strip())
    return [item for item in items if item]


def end_to_end(headers: Headers) -> list[tuple[str, str]]:
    """Drop hop-by-hop fields, including those the Connection field names (RFC 9110 §7.6.1)."""
    named = {
        token.strip().lower()
        for value in get_all(headers, "connection")
        for token in value.split(",")
        if token.strip()
    }
    drop = HOP_BY_HOP | named
    return [(k, v) for k, v in headers if k.lower() not in drop]


def parse_delta_seconds(value: str | None) -> int | None:
    """RFC 9111 §1.2.2 delta-seconds; None when absent or not a non-negative integer."""
    if value is None:
        return None
    value = value.strip()
    if value.startswith('"') and value.endswith('"') and len(value) >= 2:
        value = value[1:-1]  # tolerate max-age="60" as most caches do
    if not value.isdigit() or not value.isascii():
        return None
    return min(int(value), MAX_DELTA_SECONDS)


@dataclass(frozen=True, slots=True)
class CacheControl:
    """Parsed Cache-Control directives: lower-cased name -> argument (None when bare).

    Unknown directives are kept but never consulted (RFC 9111 §5.2.3: ignore them).
    """

    directives: tuple[tuple[str, str | None], ...] = ()

    def has(self, name: str) -> bool:
        return any(k == name for k, _ in self.directives)

    def arg(self, name: str) -> str | None:
        for key, value in self.directives:
            if key == name:
                return value
        return None

    def seconds(self, name: str) -> int | None:
        """A delta-seconds directive; None when absent. A malformed argument reads as 0,
        the conservative choice for lifetimes (RFC 9111 §4.2.1: treat invalid as stale)."""
        if not self.has(name):
            return None
        parsed = parse_delta_seconds(self.arg(name))
        return 0 if parsed is None else parsed

    @property
    def no_store(self) -> bool:
        return self.has("no-store")

    @property
    def no_cache(self) -> bool:
        return self.has("no-cache")

    @property
    def private(self) -> bool:
        return self.has("private")

    @property
    def public(self) -> bool:
        return self.has("public")

    @property
    def must_revalidate(self) -> bool:
        return self.has("must-revalidate")

    @property
    def proxy_revalidate(self) -> bool:
        return self.has("proxy-revalidate")


def parse_cache_control(values: Iterable[str]) -> CacheControl:
    directives: list[tuple[str, str | None]] = []
    for value in values:
        for item in split_list(value):
            name, sep, arg = item.partition("=")
            name = name.strip().lower()
            if not name:
                continue
            argument: str | None = arg.strip() if sep else None
            if argument is not None and len(argument) >= 2 and argument[0] == argument[-1] == '"':
                argument = argument[1:-1]
            directives.append((name, argument))
    return CacheControl(tuple(directives))


def cache_control(headers: Headers) -> CacheControl:
    return parse_cache_control(get_all(headers, "cache-control"))


def parse_http_date(value: str | None) -> float | None:
    """An HTTP-date (IMF-fixdate, RFC 850 or asctime; RFC 9110 §5.6.7) as a POSIX timestamp."""
    if not value or len(value) > 64:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed.tzinfo is None:
        # RFC 850 and asctime forms carry no zone; HTTP dates are always GMT.
        parsed = parsed.replace(tzinfo=datetime.UTC)
    try:
        return parsed.timestamp()
    except (OverflowError, OSError, ValueError):
        return None


def format_http_date(timestamp: float) -> str:
    """IMF-fixdate (RFC 9110 §5.6.7)."""
    return email.utils.formatdate(timestamp, usegmt=True)


@dataclass(frozen=True, slots=True)
class ETag:
    opaque: str  # including the quotes
    weak: bool


def parse_etag(value: str | None) -> ETag | None:
    if value is None:
        return None
    value = value.strip()
    weak = value.startswith("W/")
    if weak:
        value = value[2:]
    if len(value) < 2 or value[0] != '"' or value[-1] != '"' or '"' in value[1:-1]:
        return None
    return ETag(value, weak)


ANY = "*"


def parse_etag_list(value: str | None) -> list[ETag] | str | None:
    """If-Match / If-None-Match: `*`, a list of entity tags, or None when absent or unparseable."""
    if value is None:
        return None
    if value.strip() == "*":
        return ANY
    tags = [tag for tag in (parse_etag(item) for item in split_list(value)) if tag is not None]
    return tags


def strong_match(a: ETag, b: ETag) -> bool:
    """RFC 9110 §8.8.3.2 strong comparison."""
    return not a.weak and not b.weak and a.opaque == b.opaque


def weak_match(a: ETag, b: ETag) -> bool:
    """RFC 9110 §8.8.3.2 weak comparison."""
    return a.opaque == b.opaque
