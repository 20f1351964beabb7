"""Which requests need a valid token: config rules by path prefix, then the origin's per-item
access policy header (stored with the object, so hits are checked without an origin trip).

Rule: the longest matching configured prefix decides; without one, the object's stored access
header does (`protected` -> token required, anything else -> public). Unknown means public only
for objects whose origin says nothing: a protected object is never served on an assumption.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from proxy.policy.headers import Headers, get


class Access(enum.Enum):
    PUBLIC = "public"
    PROTECTED = "protected"


@dataclass(frozen=True, slots=True)
class AccessRules:
    prefixes: tuple[tuple[str, Access], ...] = ()  # longest first
    header: str = "X-Media-Access"

    @classmethod
    def build(cls, protected: Iterable[str], public: Iterable[str],
              header: str = "X-Media-Access") -> AccessRules:
        rules = [(p, Access.PROTECTED) for p in protected] + [(p, Access.PUBLIC) for p in public]
        rules.sort(key=lambda rule: len(rule[0]), reverse=True)
        return cls(tuple(rules), header)

    def by_rule(self, path: str) -> Access | None:
        for prefix, access in self.prefixes:
            if path.startswith(prefix):
                return access
        return None

    def for_object(self, path: str, headers: Headers) -> Access:
        ruled = self.by_rule(path)
        if ruled is not None:
            return ruled
        value = get(headers, self.header)
        if value is not None and value.strip().lower() == "protected":
            return Access.PROTECTED
        return Access.PUBLIC
