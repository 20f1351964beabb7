"""SQLite storage of media items and their revisions; synchronous, so call it from a worker thread.

Rule: a body is never held in memory whole. It is stored as segments of at most SEGMENT_BYTES,
each written and read in place with `zeroblob()` + `Connection.blobopen()`, and a revision becomes
visible only when the transaction that wrote all of its bytes commits.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum, StrEnum
from pathlib import Path

# SQLite caps one blob at SQLITE_MAX_LENGTH (1e9 bytes as usually built), so multi-GB bodies are
# split. Short segments also keep seeks cheap: blob I/O walks a segment's overflow-page chain from
# its start, ~2 ms for 16 MiB here against ~60 ms for 512 MiB.
SEGMENT_BYTES = 16 << 20
# Set before the first table exists (it cannot change once the database is in WAL mode): 16 KiB
# pages halve the overflow chains of 4 KiB pages; larger gave nothing more when measured.
PAGE_SIZE_BYTES = 16384
BUSY_TIMEOUT_SECONDS = 30.0
MAX_IDLE_CONNECTIONS = 8
WAL_LIMIT_BYTES = 64 << 20

_SCHEMA = """
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


class Access(StrEnum):
    """The access policy of an item, sent to clients as `X-Media-Access`."""

    PUBLIC = "public"
    PROTECTED = "protected"


class Unset(Enum):
    """Marks an optional update argument as "leave unchanged" where None means "reset"."""

    UNSET = "unset"


UNSET = Unset.UNSET


@dataclass(frozen=True, slots=True)
class Revision:
    """One published revision of an item, with the item's current access and cache policy."""

    id: int
    path: str
    revision: int
    content_type: str
    size_bytes: int
    sha256: str
    last_modified: int  # unix seconds
    access: Access
    cache_control: str | None  # None: the application's default

    @property
    def etag(self) -> str:
        # Strong: the revision number alone is unique per path, the digest makes it self-checking.
        return f'"r{self.revision}-{self.sha256[:16]}"'


@dataclass(frozen=True, slots=True)
class Published:
    revision: Revision
    created: bool  # no live revision existed before (new or previously deleted item)
    superseded_id: int | None  # the revision row this publish replaced


@dataclass(frozen=True, slots=True)
class StoredRevision:
    """A revision row as stored, live or superseded (for inspection and tests)."""

    id: int
    revision: int
    superseded: bool


class StoreError(Exception):
    """A request the store refuses (the message is fit for a client)."""


def _connect(path: Path) -> sqlite3.Connection:
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


class _ConnectionPool:
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
        return _connect(self._path)

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


_REVISION_COLUMNS = (
    "r.id, r.path, r.revision, r.content_type, r.size, r.sha256, r.last_modified,"
    " i.access, i.cache_control"
)


def _revision_from_row(row: tuple[object, ...]) -> Revision:
    rid, path, revision, content_type, size, sha256, last_modified, access, cache_control = row
    assert isinstance(rid, int) and isinstance(path, str) and isinstance(revision, int)
    assert isinstance(content_type, str) and isinstance(size, int) and isinstance(sha256, str)
    assert isinstance(last_modified, int) and isinstance(access, str)
    assert cache_control is None or isinstance(cache_control, str)
    return Revision(
        id=rid,
        path=path,
        revision=revision,
        content_type=content_type,
        size_bytes=size,
        sha256=sha256,
        last_modified=last_modified,
        access=Access(access),
        cache_control=cache_control,
    )


