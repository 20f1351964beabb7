"""Header parsing shared by the policy modules: Cache-Control, HTTP dates, entity tags, hop-by-hop.

Rule: parsers never raise on bad input. A malformed value parses to "absent" (or to the
conservative reading the RFC asks for) so that hostile headers become ordinary decisions.
"""

from __future__ import annotations

import datetime
import email.utils
import re
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


def end_to_end(headers: Headers, keep: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
    """Drop hop-by-hop fields, including those the Connection field names (RFC 9110 §7.6.1),
    except the lower-case names in `keep` (fields a `Connection` must not be able to hide,
    such as the origin's access policy)."""
    named = {
        token.strip().lower()
        for value in get_all(headers, "connection")
        for token in value.split(",")
        if token.strip()
    }
    drop = HOP_BY_HOP | (named - keep)
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


def response_cache_control(headers: Headers) -> CacheControl:
    """The directives this cache obeys for a response: `CDN-Cache-Control` when present
    (RFC 9213: a targeted field overrides Cache-Control for the caches it targets; we are
    one), else `Cache-Control`."""
    targeted = get_all(headers, "cdn-cache-control")
    joined = ", ".join(targeted)
    if targeted and _valid_sf_directives(joined):
        # Structured Field parameters (";x=y") carry nothing for us: drop them.
        members = [member.split(";", 1)[0] for member in joined.split(",")]
        return parse_cache_control([", ".join(members)])
    # Absent or not a valid Structured Field dictionary: ignored (RFC 9213 §2.1).
    return parse_cache_control(get_all(headers, "cache-control"))


_SF_KEY = re.compile(r"[a-z*][a-z0-9_\-.*]*")
_SF_ITEM = re.compile(
    r"-?\d{1,15}"  # integer
    r"|-?\d{1,12}\.\d{1,3}"  # decimal
    r'|"(?:[^"\\]|\\["\\])*"'  # string
    r"|[A-Za-z*][!#$%&'*+\-.^_`|~:/A-Za-z0-9]*"  # token
    r"|\?[01]"  # boolean
    r"|:[A-Za-z0-9+/=]*:"  # byte sequence
)
_SF_INTEGER_DIRECTIVES = frozenset({"max-age", "s-maxage", "stale-while-revalidate",
                                    "stale-if-error"})


def _valid_sf_directives(value: str) -> bool:
    """A Structured Field dictionary (RFC 8941 §3.2) whose lifetimes are integers and whose
    flags are bare (true) booleans, as RFC 9213 defines CDN-Cache-Control."""
    for member in value.split(","):
        member = member.strip().split(";", 1)[0].strip()  # parameters are allowed, ignored
        if not member:
            return False
        key, sep, item = member.partition("=")
        if not _SF_KEY.fullmatch(key):
            return False
        if not sep:
            continue  # a bare key is boolean true
        if not _SF_ITEM.fullmatch(item):
            return False
        if key in _SF_INTEGER_DIRECTIVES and not re.fullmatch(r"\d{1,15}", item):
            return False
        if key in ("no-store", "no-cache", "private", "public") and item != "?1":
            return False
    return True


def parse_age(value: str | None) -> int | None:
    """Age (RFC 9111 §5.1); with several values (a list or repeated lines), the first."""
    if value is None:
        return None
    return parse_delta_seconds(value.split(",", 1)[0])


_MONTHS = {m: i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_LONG_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
# Names are matched case-insensitively (a common origin bug that changes no meaning); the
# layout, zone and digit counts are not.
_IMF = re.compile(r"([A-Za-z]{3}), (\d{2}) ([A-Za-z]{3}) (\d{4}) (\d{2}):(\d{2}):(\d{2}) GMT",
                  re.IGNORECASE)
_RFC850 = re.compile(
    r"([A-Za-z]+), (\d{2})-([A-Za-z]{3})-(\d{2}) (\d{2}):(\d{2}):(\d{2}) GMT", re.IGNORECASE)
_ASCTIME = re.compile(r"([A-Za-z]{3}) ([A-Za-z]{3}) ([ \d]\d) (\d{2}):(\d{2}):(\d{2}) (\d{4})")


def parse_http_date(value: str | None) -> float | None:
    """An HTTP-date as a POSIX timestamp, or None. Only the three forms of RFC 9110 §5.6.7,
    exactly: a lenient parser would read "Thu, 18 Aug 2050 02:01:18 UTC" or a two-digit hour
    as a valid date where the RFC says the field is invalid (for Expires: already expired)."""
    if not value or len(value) > 40:
        return None
    value = value.strip()
    if m := _IMF.fullmatch(value):
        day, mday, month, year, hh, mm, ss = m.groups()
        if day.title() not in _DAYS:
            return None
    elif m := _RFC850.fullmatch(value):
        day, mday, month, yy, hh, mm, ss = m.groups()
        if day.title() not in _LONG_DAYS:
            return None
        year = str(2000 + int(yy) if int(yy) < 70 else 1900 + int(yy))  # RFC 9110 §5.6.7
    elif m := _ASCTIME.fullmatch(value):
        day, month, mday, hh, mm, ss, year = m.groups()
        if day.title() not in _DAYS:
            return None
    else:
        return None
    month = month.title()
    if month not in _MONTHS:
        return None
    try:
        moment = datetime.datetime(int(year), _MONTHS[month], int(mday.strip()), int(hh),
                                   int(mm), int(ss), tzinfo=datetime.UTC)
        return moment.timestamp()
    except (ValueError, OverflowError):
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
