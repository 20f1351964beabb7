"""A small bounded memo for the hit path: one dict lookup and, with a TTL, one clock read.

Rule: only for values that are cheap to recompute and safe to see slightly late (a memo is an
optimisation, never the source of truth). `cachetools.TTLCache` costs several times more per
read, which shows on the small-hit path; elsewhere use cachetools.
"""

from __future__ import annotations

import time
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Memo(Generic[K, V]):
    def __init__(self, maxsize: int, ttl_seconds: float | None = None) -> None:
        self.maxsize = maxsize
        self.ttl = ttl_seconds
        self._data: dict[K, tuple[float, V]] = {}

    def get(self, key: K) -> tuple[bool, V | None]:
        """(found, value): values may be None, so presence is reported separately."""
        item = self._data.get(key)
        if item is None:
            return False, None
        if self.ttl is not None and item[0] < time.monotonic():
            del self._data[key]
            return False, None
        return True, item[1]

    def put(self, key: K, value: V) -> None:
        data = self._data
        if key not in data and len(data) >= self.maxsize:
            del data[next(iter(data))]  # the oldest insertion
        expires = time.monotonic() + self.ttl if self.ttl is not None else 0.0
        data[key] = (expires, value)

    def pop(self, key: K) -> None:
        self._data.pop(key, None)

    def __len__(self) -> int:
        return len(self._data)
