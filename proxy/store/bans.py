"""Bans (pending purges) and tags, in tables beside diskcache's own in `cache.db`.

Rule: a ban is one row, written in the same SQLite database as the entries, so a fill's
commit and a ban are serialised by SQLite: `Store.commit` refuses, in its own transaction, an
entry whose response predates a matching hard ban. A ban is retired only after its sweep has
deleted every matching row and no fill that started before it is still running.
"""

from __future__ import annotations

import mmap
import os
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from proxy.policy.bans import Ban, BanIndex, BanKind

BLOCK_BYTES = 4096  # the allocation unit of common filesystems (ext4, xfs): bodies round up

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS MediaBans (id INTEGER PRIMARY KEY AUTOINCREMENT,"
    " kind TEXT NOT NULL, value TEXT NOT NULL, created REAL NOT NULL, soft INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS MediaBanVersion (id INTEGER PRIMARY KEY CHECK (id = 0),"
    " version INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO MediaBanVersion (id, version) VALUES (0, 0)",
    "CREATE TABLE IF NOT EXISTS MediaTags (tag TEXT NOT NULL, key TEXT NOT NULL,"
    " PRIMARY KEY (tag, key)) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS MediaTagsKey ON MediaTags (key)",
    # Lets the orphan scan ask "does any row own this body file?" without a table scan.
    "CREATE INDEX IF NOT EXISTS MediaFilename ON Cache (filename)",
    # URL key -> the request fields its responses vary on (the last response's Vary).
    "CREATE TABLE IF NOT EXISTS MediaVary (key TEXT PRIMARY KEY, names TEXT NOT NULL)",
    # Disk use of the bodies in filesystem blocks (a 1 KiB body takes a 4 KiB block): kept by
    # triggers, so the budget counts what the disk really gives, for any way a row changes.
    "CREATE TABLE IF NOT EXISTS MediaUsage (id INTEGER PRIMARY KEY CHECK (id = 0),"
    " blocks INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO MediaUsage (id, blocks) SELECT 0,"
    f" COALESCE(SUM((size + {BLOCK_BYTES - 1}) / {BLOCK_BYTES}), 0) FROM Cache",
    "CREATE TRIGGER IF NOT EXISTS MediaUsageInsert AFTER INSERT ON Cache BEGIN"
    f" UPDATE MediaUsage SET blocks = blocks + (NEW.size + {BLOCK_BYTES - 1}) / {BLOCK_BYTES}"
    " WHERE id = 0; END",
    "CREATE TRIGGER IF NOT EXISTS MediaUsageDelete AFTER DELETE ON Cache BEGIN"
    f" UPDATE MediaUsage SET blocks = blocks - (OLD.size + {BLOCK_BYTES - 1}) / {BLOCK_BYTES}"
    " WHERE id = 0; END",
    "CREATE TRIGGER IF NOT EXISTS MediaUsageUpdate AFTER UPDATE OF size ON Cache BEGIN"
    f" UPDATE MediaUsage SET blocks = blocks + (NEW.size + {BLOCK_BYTES - 1}) / {BLOCK_BYTES}"
    f" - (OLD.size + {BLOCK_BYTES - 1}) / {BLOCK_BYTES} WHERE id = 0; END",
)

# A process that crashed between committing a ban and signalling it is covered by this
# periodic check of the table's version; normally the signal makes a purge visible at once.
FALLBACK_SECONDS = 1.0
SIGNAL_FILE = "bans.signal"


class BanSignal:
    """Eight bytes in a file every process maps: a writer stores a new random value after
    each committed ban change, so a reader learns "the ban table moved" from one memory read
    instead of a query per lookup. A torn or spurious change only costs a query."""

    def __init__(self, path: Path) -> None:
        self._map: mmap.mmap | None = None
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            return  # read-only cache dir: readers fall back to querying every time
        try:
            # Allocated, not sparse: a store into a page a full filesystem cannot back would
            # kill the process (SIGBUS). No room now: readers query every time.
            os.posix_fallocate(fd, 0, 8)
            self._map = mmap.mmap(fd, 8)
        except (OSError, ValueError):
            self._map = None
        finally:
            os.close(fd)

    def read(self) -> int | None:
        return None if self._map is None else int.from_bytes(self._map[:8], "little")

    def bump(self) -> None:
        if self._map is not None:
            self._map[:8] = os.urandom(8)

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None


def row_to_ban(row: Iterable[Any]) -> Ban:
    ban_id, kind, value, created, soft = row
    return Ban(int(ban_id), BanKind(kind), str(value), float(created), bool(soft))


class BanCache:
    """This process's view of the ban table, reloaded when its version moves."""

    def __init__(self, reader: sqlite3.Connection, signal: BanSignal) -> None:
        self._reader = reader
        self._signal = signal
        self._seen: int | None = None
        self._version = -1
        self._checked = -FALLBACK_SECONDS
        self.index = BanIndex()

    def current(self, lock: Any) -> BanIndex:
        now = time.monotonic()
        signal = self._signal.read()
        if signal is not None and signal == self._seen and now - self._checked < FALLBACK_SECONDS:
            return self.index
        # Read before the query: a change signalled during it is seen on the next call.
        self._seen = signal
        self._checked = now
        with lock:
            version = self._reader.execute(
                "SELECT version FROM MediaBanVersion WHERE id = 0").fetchone()[0]
            if version != self._version:
                rows = self._reader.execute(
                    "SELECT id, kind, value, created, soft FROM MediaBans").fetchall()
                self.index = BanIndex.build(row_to_ban(r) for r in rows)
                self._version = version
        return self.index

    def refresh(self) -> None:
        """Query on the next call whatever the signal says."""
        self._seen = None

    def changed(self) -> None:
        """This process committed a ban change: tell every process, this one included."""
        self._signal.bump()
        self._seen = None
