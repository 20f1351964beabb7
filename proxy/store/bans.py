"""Bans (pending purges) and tags, in tables beside diskcache's own in `cache.db`.

Rule: a ban is one row, written in the same SQLite database as the entries, so a fill's
commit and a ban are serialised by SQLite: `Store.commit` refuses, in its own transaction, an
entry whose response predates a matching hard ban. A ban is retired only after its sweep has
deleted every matching row and no fill that started before it is still running.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from typing import Any

from proxy.policy.bans import Ban, BanIndex, BanKind

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
)

REFRESH_SECONDS = 0.0  # check the version on every lookup: a purge is visible at once


def row_to_ban(row: Iterable[Any]) -> Ban:
    ban_id, kind, value, created, soft = row
    return Ban(int(ban_id), BanKind(kind), str(value), float(created), bool(soft))


class BanCache:
    """This process's view of the ban table, reloaded when its version moves."""

    def __init__(self, reader: sqlite3.Connection) -> None:
        self._reader = reader
        self._version = -1
        self._checked = 0.0
        self.index = BanIndex()

    def current(self, lock: Any) -> BanIndex:
        now = time.monotonic()
        if now - self._checked < REFRESH_SECONDS:
            return self.index
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

    def invalidate(self) -> None:
        self._checked = 0.0
