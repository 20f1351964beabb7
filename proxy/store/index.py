"""The cache index: one diskcache.Cache (rows + hashed body dirs), and `Store`, its facade.

Rule: `Store` opens the directory and owns the writes that replace an entry (commit, refresh,
delete); everything else is delegated by job: reads.py (lookups, single-row reads), banwork.py
(purges), budget.py (room and eviction), janitor.py (leftovers, readiness). Every write is one
diskcache transaction, so processes can share a directory (SQLite WAL, no flock on writes).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sqlite3
import uuid
from pathlib import Path

import diskcache

from proxy.errors import StoreError
from proxy.policy.bans import Ban, BanIndex, BanKind
from proxy.policy.freshness import StoredResponse
from proxy.store import bans, budget
from proxy.store.banwork import BanWork
from proxy.store.budget import Budget, Usage
from proxy.store.claims import Claims
from proxy.store.disk import Adopt, MediaDisk
from proxy.store.janitor import ORPHAN_MIN_AGE_SECONDS, Janitor
from proxy.store.keysignal import SIGNAL_FILE as KEYS_SIGNAL_FILE
from proxy.store.keysignal import KeySignal, SignalUnusable, slot_of
from proxy.store.meta import decode_meta, encode_meta, invalidated, meta_dict, meta_from_dict
from proxy.store.reads import CachedBody, Reads, delete
from proxy.store.retention import GRAVEYARD_DIR, GraveyardStats, stats

# Re-exported: callers import these from here.
__all__ = ["ORPHAN_MIN_AGE_SECONDS", "TMP_DIR", "CachedBody", "Store", "decode_meta",
           "encode_meta", "meta_dict", "meta_from_dict"]

log = logging.getLogger(__name__)

TMP_DIR = "tmp"


class _Refused(Exception):
    """Rolls a commit back: the body does not fit the budget."""


class Store:
    """One per process. Safe to share a directory between processes (SQLite WAL + flock-free
    writes: every write is a single diskcache transaction)."""

    def __init__(self, directory: str | Path, *, max_size_bytes: int,
                 min_free_bytes: int = 0) -> None:
        self.directory = Path(directory)
        self.tmp_dir = self.directory / TMP_DIR
        try:
            self.tmp_dir.mkdir(parents=True, exist_ok=True)
            self.cache = diskcache.Cache(
                str(self.directory),
                disk=MediaDisk,
                size_limit=max_size_bytes,
                eviction_policy="least-recently-used",
                # diskcache would cull a fixed count of rows on every set at or over its
                # limit, the new entry included: eviction is ours (budget.py), never its.
                cull_limit=0,
                sqlite_journal_size_limit=budget.WAL_LIMIT_BYTES,
                sqlite_wal_autocheckpoint=budget.WAL_CHECKPOINT_PAGES,
                statistics=False,
                disk_min_file_size=0,
                sqlite_mmap_size=2**26,
            )
            self.reads = Reads(self.cache, self.directory)
            self.budget = Budget(self.cache, self.reads, self.directory, self.tmp_dir,
                                 self.graveyard, max_size_bytes=max_size_bytes,
                                 min_free_bytes=min_free_bytes)
            self.claims = Claims(self.directory, admit=self.budget.admit)
            with self.cache.transact(retry=True):
                for statement in bans.SCHEMA:
                    self.cache._sql(statement)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open cache directory {self.directory}: {exc}") from exc
        # The read connection and its lock, by the names the admin listings use.
        self._reader = self.reads.connection
        self._lock = self.reads.lock
        try:
            self.keys = KeySignal(self.directory / KEYS_SIGNAL_FILE)
        except SignalUnusable as exc:
            self.cache.close()
            raise StoreError(f"cannot use the key change signals: {exc}") from exc
        self.banwork = BanWork(self.cache, self._reader, self._lock, self.claims,
                               self.directory, self.keys)
        self._bans = self.banwork.view
        self.janitor = Janitor(self.directory, self.tmp_dir, self.graveyard, self.reads,
                               self.claims)

    # -- the budget's limits (a reload changes them) -----------------------------------------

    @property
    def max_size_bytes(self) -> int:
        return self.budget.max_size_bytes

    @max_size_bytes.setter
    def max_size_bytes(self, value: int) -> None:
        self.budget.max_size_bytes = value

    @property
    def min_free_bytes(self) -> int:
        return self.budget.min_free_bytes

    @min_free_bytes.setter
    def min_free_bytes(self, value: int) -> None:
        self.budget.min_free_bytes = value

    # -- reads (reads.py) ------------------------------------------------------------------

    def lookup(self, key: str, now: float | None = None) -> CachedBody | None:
        slot = slot_of(key)
        seen = self.keys.read(slot)  # before the read: a change after it moves the slot
        cached = self.reads.lookup(key, now)
        if cached is not None:
            cached.slot, cached.signal = slot, seen
        return cached

    def peek(self, key: str) -> StoredResponse | None:
        """The current metadata of `key`, without opening its body."""
        return self.reads.peek(key)

    def vary_names(self, url_key: str) -> tuple[str, ...] | None:
        """The fields responses for `url_key` vary on, or None when it does not vary."""
        return self.reads.vary_names(url_key)

    def touch(self, rowid: int, now: float) -> None:
        """Record a use served from the memory tier (for LRU order), batched like lookups."""
        self.reads.touch(rowid, now)

    def count_prefix(self, prefix: str) -> int:
        return self.reads.count_prefix(prefix)

    def volume(self) -> int:
        """Bytes on disk: the index's pages plus every body rounded up to whole blocks."""
        return self.reads.volume()

    def entry_count(self) -> int:
        return self.reads.entry_count()

    # -- writes ----------------------------------------------------------------------------

    def new_temp_path(self) -> str:
        # The pid in the name lets a starting worker sweep only the files of dead processes.
        return str(self.tmp_dir / f"{os.getpid()}.{uuid.uuid4().hex}.part")

    def commit(
        self, key: str, temp_path: str, meta: StoredResponse, tags: tuple[str, ...] = (),
        vary: tuple[str, tuple[str, ...]] | None = None,
    ) -> bool:
        """Adopt the complete temp file as the body of `key` (replacing any older entry),
        evicting least-recently-used entries (never this one) until the budget holds.

        False when the body is not adopted (the caller discards it): a purge issued after this
        response was fetched covers it, so an in-flight fill can never undo a purge; or it
        cannot fit in the budget (a body of unknown length that grew too large)."""
        gone: list[str] = []
        try:
            with self.cache.transact(retry=True):
                left, gone = self.budget.room(-self.budget.replaced_blocks(key), keep=key)
                if left > 0:
                    log.warning("not storing %s: %d bytes over the budget with every other"
                                " entry evicted", key, left)
                    gone = []  # the rollback keeps them
                    raise _Refused
                ban = self.banwork.covering(key, tags, meta.response_time)
                if ban is not None and not ban.soft:
                    return False
                if ban is not None:
                    meta = invalidated(meta)
                self.cache.set(key, Adopt(temp_path, meta.body_size, encode_meta(meta)),
                               retry=True)
                if vary is not None:
                    self.cache._sql("INSERT OR REPLACE INTO MediaVary (key, names) VALUES (?, ?)",
                                    (vary[0], " ".join(vary[1])))
                    gone += self._unvaried(key, vary)
                self.cache._sql("DELETE FROM MediaTags WHERE key = ?", (key,))
                for tag in tags:
                    self.cache._sql("INSERT OR IGNORE INTO MediaTags (tag, key) VALUES (?, ?)",
                                    (tag, key))
            self.keys.bump(key)
            if vary is not None and vary[1] and vary[0] != key:
                self.keys.bump(vary[0])  # its copies and lane routes (variant-blind) die
            return True
        except _Refused:
            return False
        except (OSError, sqlite3.Error, diskcache.Timeout) as exc:
            gone = []
            raise StoreError(f"commit failed: {exc}") from exc
        finally:
            self.budget.retire(gone)

    def _unvaried(self, key: str, vary: tuple[str, tuple[str, ...]]) -> list[str]:
        """Inside the commit of a response that varies: the URL's response stored before it
        did (under the plain URL key) is no longer reachable by a lookup, but a memory copy
        or a lane route of it (neither looks at Vary) would keep answering it. Its row goes;
        the body file is returned, to be retired once the commit is durable."""
        url_key, names = vary
        if not names or url_key == key:
            return []
        row = self.cache._sql("SELECT rowid, filename FROM Cache WHERE key = ? AND raw = 1",
                              (url_key,)).fetchone()
        if row is None:
            return []
        self.cache._sql("DELETE FROM Cache WHERE rowid = ?", (row[0],))
        self.cache._sql("DELETE FROM MediaTags WHERE key = ?", (url_key,))
        return [str(row[1])] if row[1] is not None else []

    def refresh(self, key: str, expected_filename: str | None, meta: StoredResponse) -> bool:
        """Replace the metadata of `key` without touching the body (RFC 9111 §4.3.4)."""
        try:
            with self.cache.transact(retry=True):
                row = self.cache._sql(
                    "SELECT rowid, filename FROM Cache WHERE key = ? AND raw = 1", (key,)
                ).fetchone()
                if row is None or (expected_filename is not None and row[1] != expected_filename):
                    return False
                self.cache._sql(
                    "UPDATE Cache SET value = ? WHERE rowid = ?",
                    (sqlite3.Binary(encode_meta(meta)), row[0]),
                )
            self.keys.bump(key)
            return True
        except (OSError, sqlite3.Error, diskcache.Timeout) as exc:
            raise StoreError(f"refresh failed: {exc}") from exc

    def delete(self, key: str) -> bool:
        deleted = delete(self.cache, key)
        self.keys.bump(key)
        return deleted

    def discard_temp(self, temp_path: str) -> None:
        try:
            os.unlink(temp_path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("could not remove temp file %s: %s", temp_path, exc)

    # -- bans (banwork.py) -----------------------------------------------------------------

    def bans(self) -> BanIndex:
        return self.banwork.current()

    def add_ban(self, kind: BanKind, value: str, *, soft: bool, now: float) -> Ban:
        """Record a purge; it hides matching entries at once, in every process."""
        return self.banwork.add(kind, value, soft=soft, now=now)

    def sweep_ban(self, ban: Ban, batch: int = 500) -> int:
        """One batch of the ban's sweep (0 = the sweep is complete)."""
        return self.banwork.sweep(ban, batch)

    def retire_ban(self, ban: Ban) -> None:
        self.banwork.retire(ban)

    def sweep_bans(self, min_ban_age_seconds: float = 0.0, now: float | None = None) -> int:
        """Sweep every active ban that no other process is sweeping; retire finished ones."""
        return self.banwork.sweep_all(min_ban_age_seconds, now)

    # -- the budget (budget.py) --------------------------------------------------------------

    def usage(self, skip: str | None = None) -> Usage:
        """What `max_size_bytes` bounds, now (`skip`: a temp file left out of in-flight)."""
        return self.budget.usage(skip)

    def flush_access_times(self) -> int:
        """Write the batched access times (LRU order) in one transaction."""
        try:
            with self.cache.transact(retry=True):
                return self.reads.apply_access_times()
        except (OSError, sqlite3.Error, diskcache.Timeout) as exc:
            raise StoreError(f"access-time flush failed: {exc}") from exc

    def cull(self) -> int:
        """Evict least-recently-used entries until the budget holds again."""
        return self.budget.cull()

    # -- housekeeping (janitor.py) -----------------------------------------------------------

    @property
    def graveyard(self) -> str:
        return str(self.directory / GRAVEYARD_DIR)

    def graveyard_stats(self) -> GraveyardStats:
        return stats(self.graveyard)

    def reap(self) -> int:
        """Delete superseded bodies whose last stream has ended."""
        return self.janitor.reap()

    def scan_orphans(self, dirs: int = 2, min_age_seconds: float = ORPHAN_MIN_AGE_SECONDS,
                     now: float | None = None) -> int:
        """Remove body files no row owns, in the next `dirs` of the 256 hashed directories."""
        return self.janitor.scan_orphans(dirs, min_age_seconds, now)

    def sweep_temp(self) -> int:
        """Remove temp files left by processes that no longer run (a crashed fill's)."""
        return self.janitor.sweep_temp()

    def write_problem(self) -> str | None:
        """Why a fill could not be written now (None: it could)."""
        return self.janitor.write_problem()

    def writable(self) -> bool:
        return self.write_problem() is None

    def close(self) -> None:
        with contextlib.suppress(StoreError):
            self.flush_access_times()
        self.reads.close()
        self.banwork.signal.close()
        self.keys.close()
        self.cache.close()

    def destroy(self) -> None:
        """Remove the whole cache directory (tests and `mediaproxy cache clear`)."""
        self.close()
        shutil.rmtree(self.directory, ignore_errors=True)