class MediaStore:
    """The media database. Every method blocks; none may run on the event loop."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock
        self._pool = _ConnectionPool(path)
        with self._pool.connection() as conn:
            conn.execute(f"PRAGMA page_size = {PAGE_SIZE_BYTES}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.executescript(_SCHEMA)

    def close(self) -> None:
        self._pool.close()

    def is_empty(self) -> bool:
        with self._pool.connection() as conn:
            return conn.execute("SELECT 1 FROM items LIMIT 1").fetchone() is None

    def lookup(self, path: str) -> Revision | None:
        """The live revision of `path`, or None when absent or deleted."""
        with self._pool.connection() as conn:
            row = conn.execute(
                f"SELECT {_REVISION_COLUMNS} FROM items i JOIN revisions r ON r.id = i.current_id"
                " WHERE i.path = ? AND i.deleted = 0",
                (path,),
            ).fetchone()
        return None if row is None else _revision_from_row(row)

    def history(self, path: str) -> list[StoredRevision]:
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT id, revision, superseded FROM revisions WHERE path = ? ORDER BY id", (path,)
            ).fetchall()
        return [StoredRevision(id=r[0], revision=r[1], superseded=bool(r[2])) for r in rows]

    def segment_count(self) -> int:
        with self._pool.connection() as conn:
            row = conn.execute("SELECT count(*) FROM segments").fetchone()
        return int(row[0])

    def begin_publish(
        self,
        path: str,
        size_bytes: int,
        *,
        content_type: str,
        access: Access | None,
        cache_control: str | Unset | None = UNSET,
    ) -> PendingPublish:
        """Start a revision of `size_bytes`; the caller writes exactly that many, then commits.

        `access` None and `cache_control` UNSET keep the item's current values (public and the
        default for a new item). The write transaction stays open until commit or abort, so the
        caller must serialise publishes (and other writes) itself.
        """
        if size_bytes < 0:
            raise StoreError("size must not be negative")
        conn = self._pool.acquire()
        try:
            conn.execute("BEGIN IMMEDIATE")
            item = conn.execute(
                "SELECT current_id, last_revision, access, cache_control FROM items WHERE path = ?",
                (path,),
            ).fetchone()
            if item is None:
                previous_id, last_revision, old_access, old_cache_control = None, 0, "public", None
            else:
                previous_id, last_revision, old_access, old_cache_control = item
            cur = conn.execute(
                "INSERT INTO revisions (path, revision, content_type, size, sha256, last_modified)"
                " VALUES (?, ?, ?, ?, '', 0)",
                (path, last_revision + 1, content_type, size_bytes),
            )
            assert cur.lastrowid is not None
            return PendingPublish(
                store=self,
                conn=conn,
                revision=Revision(
                    id=cur.lastrowid,
                    path=path,
                    revision=last_revision + 1,
                    content_type=content_type,
                    size_bytes=size_bytes,
                    sha256="",
                    last_modified=0,
                    access=access if access is not None else Access(old_access),
                    cache_control=(
                        old_cache_control if isinstance(cache_control, Unset) else cache_control
                    ),
                ),
                previous_id=previous_id,
                item_exists=item is not None,
            )
        except BaseException:
            self._pool.release(conn)
            raise

    def publish(
        self,
        path: str,
        size_bytes: int,
        chunks: Iterable[bytes],
        *,
        content_type: str,
        access: Access | None = None,
        cache_control: str | Unset | None = UNSET,
    ) -> Published:
        """Publish from an iterable of chunks in one call (seeding, spooled uploads)."""
        pending = self.begin_publish(
            path, size_bytes, content_type=content_type, access=access, cache_control=cache_control
        )
        try:
            for chunk in chunks:
                pending.write(chunk)
            return pending.commit()
        finally:
            pending.abort()  # no-op after a commit

    def delete(self, path: str) -> int | None:
        """Withdraw the live revision of `path`; returns its id (now superseded) or None."""
        with self._pool.connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute(
                "SELECT current_id FROM items WHERE path = ? AND deleted = 0", (path,)
            ).fetchone()
            if row is None or row[0] is None:
                conn.rollback()
                return None
            conn.execute("UPDATE items SET deleted = 1, current_id = NULL WHERE path = ?", (path,))
            conn.execute("UPDATE revisions SET superseded = 1 WHERE id = ?", (row[0],))
            conn.commit()
            return int(row[0])

    def update_item(
        self,
        path: str,
        *,
        access: Access | None = None,
        cache_control: str | Unset | None = UNSET,
    ) -> Revision | None:
        """Change the policy of a live item without a new revision; None when absent."""
        with self._pool.connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            exists = conn.execute(
                "SELECT 1 FROM items WHERE path = ? AND deleted = 0", (path,)
            ).fetchone()
            if exists is None:
                conn.rollback()
                return None
            if access is not None:
                conn.execute("UPDATE items SET access = ? WHERE path = ?", (access.value, path))
            if not isinstance(cache_control, Unset):
                conn.execute(
                    "UPDATE items SET cache_control = ? WHERE path = ?", (cache_control, path)
                )
            conn.commit()
        return self.lookup(path)

    def drop_revision(self, revision_id: int) -> bool:
        """Delete a superseded revision and its body; a live revision is never touched."""
        with self._pool.connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "DELETE FROM segments WHERE revision_id IN"
                " (SELECT id FROM revisions WHERE id = ? AND superseded = 1)",
                (revision_id,),
            )
            cur = conn.execute(
                "DELETE FROM revisions WHERE id = ? AND superseded = 1", (revision_id,)
            )
            conn.commit()
            return cur.rowcount > 0

    def drop_all_superseded(self) -> int:
        """At start-up no download runs, so every superseded revision can go."""
        with self._pool.connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(
                "DELETE FROM segments WHERE revision_id IN"
                " (SELECT id FROM revisions WHERE superseded = 1)"
            )
            cur = conn.execute("DELETE FROM revisions WHERE superseded = 1")
            conn.commit()
            return cur.rowcount

    def open_body(self, revision_id: int) -> BodyReader:
        conn = self._pool.acquire()
        try:
            rows = conn.execute(
                "SELECT id, length(data) FROM segments WHERE revision_id = ? ORDER BY seq",
                (revision_id,),
            ).fetchall()
        except BaseException:
            self._pool.release(conn)
            raise
        return BodyReader(self._pool, conn, [(int(r[0]), int(r[1])) for r in rows])

    def _now(self) -> int:
        return int(self._clock())


class PendingPublish:
    """A revision being written inside one open write transaction."""

    def __init__(
        self,
        *,
        store: MediaStore,
        conn: sqlite3.Connection,
        revision: Revision,
        previous_id: int | None,
        item_exists: bool,
    ) -> None:
        self._store = store
        self._conn: sqlite3.Connection | None = conn
        self._revision = revision
        self._previous_id = previous_id
        self._item_exists = item_exists
        self._hash = hashlib.sha256()
        self._written = 0
        self._seq = 0
        self._blob: sqlite3.Blob | None = None
        self._segment_left = 0

    @property
    def written_bytes(self) -> int:
        return self._written

    def write(self, data: bytes) -> None:
        conn = self._require_open()
        if self._written + len(data) > self._revision.size_bytes:
            raise StoreError(f"body longer than the declared {self._revision.size_bytes} bytes")
        self._hash.update(data)
        view = memoryview(data)
        while view:
            if self._blob is None or self._segment_left == 0:
                self._next_segment(conn)
            assert self._blob is not None
            n = min(len(view), self._segment_left)
            self._blob.write(view[:n])
            self._segment_left -= n
            self._written += n  # before the next segment is sized from it
            view = view[n:]

    def _next_segment(self, conn: sqlite3.Connection) -> None:
        if self._blob is not None:
            self._blob.close()
        size = min(SEGMENT_BYTES, self._revision.size_bytes - self._written)
        cur = conn.execute(
            "INSERT INTO segments (revision_id, seq, data) VALUES (?, ?, zeroblob(?))",
            (self._revision.id, self._seq, size),
        )
        assert cur.lastrowid is not None
        self._seq += 1
        self._blob = conn.blobopen("segments", "data", cur.lastrowid)
        self._segment_left = size

    def commit(self) -> Published:
        conn = self._require_open()
        if self._written != self._revision.size_bytes:
            raise StoreError(
                f"body ended after {self._written} of {self._revision.size_bytes} bytes"
            )
        if self._blob is not None:
            self._blob.close()
            self._blob = None
        rev = self._revision
        sha256 = self._hash.hexdigest()
        now = self._store._now()
        conn.execute(
            "UPDATE revisions SET sha256 = ?, last_modified = ? WHERE id = ?", (sha256, now, rev.id)
        )
        conn.execute(
            "INSERT INTO items (path, current_id, last_revision, access, cache_control, deleted)"
            " VALUES (?, ?, ?, ?, ?, 0)"
            " ON CONFLICT (path) DO UPDATE SET current_id = excluded.current_id,"
            " last_revision = excluded.last_revision, access = excluded.access,"
            " cache_control = excluded.cache_control, deleted = 0",
            (rev.path, rev.id, rev.revision, rev.access.value, rev.cache_control),
        )
        if self._previous_id is not None:
            conn.execute("UPDATE revisions SET superseded = 1 WHERE id = ?", (self._previous_id,))
        conn.commit()
        self._finish()
        return Published(
            revision=Revision(
                id=rev.id,
                path=rev.path,
                revision=rev.revision,
                content_type=rev.content_type,
                size_bytes=rev.size_bytes,
                sha256=sha256,
                last_modified=now,
                access=rev.access,
                cache_control=rev.cache_control,
            ),
            created=self._previous_id is None,
            superseded_id=self._previous_id,
        )

    def abort(self) -> None:
        """Roll back everything written; safe to call twice or after a commit."""
        if self._conn is None:
            return
        try:
            if self._blob is not None:
                self._blob.close()
                self._blob = None
            if self._conn.in_transaction:
                self._conn.rollback()
        finally:
            self._finish()

    def _finish(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            self._store._pool.release(conn)

    def _require_open(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("this publish is already finished")
        return self._conn


class BodyReader:
    """Reads one revision's body at any offset, keeping the current segment's blob open."""

    def __init__(
        self, pool: _ConnectionPool, conn: sqlite3.Connection, segments: list[tuple[int, int]]
    ) -> None:
        self._pool = pool
        self._conn: sqlite3.Connection | None = conn
        self._segments = segments  # (segment row id, length), in body order
        self._blob: sqlite3.Blob | None = None
        self._blob_index = -1

    def read(self, offset: int, size: int) -> bytes:
        """Up to `size` bytes from `offset`; fewer only at the end of the body."""
        if self._conn is None:
            raise StoreError("body reader is closed")
        parts: list[bytes] = []
        start = 0
        for index, (segment_id, length) in enumerate(self._segments):
            end = start + length
            if size > 0 and offset < end and offset + size > start:
                if index != self._blob_index:
                    if self._blob is not None:
                        self._blob.close()
                    self._blob = self._conn.blobopen("segments", "data", segment_id, readonly=True)
                    self._blob_index = index
                assert self._blob is not None
                within = offset - start
                take = min(size, length - within)
                self._blob.seek(within)
                data = self._blob.read(take)
                parts.append(data)
                offset += len(data)
                size -= len(data)
            start = end
        return b"".join(parts)

    def close(self) -> None:
        if self._blob is not None:
            self._blob.close()
            self._blob = None
        conn, self._conn = self._conn, None
        if conn is not None:
            self._pool.release(conn)
