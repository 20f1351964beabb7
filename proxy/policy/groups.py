"""HTTP Cache Groups (RFC 9875): `Cache-Groups` on a response names the groups it belongs to;
`Cache-Group-Invalidation` on the response to an unsafe request invalidates groups.

Rule: both fields are Lists of Strings (RFC 9651); a field that is not one is ignored whole
(§2, §3). Groups are compared character by character and are scoped by origin (§2.1); this
proxy fronts one origin, so every stored response shares it and a group is its string. A
group becomes a purge tag (`tag`) beside the Surrogate-Key / Cache-Tag ones, with a prefix
that contains a space: `bans.parse_tags` splits on whitespace, so no Surrogate-Key tag can
ever equal a group's tag, and a group string (printable ASCII, spaces allowed) never needs
escaping. Cache-Group-Invalidation is honoured only on responses to unsafe methods (§3: it
"MUST be ignored" on a response to a safe one), and, as the URL invalidation of RFC 9111
§4.4 it stands beside, only on a non-error (2xx, 3xx) response.
"""

from __future__ import annotations

from collections.abc import Iterable

from proxy.policy.headers import Headers, get_all
from proxy.policy.sfv import string_list

GROUPS_FIELD = "cache-groups"
INVALIDATION_FIELD = "cache-group-invalidation"

# RFC 9875 asks for at least 32 groups of at least 32 characters; we keep four times that.
# A field this long (128 x ~130 bytes) is over aiohttp's client default line limit of 8190:
# the origin client must be given a larger max_field_size to accept it on one line.
MAX_GROUPS = 128
MAX_GROUP_CHARS = 128

TAG_PREFIX = "group "  # never a Surrogate-Key tag: those are split on whitespace

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})  # RFC 9110 §9.2.1


def _bounded(values: Iterable[str]) -> tuple[str, ...]:
    """De-duplicated, in order, the first MAX_GROUPS of at most MAX_GROUP_CHARS characters
    (a longer one is skipped, never cut: a cut name would be another group)."""
    seen: dict[str, None] = {}
    for value in values:
        if len(seen) == MAX_GROUPS:
            break
        if len(value) <= MAX_GROUP_CHARS:
            seen.setdefault(value, None)
    return tuple(seen)


def parse_groups(lines: Iterable[str]) -> tuple[str, ...]:
    """The groups of a `Cache-Groups` (or `Cache-Group-Invalidation`) field, from its lines;
    () when the field is absent or not a List of Strings."""
    lines = list(lines)
    if not lines:
        return ()
    values = string_list(lines)
    return () if values is None else _bounded(values)


def response_groups(headers: Headers) -> tuple[str, ...]:
    """The groups a response belongs to (its `Cache-Groups`)."""
    return parse_groups(get_all(headers, GROUPS_FIELD))


def invalidated_groups(method: str, status: int, headers: Headers) -> tuple[str, ...]:
    """The groups the response to `method` invalidates: its `Cache-Group-Invalidation`, only
    for an unsafe method and a 2xx/3xx answer; () otherwise."""
    if method.upper() in SAFE_METHODS or not 200 <= status < 400:
        return ()
    return parse_groups(get_all(headers, INVALIDATION_FIELD))


def tag(group: str) -> str:
    """The purge tag of a group (what `bans.BanKind.TAG` matches)."""
    return TAG_PREFIX + group


def group_tags(headers: Headers) -> tuple[str, ...]:
    """The purge tags of a response's groups, to store beside its Surrogate-Key tags."""
    return tuple(tag(group) for group in response_groups(headers))


def invalidation_tags(method: str, status: int, headers: Headers) -> tuple[str, ...]:
    """The purge tags to ban after the response to an unsafe request."""
    return tuple(tag(group) for group in invalidated_groups(method, status, headers))
