"""Which requests need a valid token: config rules by path prefix, then the origin's per-item
access policy header (stored with the object, so hits are checked without an origin trip).

Rule: the longest matching configured prefix decides; without one, the object's stored access
header does. It fails closed: only fields that all say `public` make an object public; any
`protected`, a list, an empty or unknown value, in any of several fields, means protected. An
object whose origin sends no such field is public. A configured protected prefix also covers
the spellings some origins fold into it (path parameters `;x`, letter case), so a rule can
never be stepped around by a spelling the cache key keeps apart.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from proxy.policy.headers import Headers, get_all


class Access(enum.Enum):
    PUBLIC = "public"
    PROTECTED = "protected"


@dataclass(frozen=True, slots=True)
class AccessRules:
    prefixes: tuple[tuple[str, Access], ...] = ()  # longest first
    header: str = "X-Media-Access"
    folded: tuple[tuple[str, Access], ...] = ()  # the prefixes as `_fold` spells them

    @classmethod
    def build(cls, protected: Iterable[str], public: Iterable[str],
              header: str = "X-Media-Access") -> AccessRules:
        rules = [(p, Access.PROTECTED) for p in protected] + [(p, Access.PUBLIC) for p in public]
        rules.sort(key=lambda rule: len(rule[0]), reverse=True)
        return cls(tuple(rules), header, tuple((_fold(p), a) for p, a in rules))

    def by_rule(self, path: str) -> Access | None:
        ruled = _longest(self.prefixes, path)
        if ruled is Access.PROTECTED or not self.prefixes:
            return ruled
        # Origins that strip `;params` (servlet containers) or ignore case (Windows, some
        # object stores) serve `/Vault;x/doc.pdf` as `/vault/doc.pdf`: the rules are also
        # read on that folded spelling, and protected wins if either reading says so.
        if _longest(self.folded, _fold(path)) is Access.PROTECTED:
            return Access.PROTECTED
        return ruled

    def for_object(self, path: str, headers: Headers) -> Access:
        ruled = self.by_rule(path)
        if ruled is not None:
            return ruled
        values = get_all(headers, self.header)
        if not values:
            return Access.PUBLIC
        if all(value.strip().lower() == "public" for value in values):
            return Access.PUBLIC
        return Access.PROTECTED  # protected, a list, empty or not understood: fail closed


def _longest(prefixes: tuple[tuple[str, Access], ...], path: str) -> Access | None:
    best: tuple[int, Access] | None = None
    for prefix, access in prefixes:
        if path.startswith(prefix) and (best is None or len(prefix) > best[0]):
            best = (len(prefix), access)
    return None if best is None else best[1]


def _fold(path: str) -> str:
    return "/".join(segment.split(";", 1)[0] for segment in path.split("/")).lower()
