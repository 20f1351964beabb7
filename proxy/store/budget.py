"""The disk budget (`cache.max_size_bytes`): what it counts, and eviction that keeps it.

Rule: the budget counts what the cache directory takes on disk: the index files as they are
(SQLite database, WAL, shared memory), committed bodies in whole blocks, superseded bodies kept
for running streams (`graveyard/`), and fills in flight at their expected size from their first
byte. Eviction removes least-recently-used entries until the budget holds, no more, never the
entry being committed and never a body a stream is reading (that frees nothing until it ends).
`Budget` runs eviction inside the write transaction that needs the room (a commit, a fill's
admission, the background cull) and retires the evicted files only after it has committed.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diskcache

from proxy.errors import StoreError
from proxy.store.bans import BLOCK_BYTES
from proxy.store.claims import FillPaths
from proxy.store.reads import Reads
from proxy.store.retention import stats, unheld

log = logging.getLogger(__name__)

INDEX_FILES = ("cache.db", "cache.db-wal", "cache.db-shm")
# The WAL is checkpointed every WAL_CHECKPOINT_PAGES pages (SQLite's default is 1000: 4 MiB)
# and truncated back to WAL_LIMIT_BYTES after a checkpoint, so it takes about 1 MiB of the
# budget (more only while a long read holds a checkpoint back).
WAL_CHECKPOINT_PAGES = 256
WAL_LIMIT_BYTES = 1024 * 1024
VICTIM_BATCH = 64


class NoRoom(OSError):
    """A fill cannot fit in the budget even after evicting every entry it may: it is relayed
    to its clients uncached. An OSError (ENOSPC of the budget) because that is what a fill
    start already handles as "cannot store this one"."""

    def __init__(self, needed: int, budget: int) -> None:
        super().__init__(errno.ENOSPC, f"no room in the cache budget: {needed} bytes needed,"
                                       f" max_size_bytes is {budget}")


def blocks(size: int) -> int:
    """`size` bytes rounded up to whole filesystem blocks."""
    return -(-max(size, 0) // BLOCK_BYTES) * BLOCK_BYTES


@dataclass(frozen=True, slots=True)
class Usage:
    index_bytes: int  # cache.db + WAL + shared memory, as on disk
    body_bytes: int  # committed bodies, in whole blocks
    graveyard_bytes: int  # superseded bodies kept for the streams still reading them
    in_flight_bytes: int  # temp files of running fills, at their expected size when known

    @property
    def total(self) -> int:
        return self.index_bytes + self.body_bytes + self.graveyard_bytes + self.in_flight_bytes

    def as_json(self) -> dict[str, int]:
        return {"index": self.index_bytes, "bodies": self.body_bytes,
                "graveyard": self.graveyard_bytes, "in_flight": self.in_flight_bytes,
                "total": self.total}


def index_bytes(directory: Path) -> int:
    total = 0
    for name in INDEX_FILES:
        with contextlib.suppress(OSError):
            total += blocks(os.stat(directory / name).st_size)
    return total


def _expected(meta_path: str) -> int:
    """The expected size a running fill announced (0 if unknown, finished or unreadable)."""
    try:
        with open(meta_path, "rb") as f:
            info = json.loads(f.read())
    except (OSError, ValueError):
        return 0
    if not isinstance(info, dict) or info.get("done") or "meta" not in info:
        return 0
    expected = info.get("expected")
    return expected if isinstance(expected, int) and expected > 0 else 0


def in_flight_bytes(tmp_dir: Path, skip: str | None = None) -> int:
    """Temp files of fills: each at the larger of what it holds and what it announced.
    `skip` names a part file left out (the fill being admitted, counted by the caller)."""
    total = 0
    try:
        entries = list(os.scandir(tmp_dir))
    except OSError:
        return 0
    for entry in entries:
        if not entry.name.endswith(".part") or entry.path == skip:
            continue
        try:
            size = entry.stat().st_size
        except OSError:
            continue
        # `<h>.<unique>.part` announces its size in `<h>.meta` (its key's claim metadata).
        announced = _expected(os.path.join(tmp_dir, entry.name.split(".", 1)[0] + ".meta"))
        total += blocks(max(size, announced))
    return total


def usage(directory: Path, tmp_dir: Path, graveyard: str, body_blocks: int,
          skip: str | None = None) -> Usage:
    return Usage(index_bytes(directory), body_blocks * BLOCK_BYTES, blocks_of(graveyard),
                 in_flight_bytes(tmp_dir, skip))


def blocks_of(graveyard: str) -> int:
    return blocks(stats(graveyard).bytes)


def _victims(sql: Callable[..., Any], keep: str | None) -> Iterator[tuple[int, str, str, int]]:
    """Rows in least-recently-used order (access time, then insertion), in batches."""
    after: tuple[float, int] = (float("-inf"), -1)
    while True:
        rows = sql(
            "SELECT rowid, key, filename, size, access_time FROM Cache WHERE raw = 1"
            " AND (access_time > ? OR (access_time = ? AND rowid > ?)) AND key IS NOT ?"
            " ORDER BY access_time, rowid LIMIT ?",
            (after[0], after[0], after[1], keep, VICTIM_BATCH),
        ).fetchall()
        if not rows:
            return
        for rowid, key, filename, size, access_time in rows:
            yield int(rowid), str(key), str(filename), int(size)
            after = (float(access_time), int(rowid))


def evict(sql: Callable[..., Any], directory: str, over: int, keep: str | None
          ) -> tuple[int, list[str]]:
    """Delete least-recently-used rows (not `keep`, not held by a stream) until `over` bytes
    are freed or none is left. Returns (bytes still over, their body files): the files are
    retired once the transaction has committed (a rollback must not have removed them)."""
    gone: list[str] = []
    if over <= 0:
        return over, gone
    for rowid, key, filename, size in _victims(sql, keep):
        if unheld(os.path.join(directory, filename)) is False:
            continue  # a stream is reading it: evicting it would free nothing yet
        sql("DELETE FROM Cache WHERE rowid = ?", (rowid,))
        sql("DELETE FROM MediaTags WHERE key = ?", (key,))
        gone.append(filename)
        over -= blocks(size)
        if over <= 0:
            break
    return over, gone


class Budget:
    """Keeps `max_size_bytes` (and `min_free_bytes` free) for one store; both may be changed
    at run time (a reload)."""

    def __init__(self, cache: diskcache.Cache, reads: Reads, directory: Path, tmp_dir: Path,
                 graveyard: str, *, max_size_bytes: int, min_free_bytes: int) -> None:
        self.cache = cache
        self.reads = reads
        self.directory = directory
        self.tmp_dir = tmp_dir
        self.graveyard = graveyard
        self.max_size_bytes = max_size_bytes
        self.min_free_bytes = min_free_bytes

    def usage(self, skip: str | None = None) -> Usage:
        """What `max_size_bytes` bounds, now (`skip`: a temp file left out of in-flight)."""
        return usage(self.directory, self.tmp_dir, self.graveyard, self.reads.body_blocks(),
                     skip)

    def room(self, extra: int, *, keep: str | None = None, skip: str | None = None,
             disk_extra: int = 0) -> tuple[int, list[str]]:
        """Inside a write transaction: evict least-recently-used entries (not `keep`) until
        what is on disk plus `extra` fits the budget and `min_free_bytes` (+ `disk_extra`, the
        bytes about to be written) stays free. Returns (bytes still over, files to retire)."""
        # This process's batched uses first: the LRU order as fresh as it is known.
        self.reads.apply_access_times()
        row = self.cache._sql("SELECT blocks FROM MediaUsage WHERE id = 0").fetchone()
        use = usage(self.directory, self.tmp_dir, self.graveyard, int(row[0]), skip)
        over = use.total + extra - self.max_size_bytes
        if self.min_free_bytes:
            # The filesystem may be shared: keep min_free_bytes free as well.
            short = self.min_free_bytes + disk_extra - shutil.disk_usage(self.directory).free
            over = max(over, short)
        return evict(self.cache._sql, self.cache.directory, over, keep)

    def replaced_blocks(self, key: str) -> int:
        """The disk a commit of `key` frees by replacing its current body (unless a stream
        holds that body, which then waits in the graveyard, still counted)."""
        row = self.cache._sql("SELECT filename, size FROM Cache WHERE key = ? AND raw = 1",
                              (key,)).fetchone()
        if row is None or row[0] is None:
            return 0
        held = unheld(os.path.join(self.cache.directory, row[0])) is False
        return 0 if held else blocks(int(row[1]))

    def retire(self, filenames: list[str]) -> None:
        for filename in filenames:
            try:
                self.cache.disk.remove(filename)
            except OSError as exc:
                log.warning("could not remove evicted body %s: %s", filename, exc)

    def admit(self, paths: FillPaths, expected: int | None, publish: Callable[[], None]
              ) -> None:
        """A fill announces itself (claims.py): make room for its expected size ahead of its
        first byte, then publish it, in one write transaction, so two fills never take the
        same room. NoRoom (nothing is evicted then) makes the caller relay it uncached."""
        need = blocks(expected or 0)
        gone: list[str] = []
        try:
            with self.cache.transact(retry=True):
                left, gone = self.room(need, skip=str(paths.part), disk_extra=need)
                if left > 0:
                    gone = []  # the rollback keeps them
                    raise NoRoom(need, self.max_size_bytes)
                publish()
        except (sqlite3.Error, diskcache.Timeout) as exc:
            gone = []
            # Claim.publish fails with OSError only (its callers' contract: a write failed).
            raise OSError(errno.EIO, f"fill admission failed: {exc}") from exc
        finally:
            self.retire(gone)

    def cull(self) -> int:
        """Evict least-recently-used entries until the budget holds again (in the background:
        bodies of unknown length grow without an announced size, the WAL grows, streams end
        later than evictions). Returns how many went."""
        gone: list[str] = []
        try:
            with self.cache.transact(retry=True):
                _, gone = self.room(0)
        except (OSError, sqlite3.Error, diskcache.Timeout) as exc:
            gone = []
            raise StoreError(f"cull failed: {exc}") from exc
        finally:
            self.retire(gone)
        return len(gone)
