"""Variants (RFC 9111 §4.1): which stored response a request may get when the origin said Vary.

Rule: a variant is named by the values of the request fields the response's Vary lists,
normalised (names lower-cased, lines joined, whitespace collapsed); an absent field is distinct
from an empty one. Its cache key is the URL key, a separator that no normalised URL contains,
and that name, so purging the URL (exact or prefix) covers every variant.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from proxy.policy.headers import Headers, get_all

SEP = "\x1f"  # between the URL key and the variant (control characters never reach a key)
_FIELD_SEP = "\x1e"
_OWS = re.compile(r"[ \t]+")


def variant(names: Iterable[str], request: Headers) -> str:
    parts = []
    for name in sorted(names):
        values = get_all(request, name)
        if not values:
            parts.append(f"{name}!")
        else:
            # RFC 9111 §4.1 allows normalising: list members trimmed, inner whitespace folded;
            # only the whitespace HTTP has (SP, HTAB: RFC 9110 §5.6.3), never Unicode spaces an
            # origin would see as part of the value.
            members = [" ".join(_OWS.split(m)).strip(" ") for v in values for m in v.split(",")]
            parts.append(f"{name}={','.join(m for m in members if m)}")
    return _FIELD_SEP.join(parts)


def base_key(key: str) -> str:
    """The URL part of a (possibly variant) cache key."""
    return key.split(SEP, 1)[0]


def names_of(variant_name: str) -> tuple[str, ...]:
    """The Vary names a variant was computed with (for a refresh to keep it)."""
    if not variant_name:
        return ()
    return tuple(part.split("=", 1)[0].rstrip("!") for part in variant_name.split(_FIELD_SEP))
