"""Purges applied to the store: recording bans, sweeping the entries they cover, retiring them.

Rule: a ban hides matching entries at once (readers consult this process's view of the ban
table, bans.py) and is then swept in the background, one bounded batch at a time, by whichever
process holds the ban's job claim. A ban is retired only after its sweep is complete, it is old
enough for the workers' memory tiers, and no fill that started before it is still running.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import diskcache

from proxy.errors import StoreError
from proxy.policy.bans import Ban, BanIndex, BanKind
from proxy.store import bans
from proxy.store.claims import Claims
from proxy.store.keysignal import KeySignal
from proxy.store.meta import decode_meta, encode_meta, invalidated

MAX_SWEEP_BATCHES = 400  # per ban per maintenance tick (x 500 rows)


class BanWork:
    def __init__(self, cache: diskcache.Cache, reader: sqlite3.Connection,
                 read_lock: threading.Lock, claims: Claims, directory: Path,
                 keys: KeySignal | None = None) -> None:
        self.cache = cache
        # Per-key change signals: a swept key's memory copies must die even if the ban
        # retires before they are next judged against it (a copy read just before the sweep).
        self.keys = keys
        self.claims = claims
        self._read_lock = read_lock
        self.signal = bans.BanSignal(directory / bans.SIGNAL_FILE)
        self.view = bans.BanCache(reader, self.signal)

    def current(self) -> BanIndex:
        try:
            return self.view.current(self._read_lock)
        except sqlite3.Error as exc:
            raise StoreError(f"ban read failed: {exc}") from exc

    def covering(self, key: str, tags: tuple[str, ...], response_time: float) -> Ban | None:
        """Inside a write transaction: the ban made after a response that covers its entry."""
        rows = self.cache._sql(
            "SELECT id, kind, value, created, soft FROM MediaBans WHERE created >= ?",
            (response_time,),
        ).fetchall()
        return BanIndex.build(bans.row_to_ban(r) for r in rows).match(key, tags, response_time)

    def add(self, kind: BanKind, value: str, *, soft: bool, now: float) -> Ban:
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
        self.view.changed()
        return Ban(ban_id, kind, value, now, soft)

    def sweep(self, ban: Ban, batch: int = 500) -> int:
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
                        meta = invalidated(decode_meta(bytes(value)))
                        self.cache._sql("UPDATE Cache SET value = ? WHERE rowid = ?",
                                        (sqlite3.Binary(encode_meta(meta)), rowid))
                    else:
                        self.cache.delete(key, retry=True)
                        self.cache._sql("DELETE FROM MediaTags WHERE key = ?", (key,))
            if self.keys is not None:
                for _, key, _ in rows:
                    self.keys.bump(key)
            return len(rows)
        except (OSError, sqlite3.Error, diskcache.Timeout, ValueError) as exc:
            raise StoreError(f"ban sweep failed: {exc}") from exc

    def retire(self, ban: Ban) -> None:
        try:
            with self.cache.transact(retry=True):
                self.cache._sql("DELETE FROM MediaBans WHERE id = ?", (ban.id,))
                self.cache._sql("UPDATE MediaBanVersion SET version = version + 1 WHERE id = 0")
        except (OSError, sqlite3.Error, diskcache.Timeout) as exc:
            raise StoreError(f"ban retire failed: {exc}") from exc
        self.view.changed()

    def sweep_all(self, min_ban_age_seconds: float = 0.0, now: float | None = None) -> int:
        """Sweep every active ban that no other process is sweeping; retire finished ones.
        Runs in the background; a sweeper that dies leaves its ban to the next one.

        A ban is retired no sooner than `min_ban_age_seconds` after it was made: workers'
        memory tiers may hold copies loaded just before it, for up to their TTL."""
        now = time.time() if now is None else now
        self.view.refresh()
        handled = 0
        for ban in list(self.current().all):
            job = self.claims.try_job(f"ban-{ban.id}")
            if job is None:
                continue
            try:
                for _ in range(MAX_SWEEP_BATCHES):  # bounded: the next call continues
                    n = self.sweep(ban)
                    handled += n
                    if n == 0:
                        break
                else:
                    continue  # not finished: not retired yet
                old_enough = now - ban.created >= min_ban_age_seconds
                if old_enough and not self._fill_predates(ban):
                    self.retire(ban)
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
