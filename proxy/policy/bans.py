"""Which bans (purges not yet swept) hide a stored entry.

Rule: a ban matches an entry when its key or tags match and the entry's response predates the
ban; entries fetched after a ban are never affected. Matching costs one dict probe per distinct
prefix length, so a thousand active bans stay cheap on every lookup.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field

from proxy.policy import groups


class BanKind(enum.Enum):
    PREFIX = "prefix"  # every key starting with value ("" = everything)
    EXACT = "exact"  # one key
    TAG = "tag"  # every entry carrying this surrogate key


@dataclass(frozen=True, slots=True)
class Ban:
    id: int
    kind: BanKind
    value: str
    created: float
    soft: bool  # soft: the entry is stale (revalidate), not gone


@dataclass(slots=True)
class BanIndex:
    by_length: dict[int, dict[str, list[Ban]]] = field(default_factory=dict)
    exact: dict[str, list[Ban]] = field(default_factory=dict)
    tags: dict[str, list[Ban]] = field(default_factory=dict)
    all: list[Ban] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.all)

    @classmethod
    def build(cls, bans: Iterable[Ban]) -> BanIndex:
        index = cls()
        for ban in bans:
            index.all.append(ban)
            if ban.kind is BanKind.PREFIX:
                index.by_length.setdefault(len(ban.value), {}).setdefault(ban.value, []).append(
                    ban)
            elif ban.kind is BanKind.EXACT:
                index.exact.setdefault(ban.value, []).append(ban)
            else:
                index.tags.setdefault(ban.value, []).append(ban)
        return index

    def match(self, key: str, tags: Iterable[str], response_time: float) -> Ban | None:
        """The ban that applies (a hard one before a soft one), or None."""
        if not self.size:
            return None
        found: Ban | None = None
        candidates: list[list[Ban]] = []
        for length, prefixes in self.by_length.items():
            if length <= len(key):
                hit = prefixes.get(key[:length])
                if hit:
                    candidates.append(hit)
        url_key = key.split("\x1f", 1)[0]  # an exact purge covers every Vary variant
        if url_key in self.exact:
            candidates.append(self.exact[url_key])
        for tag in tags:
            if tag in self.tags:
                candidates.append(self.tags[tag])
        for group in candidates:
            for ban in group:
                if response_time <= ban.created:
                    if not ban.soft:
                        return ban
                    found = ban
        return found


def parse_tags(values: Iterable[str]) -> tuple[str, ...]:
    """Surrogate-Key / Cache-Tag fields: space- (or comma-) separated keys, de-duplicated."""
    seen: dict[str, None] = {}
    for value in values:
        for tag in value.replace(",", " ").split():
            if len(tag) <= 256:
                seen.setdefault(tag, None)
    return tuple(seen)


TAG_HEADERS = ("surrogate-key", "cache-tag")


def response_tags(headers: Iterable[tuple[str, str]]) -> tuple[str, ...]:
    """The purge tags an origin attached: Surrogate-Key / Cache-Tag, then its Cache-Groups
    (RFC 9875) as `groups.tag` values, which no Surrogate-Key tag can equal."""
    fields = list(headers)
    tags = parse_tags(v for k, v in fields if k.lower() in TAG_HEADERS)
    return tags + groups.group_tags(fields)
