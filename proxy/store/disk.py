"""diskcache.Disk subclass: adopts a finished body file by rename and keeps metadata in its row.

Rule: a body file enters the cache only through `store(Adopt(...))` (an atomic rename of a
complete temp file on the same filesystem) and leaves only through `remove` (the one place);
names are random per write, so a name is never reused and a reader's file is never rewritten.
"""

from __future__ import annotations

import os
import os.path as op
import sqlite3
from dataclasses import dataclass
from typing import Any

import diskcache
from diskcache.core import MODE_BINARY

from proxy.store.retention import GRAVEYARD_DIR, retire


@dataclass(frozen=True, slots=True)
class Adopt:
    """A value for Cache.set: take `temp_path` (complete, `size_bytes` long) as the body."""

    temp_path: str
    size_bytes: int
    meta: bytes


class MediaDisk(diskcache.Disk):  # type: ignore[misc]
    def store(self, value: Any, read: bool, key: Any = diskcache.core.UNKNOWN) -> Any:
        if not isinstance(value, Adopt):
            return super().store(value, read, key=key)
        filename, full_path = self.filename(key, value)
        os.makedirs(op.dirname(full_path), exist_ok=True)
        # Same filesystem (tmp/ lives in the cache dir), so this is atomic: the body is
        # either fully in place under its final name or not there at all.
        os.rename(value.temp_path, full_path)
        return value.size_bytes, MODE_BINARY, filename, sqlite3.Binary(value.meta)

    def fetch(self, mode: int, filename: str | None, value: Any, read: bool) -> Any:
        if mode == MODE_BINARY and filename is not None and value is not None:
            return bytes(value), op.join(self._directory, filename)
        return super().fetch(mode, filename, value, read)

    def remove(self, file_path: str) -> None:
        """Replaced, purged, evicted or deleted: the one way a body leaves the cache.

        A body no reader holds is unlinked at once. A body a reader holds (readers take a
        shared flock, see `retention.py`) moves to the graveyard, where the reaper deletes it
        once the last stream on it ends. Unlinking alone would also keep the bytes readable
        through open fds on Linux, but the space would vanish from our accounting and
        metrics, and non-POSIX filesystems would break the stream.
        """
        full_path = op.join(self._directory, file_path)
        retire(full_path, op.join(self._directory, GRAVEYARD_DIR))
