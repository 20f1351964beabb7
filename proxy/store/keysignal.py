"""Per-key change signals shared by every process: "has this key changed since I copied it?"
in one memory read, so the memory tier (and the lane's routes) can keep copies for long and
still see another worker's new version at once.

Rule: a file of SLOTS 8-byte slots that every process maps; each key has a slot (crc32 of
the key, the same in every process). After a write of a key commits (a new body, refreshed
metadata, a delete), the writer stores a new random value in its slot. A reader takes the
slot's value *before* it reads the entry, keeps it with its copy, and drops the copy when the
slot has moved. Keys sharing a slot only cost each other a reload; a torn or lost signal (a
process killed between commit and signal) is covered by the copy's TTL. Every process must
agree whether signals exist: the file is made once, whole or (without room) empty, and an
empty or missing-and-unmakeable file means `available` is False in every process (copies
then live by a TTL of at most 1 s); a process that cannot map a whole file refuses to use the
store (SignalUnusable) rather than write without signalling.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import zlib
from pathlib import Path

SIGNAL_FILE = "keys.signal"
SLOTS = 1 << 16  # 512 KiB: a busy cache's concurrent writes rarely share a slot


def slot_of(key: str) -> int:
    return zlib.crc32(key.encode("utf-8", "surrogateescape")) & (SLOTS - 1)


class SignalUnusable(Exception):
    """The signal file is in use by the other processes, but this one cannot map it."""


def _create(path: Path) -> None:
    """Make the file once, whole or empty, whichever process comes first: every process then
    agrees whether signals exist (one relying on them while another writes without moving
    them would keep old copies). No room for it: an empty file says "no signals" to all."""
    temp = path.with_name(f"{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError:
        return
    try:
        try:
            # Allocated, not sparse: a store into a page a full filesystem cannot back
            # would kill the process (SIGBUS).
            os.posix_fallocate(fd, 0, SLOTS * 8)
        except OSError:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)
        with contextlib.suppress(OSError):  # another process made it first: its verdict
            os.link(temp, path)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temp)


def reset(path: Path) -> None:
    """Before any process uses the directory (the instance lock held, no worker started): an
    empty file left by a start without room is made again on the next open."""
    with contextlib.suppress(OSError):
        if os.stat(path).st_size != SLOTS * 8:
            os.unlink(path)


class KeySignal:
    def __init__(self, path: Path) -> None:
        self._map: mmap.mmap | None = None
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            _create(path)
            try:
                fd = os.open(path, os.O_RDWR)
            except OSError:
                return  # no file could be made here (a read-only directory): none for all
        except OSError as exc:
            raise SignalUnusable(f"{path}: {exc}") from exc
        try:
            if os.fstat(fd).st_size != SLOTS * 8:
                return  # made empty: no process has signals
            self._map = mmap.mmap(fd, SLOTS * 8)
        except (OSError, ValueError) as exc:
            raise SignalUnusable(f"{path}: {exc}") from exc
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
