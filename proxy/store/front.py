"""The per-process memory tier: small bodies and their parsed policy facts, for a short time.

Rule: an entry is a copy of a committed disk entry (same bytes, same metadata), dropped on its
first use after its key's change signal moved (a replacement, refresh or delete in any
process: keysignal.py), and kept for at most `ttl_seconds` (which only bounds a signal lost to
a crash); this process also drops its own copy at once when it replaces, refreshes or deletes
the key. Bans are checked on every use, so purges are immediate regardless. Bounded by total
body bytes, least recently used out first.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cachetools import TTLCache

from proxy.policy.decide import Facts
from proxy.policy.freshness import StoredResponse
from proxy.store.keysignal import KeySignal

ENTRY_OVERHEAD_BYTES = 1024  # headers, facts, bookkeeping: counted against the budget too


@dataclass(frozen=True, slots=True)
class FrontEntry:
    key: str
    filename: str
    rowid: int
    meta: StoredResponse
    facts: Facts
    body: bytes
    hit_headers: tuple[tuple[str, str], ...]  # a plain 200 HIT's headers, without Age
    wire_head: bytes | None = None  # the same, serialised with Content-Length, minus Age
    loaded_at: float = 0.0  # when it was copied from disk (wall clock)
    loaded_mono: float = 0.0  # the same, on time.monotonic (the tier's own clock)
    slot: int = 0  # the key's change signal, and its value before the copy was read
    signal: int = 0


def _size(entry: FrontEntry) -> int:
    return len(entry.body) + ENTRY_OVERHEAD_BYTES


class _Entries(TTLCache[str, FrontEntry]):
    """The tier's entries, telling `gone` of each key evicted for room or expired (so
    nothing else keeps serving, or holding, a copy the tier no longer has)."""

    def __init__(self, maxsize: int, ttl: float, gone: Callable[[str], None]) -> None:
        super().__init__(maxsize=maxsize, ttl=ttl, getsizeof=_size)
        self._gone = gone

    def popitem(self) -> tuple[str, FrontEntry]:
        key, entry = super().popitem()
        self._gone(key)
        return key, entry

    def expire(self, time: float | None = None) -> list[tuple[str, FrontEntry]]:
        expired = list(super().expire(time))
        for key, _ in expired:
            self._gone(key)
        return expired


class FrontCache:
    def __init__(self, max_bytes: int, max_body_bytes: int, ttl_seconds: float,
                 signals: KeySignal | None = None) -> None:
        self.max_body_bytes = max_body_bytes
        self.ttl_seconds = ttl_seconds
        # Per-key change signals (the store's): a copy whose key changed since it was read
        # is dropped on its next use, whatever process made the change.
        self.signals = signals
        # Told when a key's copy is dropped, replaced, evicted or expired here (the lane's
        # routes to it die).
        self.on_drop: Callable[[str], None] | None = None
        self._entries = _Entries(max(max_bytes, 1), ttl_seconds, self._gone)

    def get(self, key: str) -> FrontEntry | None:
        entry = self._entries.get(key)
        if entry is not None and self.signals is not None and (
                self.signals.read(entry.slot) != entry.signal):
            self.drop(key)  # replaced, refreshed or deleted since: the disk decides again
            return None
        return entry

    def put(self, entry: FrontEntry) -> None:
        if self.on_drop is not None and entry.key in self._entries:
            self.on_drop(entry.key)
        if _size(entry) <= self._entries.maxsize:
            self._entries[entry.key] = entry

    def _gone(self, key: str) -> None:
        if self.on_drop is not None:
            self.on_drop(key)

    def drop(self, key: str) -> None:
        self._entries.pop(key, None)
        if self.on_drop is not None:
            self.on_drop(key)

    @property
    def bytes(self) -> int:
        return int(self._entries.currsize)
