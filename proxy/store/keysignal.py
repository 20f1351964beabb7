"""Per-key change signals shared by every process: "has this key changed since I copied it?"
in one memory read, so the memory tier (and the lane's routes) can keep copies for long and
still see another worker's new version at once.

Rule: a file of SLOTS 8-byte slots that every process maps; each key has a slot (crc32 of
the key, the same in every process). After a write of a key commits (a new body, refreshed
metadata, a delete), the writer stores a new random value in its slot. A reader takes the
slot's value *before* it reads the entry, keeps it with its copy, and drops the copy when the
slot has moved. Keys sharing a slot only cost each other a reload; a torn or lost signal (a
process killed between commit and signal) is covered by the copy's TTL. Without the file (a
read-only cache directory) `available` is False and copies live by their TTL alone.
"""

from __future__ import annotations

import mmap
import os
import zlib
from pathlib import Path

SIGNAL_FILE = "keys.signal"
SLOTS = 1 << 16  # 512 KiB: a busy cache's concurrent writes rarely share a slot


def slot_of(key: str) -> int:
    return zlib.crc32(key.encode("utf-8", "surrogateescape")) & (SLOTS - 1)


class KeySignal:
    def __init__(self, path: Path) -> None:
        self._map: mmap.mmap | None = None
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError:
            return
        try:
            # Allocated, not sparse: a store into a page a full filesystem cannot back
            # would kill the process (SIGBUS). No room now: no signals, copies live by TTL.
            os.posix_fallocate(fd, 0, SLOTS * 8)
            self._map = mmap.mmap(fd, SLOTS * 8)
        except (OSError, ValueError):
            self._map = None
        finally:
            os.close(fd)

    @property
    def available(self) -> bool:
        return self._map is not None

    def read(self, slot: int) -> int:
        """The slot's current value (0 without the file: nothing is ever signalled)."""
        signals = self._map
        if signals is None:
            return 0
        return int.from_bytes(signals[slot * 8:slot * 8 + 8], "little")

    def bump(self, key: str) -> None:
        """`key` changed (call after the change is committed)."""
        if self._map is not None:
            slot = slot_of(key)
            self._map[slot * 8:slot * 8 + 8] = os.urandom(8)

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
