"""The cache index: one diskcache.Cache (rows + hashed body dirs) plus reads that open the body.

Rule: a lookup opens the body file at once and returns the open file with its metadata; the
response is served from that fd only, so a later overwrite, purge or eviction can never mix
versions. A row whose file is missing or of the wrong size is a miss (and the row is dropped).
Reads bypass diskcache's LRU write-per-get: access times are batched and flushed periodically.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import logging
import os
import shutil
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diskcache

from proxy.errors import StoreError
from proxy.policy.bans import Ban, BanIndex, BanKind
from proxy.policy.freshness import StoredResponse
from proxy.store import bans, budget
from proxy.store.budget import NoRoom, Usage
from proxy.store.claims import Claims, FillPaths
from proxy.store.disk import Adopt, MediaDisk
from proxy.store.retention import GRAVEYARD_DIR, GraveyardStats, hold, reap, stats, unheld

log = logging.getLogger(__name__)

TMP_DIR = "tmp"
# A body file is renamed into place inside the commit's write transaction (BEGIN IMMEDIATE is
# taken first), so a file without a row for this long is a crash's leftover, not a commit.
ORPHAN_MIN_AGE_SECONDS = 10.0
MAX_SWEEP_BATCHES = 400  # per ban per maintenance tick (x 500 rows)
# The readiness probe writes this much: an empty file can still be created on a full disk.
PROBE_BYTES = 1024 * 1024


class _Refused(Exception):
    """Rolls a commit back: the body does not fit the budget."""


@dataclass(slots=True)
class CachedBody:
    """A lookup result: metadata and the body file, already open. Close it when done."""

    key: str
    filename: str
    meta: StoredResponse
    file: io.FileIO
    rowid: int = 0

    @property
    def size(self) -> int:
        return self.meta.body_size

    def close(self) -> None:
        self.file.close()


def meta_dict(meta: StoredResponse) -> dict[str, Any]:
    return {
        "status": meta.status,
        "headers": [list(h) for h in meta.headers],
        "request_time": meta.request_time,
        "response_time": meta.response_time,
        "body_size": meta.body_size,
        "invalidated": meta.invalidated,
    }


def encode_meta(meta: StoredResponse) -> bytes:
    return json.dumps(meta_dict(meta), separators=(",", ":")).encode()


def decode_meta(raw: bytes) -> StoredResponse:
    return meta_from_dict(json.loads(raw))


def meta_from_dict(data: dict[str, Any]) -> StoredResponse:
    return StoredResponse(
        status=int(data["status"]),
        headers=tuple((str(k), str(v)) for k, v in data["headers"]),
        request_time=float(data["request_time"]),
        response_time=float(data["response_time"]),
        body_size=int(data["body_size"]),
        invalidated=bool(data.get("invalidated", False)),
    )


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
            self._reader = sqlite3.connect(
                str(self.directory / "cache.db"), isolation_level=None, check_same_thread=False
            )
            self._reader.execute("PRAGMA busy_timeout = 5000")
            self.claims = Claims(self.directory, admit=self._admit)
            with self.cache.transact(retry=True):
                for statement in bans.SCHEMA:
                    self.cache._sql(statement)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open cache directory {self.directory}: {exc}") from exc
        self._lock = threading.Lock()
        self._accessed: dict[int, float] = {}
        self.max_size_bytes = max_size_bytes
        self.min_free_bytes = min_free_bytes
        self._scan_position = int.from_bytes(os.urandom(1), "big")
        self._ban_signal = bans.BanSignal(self.directory / bans.SIGNAL_FILE)
        self._bans = bans.BanCache(self._reader, self._ban_signal)

    # -- reads -----------------------------------------------------------------------------

    def _read_one(self, sql: str, args: tuple[Any, ...] = ()) -> Any:
        """One row from the read connection (no write lock, no diskcache), or None."""
        try:
            with self._lock:
                return self._reader.execute(sql, args).fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"index read failed: {exc}") from exc

    def lookup(self, key: str, now: float | None = None) -> CachedBody | None:
        row = self._read_one(
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
                self.delete(key)
                return None
        except (ValueError, KeyError, TypeError, OSError):
            body.close()
            self.delete(key)
            return None
        self._accessed[rowid] = time.time() if now is None else now
        return CachedBody(key, filename, meta, body, rowid)

    def peek(self, key: str) -> StoredResponse | None:
        """The current metadata of `key`, without opening its body."""
        row = self._read_one("SELECT value FROM Cache WHERE key = ? AND raw = 1", (key,))
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

    def scan_orphans(self, dirs: int = 2, min_age_seconds: float = ORPHAN_MIN_AGE_SECONDS,
                     now: float | None = None) -> int:
        """One step of the background check (like nginx's cache loader, but for leftovers):
        remove body files in one top-level hashed directory that no row owns (a crash between
        the rename into place and the commit). One process at a time; each call moves on to
        the next of the 256 directories, so a full pass costs 256 calls."""
        job = self.claims.try_job("orphan-scan")
        if job is None:
            return 0
        now = time.time() if now is None else now
        removed = 0
        try:
            for _ in range(min(dirs, 256)):
                prefix = f"{self._scan_position:02x}"
                self._scan_position = (self._scan_position + 1) % 256
                removed += self._scan_dir(prefix, min_age_seconds, now)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"orphan scan failed: {exc}") from exc
        finally:
            job.release()
        return removed

    def _scan_dir(self, prefix: str, min_age_seconds: float, now: float) -> int:
        removed = 0
        top = self.directory / prefix
        if top.is_dir():
            for sub in sorted(os.scandir(top), key=lambda e: e.name):
                if not sub.is_dir():
                    continue
                for entry in os.scandir(sub.path):
                    if not entry.name.endswith(".val"):
                        continue
                    try:
                        if now - entry.stat().st_mtime < min_age_seconds:
                            continue  # may be a commit in flight
                    except FileNotFoundError:
                        continue
                    filename = f"{prefix}/{sub.name}/{entry.name}"
                    if self._read_one("SELECT 1 FROM Cache WHERE filename = ? LIMIT 1",
                                      (filename,)) is None:
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(entry.path)
                            removed += 1
                            log.debug("removed orphan body %s", filename)
        return removed

    def vary_names(self, url_key: str) -> tuple[str, ...] | None:
        """The fields responses for `url_key` vary on, or None when it does not vary."""
        row = self._read_one("SELECT names FROM MediaVary WHERE key = ?", (url_key,))
        return tuple(row[0].split()) if row and row[0] else None

    def touch(self, rowid: int, now: float) -> None:
        """Record a use served from the memory tier (for LRU order), batched like lookups."""
        self._accessed[rowid] = now

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
                left, gone = self._room(-self._replaced_blocks(key), keep=key)
                if left > 0:
                    log.warning("not storing %s: %d bytes over the budget with every other"
                                " entry evicted", key, left)
                    gone = []  # the rollback keeps them
                    raise _Refused
                rows = self.cache._sql(
                    "SELECT id, kind, value, created, soft FROM MediaBans WHERE created >= ?",
                    (meta.response_time,),
                ).fetchall()
                ban = BanIndex.build(bans.row_to_ban(r) for r in rows).match(
                    key, tags, meta.response_time)
                if ban is not None and not ban.soft:
                    return False
                if ban is not None:
                    meta = StoredResponse(meta.status, meta.headers, meta.request_time,
                                          meta.response_time, meta.body_size, invalidated=True)
                self.cache.set(key, Adopt(temp_path, meta.body_size, encode_meta(meta)),
                               retry=True)
                if vary is not None:
                    self.cache._sql("INSERT OR REPLACE INTO MediaVary (key, names) VALUES (?, ?)",
                                    (vary[0], " ".join(vary[1])))
                self.cache._sql("DELETE FROM MediaTags WHERE key = ?", (key,))
                for tag in tags:
                    self.cache._sql("INSERT OR IGNORE INTO MediaTags (tag, key) VALUES (?, ?)",
                                    (tag, key))
            return True
        except _Refused:
            return False
        except (OSError, sqlite3.Error, diskcache.Timeout) as exc:
            gone = []
            raise StoreError(f"commit failed: {exc}") from exc
        finally:
            self._retire(gone)

    # -- bans ------------------------------------------------------------------------------

    def bans(self) -> BanIndex:
        try:
            return self._bans.current(self._lock)
        except sqlite3.Error as exc:
            raise StoreError(f"ban read failed: {exc}") from exc

    def add_ban(self, kind: BanKind, value: str, *, soft: bool, now: float) -> Ban:
        """Record a purge; it hides matching entries at once, in every process."""
        try:
            with self.cache.transact(retry=True):
                cursor = self.cache._sql(
                    "INSERT INTO MediaBans (kind, value, created, soft) VALUES (?, ?, ?, ?)",
                    (kind.value, value, now, int(soft)),
                )
                ban_id = int(cursor.lastrowid or 0)
                self.cache._sql("UPDATE MediaBanVersion SET version = version + 1 WHERE id = 0")
        except (OSError, sqlite3.Error, diskcache.Timeout) as exc:
            raise StoreError(f"ban failed: {exc}") from exc
        self._bans.changed()
        return Ban(ban_id, kind, value, now, soft)

    def sweep_ban(self, ban: Ban, batch: int = 500) -> int:
        """One batch of the ban's sweep: delete (or mark stale) matching entries stored before
        it. Returns how many rows it handled (0 = the sweep is complete)."""
        if ban.kind is BanKind.TAG:
            select = ("SELECT c.rowid, c.key, c.value FROM MediaTags t JOIN Cache c"
                      " ON c.key = t.key AND c.raw = 1 WHERE t.tag = ? AND c.store_time <= ?"
                      " LIMIT ?")
            args: tuple[Any, ...] = (ban.value, ban.created, batch)
        elif ban.kind is BanKind.EXACT:
            select = ("SELECT rowid, key, value FROM Cache WHERE (key = ? OR (key > ? AND"
                      " key < ?)) AND raw = 1 AND store_time <= ? LIMIT ?")
            args = (ban.value, ban.value + "\x1f", ban.value + "\x1f\U0010ffff", ban.created,
                    batch)
        else:
            select = ("SELECT rowid, key, value FROM Cache WHERE key >= ? AND key < ?"
                      " AND raw = 1 AND store_time <= ? LIMIT ?")
            args = (ban.value, ban.value + "\U0010ffff", ban.created, batch)
        if ban.soft:
            # The metadata is a BLOB, which LIKE never matches: compare its text.
            already = "AND CAST(value AS TEXT) NOT LIKE '%\"invalidated\":true%' LIMIT ?"
            select = select.replace("LIMIT ?", already)
        try:
            with self.cache.transact(retry=True):
                rows = self.cache._sql(select, args).fetchall()
                for rowid, key, value in rows:
                    if ban.soft:
                        meta = decode_meta(bytes(value))
                        meta = StoredResponse(meta.status, meta.headers, meta.request_time,
                                              meta.response_time, meta.body_size, True)
                        self.cache._sql("UPDATE Cache SET value = ? WHERE rowid = ?",
                                        (sqlite3.Binary(encode_meta(meta)), rowid))
                    else:
                        self.cache.delete(key, retry=True)
                        self.cache._sql("DELETE FROM MediaTags WHERE key = ?", (key,))
            return len(rows)
        except (OSError, sqlite3.Error, diskcache.Timeout, ValueError) as exc:
            raise StoreError(f"ban sweep failed: {exc}") from exc

    def retire_ban(self, ban: Ban) -> None:
        try:
            with self.cache.transact(retry=True):
                self.cache._sql("DELETE FROM MediaBans WHERE id = ?", (ban.id,))
                self.cache._sql("UPDATE MediaBanVersion SET version = version + 1 WHERE id = 0")
        except (OSError, sqlite3.Error, diskcache.Timeout) as exc:
            raise StoreError(f"ban retire failed: {exc}") from exc
        self._bans.changed()

    def sweep_bans(self, min_ban_age_seconds: float = 0.0, now: float | None = None) -> int:
        """Sweep every active ban that no other process is sweeping; retire finished ones.
        Runs in the background; a sweeper that dies leaves its ban to the next one.

        A ban is retired no sooner than `min_ban_age_seconds` after it was made: workers'
        memory tiers may hold copies loaded just before it, for up to their TTL."""
        now = time.time() if now is None else now
        self._bans.refresh()
        handled = 0
        for ban in list(self.bans().all):
            job = self.claims.try_job(f"ban-{ban.id}")
            if job is None:
                continue
            try:
                for _ in range(MAX_SWEEP_BATCHES):  # bounded: the next call continues
                    n = self.sweep_ban(ban)
                    handled += n
                    if n == 0:
                        break
                else:
                    continue  # not finished: not retired yet
                old_enough = now - ban.created >= min_ban_age_seconds
                if old_enough and not self._fill_predates(ban):
                    self.retire_ban(ban)
            finally:
                job.release()
        return handled

    def _fill_predates(self, ban: Ban) -> bool:
        """Is a fill that started before `ban`, and that it covers, still running?"""
        single = BanIndex.build([ban])
        for info in self.claims.running_fills():
            meta = info["meta"]
            if single.match(str(info.get("key", "")), tuple(info.get("tags", ())),
                            float(meta["response_time"])) is not None:
                return True
        return False

    def count_prefix(self, prefix: str) -> int:
        row = self._read_one("SELECT COUNT(*) FROM Cache WHERE key >= ? AND key < ? AND raw = 1",
                             (prefix, prefix + "\U0010ffff"))
        return int(row[0])

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
            return True
        except (OSError, sqlite3.Error, diskcache.Timeout) as exc:
            raise StoreError(f"refresh failed: {exc}") from exc

    def delete(self, key: str) -> bool:
        try:
            return bool(self.cache.delete(key, retry=True))
        except (OSError, sqlite3.Error, diskcache.Timeout) as exc:
            raise StoreError(f"delete failed: {exc}") from exc

    def discard_temp(self, temp_path: str) -> None:
        try:
            os.unlink(temp_path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("could not remove temp file %s: %s", temp_path, exc)

    # -- maintenance -----------------------------------------------------------------------

    def flush_access_times(self) -> int:
        """Write the batched access times (LRU order) in one transaction."""
        try:
            with self.cache.transact(retry=True):
                return self._apply_access_times()
        except (OSError, sqlite3.Error, diskcache.Timeout) as exc:
            raise StoreError(f"access-time flush failed: {exc}") from exc

    def _apply_access_times(self) -> int:
        with self._lock:
            pending, self._accessed = self._accessed, {}
        if pending:
            self.cache._con.executemany(
                "UPDATE Cache SET access_time = ?, access_count = access_count + 1"
                " WHERE rowid = ?",
                [(t, rowid) for rowid, t in pending.items()],
            )
        return len(pending)

    # -- the budget (budget.py) --------------------------------------------------------------

    def usage(self, skip: str | None = None) -> Usage:
        """What `max_size_bytes` bounds, now (`skip`: a temp file left out of in-flight)."""
        row = self._read_one("SELECT blocks FROM MediaUsage WHERE id = 0")
        return budget.usage(self.directory, self.tmp_dir, self.graveyard, int(row[0]), skip)

    def _room(self, extra: int, *, keep: str | None = None, skip: str | None = None,
              disk_extra: int = 0) -> tuple[int, list[str]]:
        """Inside a write transaction: evict least-recently-used entries (not `keep`) until
        what is on disk plus `extra` fits the budget and `min_free_bytes` (+ `disk_extra`, the
        bytes about to be written) stays free. Returns (bytes still over, files to retire)."""
        self._apply_access_times()  # this process's batched uses first: LRU as fresh as known
        row = self.cache._sql("SELECT blocks FROM MediaUsage WHERE id = 0").fetchone()
        use = budget.usage(self.directory, self.tmp_dir, self.graveyard, int(row[0]), skip)
        over = use.total + extra - self.max_size_bytes
        if self.min_free_bytes:
            # The filesystem may be shared: keep min_free_bytes free as well.
            short = self.min_free_bytes + disk_extra - shutil.disk_usage(self.directory).free
            over = max(over, short)
        return budget.evict(self.cache._sql, self.cache.directory, over, keep)

    def _replaced_blocks(self, key: str) -> int:
        """The disk a commit of `key` frees by replacing its current body (unless a stream
        holds that body, which then waits in the graveyard, still counted)."""
        row = self.cache._sql("SELECT filename, size FROM Cache WHERE key = ? AND raw = 1",
                              (key,)).fetchone()
        if row is None or row[0] is None:
            return 0
        held = unheld(os.path.join(self.cache.directory, row[0])) is False
        return 0 if held else budget.blocks(int(row[1]))

    def _retire(self, filenames: list[str]) -> None:
        for filename in filenames:
            try:
                self.cache.disk.remove(filename)
            except OSError as exc:
                log.warning("could not remove evicted body %s: %s", filename, exc)

    def _admit(self, paths: FillPaths, expected: int | None, publish: Callable[[], None]
               ) -> None:
        """A fill announces itself (claims.py): make room for its expected size ahead of its
        first byte, then publish it, in one write transaction, so two fills never take the
        same room. NoRoom (nothing is evicted then) makes the caller relay it uncached."""
        need = budget.blocks(expected or 0)
        gone: list[str] = []
        try:
            with self.cache.transact(retry=True):
                left, gone = self._room(need, skip=str(paths.part), disk_extra=need)
                if left > 0:
                    gone = []  # the rollback keeps them
                    raise NoRoom(need, self.max_size_bytes)
                publish()
        except (sqlite3.Error, diskcache.Timeout) as exc:
            gone = []
            # Claim.publish fails with OSError only (its callers' contract: a write failed).
            raise OSError(errno.EIO, f"fill admission failed: {exc}") from exc
        finally:
            self._retire(gone)

    def cull(self) -> int:
        """Evict least-recently-used entries until the budget holds again (in the background:
        bodies of unknown length grow without an announced size, the WAL grows, streams end
        later than evictions). Returns how many went."""
        gone: list[str] = []
        try:
            with self.cache.transact(retry=True):
                _, gone = self._room(0)
        except (OSError, sqlite3.Error, diskcache.Timeout) as exc:
            gone = []
            raise StoreError(f"cull failed: {exc}") from exc
        finally:
            self._retire(gone)
        return len(gone)

    @property
    def graveyard(self) -> str:
        return str(self.directory / GRAVEYARD_DIR)

    def graveyard_stats(self) -> GraveyardStats:
        return stats(self.graveyard)

    def reap(self) -> int:
        """Delete superseded bodies whose last stream has ended."""
        try:
            return reap(self.graveyard)
        except OSError as exc:
            raise StoreError(f"reap failed: {exc}") from exc

    def volume(self) -> int:
        """Bytes on disk: the index's pages plus every body rounded up to whole blocks."""
        pages = self._read_one("PRAGMA page_count")[0]
        page_size = self._read_one("PRAGMA page_size")[0]
        blocks = self._read_one("SELECT blocks FROM MediaUsage WHERE id = 0")[0]
        return int(pages) * int(page_size) + int(blocks) * bans.BLOCK_BYTES

    def entry_count(self) -> int:
        # diskcache's triggers keep this count: no scan of a million-row table per scrape.
        return int(self._read_one("SELECT value FROM Settings WHERE key = 'count'")[0])

    def sweep_temp(self) -> int:
        """Remove temp files left by processes that no longer run (a crashed fill's)."""
        removed = self.claims.sweep()
        try:
            entries = list(os.scandir(self.tmp_dir))
        except OSError:
            return 0
        for entry in entries:
            pid_text = entry.name.split(".", 1)[0]
            # Only pid-named files are ours to judge here; <sha>.part/.meta belong to fills
            # and are judged by their claim lock (Claims.sweep, above).
            if not pid_text.isdigit() or _alive(int(pid_text)):
                continue
            try:
                os.unlink(entry.path)
                log.debug("swept %s (its process is gone)", entry.name)
                removed += 1
            except OSError:
                continue
        return removed

    def write_problem(self) -> str | None:
        """Why a fill could not be written now (None: it could): a write of real bytes beside
        the fills' temp files, since a full disk still lets an empty file be created."""
        probe = self.tmp_dir / f".probe-{os.getpid()}"
        try:
            with open(probe, "wb") as f:
                f.write(bytes(PROBE_BYTES))
            return None
        except OSError as exc:
            return f"cache directory cannot be written ({exc.strerror or exc}): {self.directory}"
        finally:
            with contextlib.suppress(OSError):
                probe.unlink()

    def writable(self) -> bool:
        return self.write_problem() is None

    def close(self) -> None:
        with contextlib.suppress(StoreError):
            self.flush_access_times()
        with self._lock:
            self._reader.close()
        self._ban_signal.close()
        self.cache.close()

    def destroy(self) -> None:
        """Remove the whole cache directory (tests and `mediaproxy cache clear`)."""
        self.close()
        shutil.rmtree(self.directory, ignore_errors=True)
