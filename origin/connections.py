"""SQLite connections to the media database: the schema, the per-connection settings, and a
small pool shared by the worker threads (one thread at a time per connection).

Rule: every connection runs with our own transactions (isolation_level=None), WAL, and a bounded
journal; nothing here knows about items or bodies.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from origin.records import StoreError

# Set before the first table exists (it cannot change once the database is in WAL mode): 16 KiB
# pages halve the overflow chains of 4 KiB pages; larger gave nothing more when measured.
PAGE_SIZE_BYTES = 16384
BUSY_TIMEOUT_SECONDS = 30.0
MAX_IDLE_CONNECTIONS = 8
WAL_LIMIT_BYTES = 64 << 20

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    path TEXT PRIMARY KEY,
    current_id INTEGER,               -- revisions.id being served; NULL once deleted
    last_revision INTEGER NOT NULL,   -- never decreases, so no ETag is reused for other bytes
    access TEXT NOT NULL CHECK (access IN ('public', 'protected')),
    cache_control TEXT,               -- NULL: the application's default
    deleted INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS revisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: in-memory reader counts key on it
    path TEXT NOT NULL,
    revision INTEGER NOT NULL,
    content_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    last_modified INTEGER NOT NULL,   -- unix seconds of the publish
    superseded INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS revisions_by_path ON revisions (path);
-- Bodies live apart from the metadata: SQLite rewrites a whole record on UPDATE, blob included.
CREATE TABLE IF NOT EXISTS segments (
    id INTEGER PRIMARY KEY,
    revision_id INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    data BLOB NOT NULL,
    UNIQUE (revision_id, seq)
);
"""


def connect(path: Path) -> sqlite3.Connection:
    # isolation_level=None: we issue BEGIN/COMMIT ourselves. check_same_thread=False: connections
    # come from a pool shared by the worker threads, one thread at a time.
    conn = sqlite3.connect(
        str(path), timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None, check_same_thread=False
    )
    # NORMAL is durable across application crashes in WAL mode; only power loss may drop the
    # last commits, which a re-upload repairs.
    conn.execute("PRAGMA synchronous = NORMAL")
    # A multi-GB publish passes through the WAL; give that disk space back once it is
    # checkpointed (a per-connection setting).
    conn.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT_BYTES}")
    return conn


class ConnectionPool:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._idle: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False

    def acquire(self) -> sqlite3.Connection:
        with self._lock:
            if self._closed:
                raise StoreError("the media store is closed")
            if self._idle:
                return self._idle.pop()
        return connect(self._path)

    def release(self, conn: sqlite3.Connection) -> None:
        if conn.in_transaction:
            conn.rollback()
        with self._lock:
            if not self._closed and len(self._idle) < MAX_IDLE_CONNECTIONS:
                self._idle.append(conn)
                return
        conn.close()

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        conn = self.acquire()
        try:
            yield conn
        finally:
            self.release(conn)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
