"""Reads of the index: lookups that open the body, metadata peeks, single-row questions.

Rule: a lookup opens the body file at once and returns the open file with its metadata; the
response is served from that fd only, so a later overwrite, purge or eviction can never mix
versions. A row whose file is missing or of the wrong size is a miss (and the row is dropped).
Reads use their own connection (no write lock, no diskcache LRU write per get): access times
are batched here and written by the next write transaction or flush.
"""

from __future__ import annotations

import io
import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diskcache

from proxy.errors import StoreError
from proxy.policy.freshness import StoredResponse
from proxy.store import bans
from proxy.store.meta import decode_meta
from proxy.store.retention import hold

log = logging.getLogger(__name__)


@dataclass(slots=True)
class CachedBody:
    """A lookup result: metadata and the body file, already open. Close it when done."""

    key: str
    filename: str
    meta: StoredResponse
    file: io.FileIO
    rowid: int = 0
    slot: int = 0  # the key's change signal (keysignal.py) and its value before the read
    signal: int = 0

    @property
    def size(self) -> int:
        return self.meta.body_size

    def close(self) -> None:
        self.file.close()


def delete(cache: diskcache.Cache, key: str) -> bool:
    try:
        return bool(cache.delete(key, retry=True))
    except (OSError, sqlite3.Error, diskcache.Timeout) as exc:
        raise StoreError(f"delete failed: {exc}") from exc


class Reads:
    """The read connection and this process's batched access times (LRU order)."""

    def __init__(self, cache: diskcache.Cache, directory: Path) -> None:
        self.cache = cache
        self.connection = sqlite3.connect(
            str(directory / "cache.db"), isolation_level=None, check_same_thread=False
        )
        self.connection.execute("PRAGMA busy_timeout = 5000")
        self.lock = threading.Lock()
        self._accessed: dict[int, float] = {}

    def one(self, sql: str, args: tuple[Any, ...] = ()) -> Any:
        """One row from the read connection (no write lock, no diskcache), or None."""
        try:
            with self.lock:
                return self.connection.execute(sql, args).fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"index read failed: {exc}") from exc

    def lookup(self, key: str, now: float | None = None) -> CachedBody | None:
        row = self.one(
            "SELECT rowid, size, filename, value FROM Cache WHERE key = ? AND raw = 1", (key,))
        if row is None:
            return None
        rowid, size, filename, value = row
        if filename is None or value is None:
            return None
        path = os.path.join(self.cache.directory, filename)
        try:
            body = io.FileIO(path, "r")
        except FileNotFoundError:
            # Replaced or removed between the row read and the open (the row is gone or about
            # to be), or a crash removed the file and left the row: a miss either way, and
            # the row is dropped if it still names the missing file.
            self._drop_row(rowid, filename)
            return None
        except OSError:
            return None
        try:
            hold(body.fileno())
        except BlockingIOError:
            # `retire` is testing this very file for readers: it is on its way out of the
            # cache, so this lookup is a miss (the entry that replaces it, if any, is newer).
            body.close()
            return None
        try:
            meta = decode_meta(bytes(value))
            if os.fstat(body.fileno()).st_size != size or meta.body_size != size:
                log.warning("cache body has the wrong size, dropping entry", extra={"key": key})
                body.close()
                delete(self.cache, key)
                return None
        except (ValueError, KeyError, TypeError, OSError):
            body.close()
            delete(self.cache, key)
            return None
        self._accessed[rowid] = time.time() if now is None else now
        return CachedBody(key, filename, meta, body, rowid)

    def peek(self, key: str) -> StoredResponse | None:
        """The current metadata of `key`, without opening its body."""
        row = self.one("SELECT value FROM Cache WHERE key = ? AND raw = 1", (key,))
        if row is None or row[0] is None:
            return None
        try:
            return decode_meta(bytes(row[0]))
        except (ValueError, KeyError, TypeError):
            return None

    def _drop_row(self, rowid: int, filename: str) -> None:
        try:
            with self.cache.transact(retry=True):
                if os.path.exists(os.path.join(self.cache.directory, filename)):
                    return  # not missing after all (a racing replacement): leave it
                self.cache._sql("DELETE FROM Cache WHERE rowid = ? AND filename = ?",
                                (rowid, filename))
        except (OSError, sqlite3.Error, diskcache.Timeout) as exc:
            log.warning("could not drop the row of a missing body: %s", exc)

    def vary_names(self, url_key: str) -> tuple[str, ...] | None:
        """The fields responses for `url_key` vary on, or None when it does not vary."""
        row = self.one("SELECT names FROM MediaVary WHERE key = ?", (url_key,))
        return tuple(row[0].split()) if row and row[0] else None

    def owned(self, filename: str) -> bool:
        """Does any row name this body file?"""
        return self.one("SELECT 1 FROM Cache WHERE filename = ? LIMIT 1",
                        (filename,)) is not None

    def count_prefix(self, prefix: str) -> int:
        row = self.one("SELECT COUNT(*) FROM Cache WHERE key >= ? AND key < ? AND raw = 1",
                       (prefix, prefix + "\U0010ffff"))
        return int(row[0])

    def body_blocks(self) -> int:
        return int(self.one("SELECT blocks FROM MediaUsage WHERE id = 0")[0])

    def volume(self) -> int:
        """Bytes on disk: the index's pages plus every body rounded up to whole blocks."""
        pages = self.one("PRAGMA page_count")[0]
        page_size = self.one("PRAGMA page_size")[0]
        blocks = self.one("SELECT blocks FROM MediaUsage WHERE id = 0")[0]
        return int(pages) * int(page_size) + int(blocks) * bans.BLOCK_BYTES

    def entry_count(self) -> int:
        # diskcache's triggers keep this count: no scan of a million-row table per scrape.
        return int(self.one("SELECT value FROM Settings WHERE key = 'count'")[0])

    def touch(self, rowid: int, now: float) -> None:
        """Record a use served from the memory tier (for LRU order), batched like lookups."""
        self._accessed[rowid] = now

    def apply_access_times(self) -> int:
        """Inside a write transaction: write the batched access times."""
        with self.lock:
            pending, self._accessed = self._accessed, {}
        if pending:
            self.cache._con.executemany(
                "UPDATE Cache SET access_time = ?, access_count = access_count + 1"
                " WHERE rowid = ?",
                [(t, rowid) for rowid, t in pending.items()],
            )
        return len(pending)

    def close(self) -> None:
        with self.lock:
            self.connection.close()
