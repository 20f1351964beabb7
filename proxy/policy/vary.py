"""Variants (RFC 9111 §4.1): which stored response a request may get when the origin said Vary.

Rule: a variant is named by the values of the request fields the response's Vary lists,
normalised (names lower-cased, lines joined, whitespace collapsed); an absent field is distinct
from an empty one. Accept-Language and Accept-Encoding are further normalised as far as their
meaning allows and no further (`_weighted`): two requests share a variant only if every
origin that follows RFC 9110 §12.4.2 would choose the same for both. Its cache key is the
URL key, a separator that no normalised URL contains, and that name, so purging the URL
(exact or prefix) covers every variant.
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
            members = [m for m in members if m]
            if name in _WEIGHTED:
                members = _weighted(members) or members
            parts.append(f"{name}={','.join(members)}")
    return _FIELD_SEP.join(parts)


# Fields whose members are case-insensitive tokens (language ranges, RFC 4647 §2.1; content
# codings, RFC 9110 §8.4.1) each with at most a weight (RFC 9110 §12.4.2).
_WEIGHTED = frozenset({"accept-language", "accept-encoding"})
_WEIGHT = re.compile(r"[qQ]=(0(\.[0-9]{0,3})?|1(\.0{0,3})?)")
_RANGE = re.compile(r"[A-Za-z0-9*][A-Za-z0-9*\-_.!#$%&'+^`|~]*")


def _weighted(members: list[str]) -> list[str] | None:
    """Members case-folded, weights written one way (`q=1`, `q=1.0` and none are the same;
    `q=0.50` is `q=0.5`), and stably ordered by weight, highest first. Not sorted further:
    among equal weights the order is the client's preference for many origins (Django, Rails
    and RFC 4647 lookup take the first), so `fr, en` and `en, fr` stay two variants. None
    when a member is not a plain token with an optional valid weight: that value keeps the
    generic normalisation only, so nothing unexpected is ever merged."""
    weighted: list[tuple[int, str]] = []
    for member in members:
        token, _, params = member.partition(";")
        token = token.strip(" ")  # never Unicode spaces: they are part of the value
        if not _RANGE.fullmatch(token):
            return None
        thousandths = 1000
        if params:
            weight = _WEIGHT.fullmatch(params.strip(" "))
            if weight is None:
                return None
            thousandths = round(float(weight.group()[2:]) * 1000)
        weighted.append((thousandths, token.lower()))
    weighted.sort(key=lambda pair: -pair[0])  # stable: equal weights keep their order
    return [token if q == 1000 else f"{token};q={q / 1000:g}" for q, token in weighted]


def base_key(key: str) -> str:
    """The URL part of a (possibly variant) cache key."""
    return key.split(SEP, 1)[0]


def names_of(variant_name: str) -> tuple[str, ...]:
    """The Vary names a variant was computed with (for a refresh to keep it)."""
    if not variant_name:
        return ()
    return tuple(part.split("=", 1)[0].rstrip("!") for part in variant_name.split(_FIELD_SEP))
