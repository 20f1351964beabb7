"""Media bodies as segments: written in place inside one publish transaction, read by offset.

Rule: a body is never held in memory whole. It is stored as segments of at most SEGMENT_BYTES,
each written and read in place with `zeroblob()` + `Connection.blobopen()`, and a revision becomes
visible only when the transaction that wrote all of its bytes commits.
"""

from __future__ import annotations

import hashlib
import sqlite3
from typing import TYPE_CHECKING

from origin.connections import ConnectionPool
from origin.records import Published, Revision, StoreError

if TYPE_CHECKING:
    from origin.db import MediaStore

# SQLite caps one blob at SQLITE_MAX_LENGTH (1e9 bytes as usually built), so multi-GB bodies are
# split. Short segments also keep seeks cheap: blob I/O walks a segment's overflow-page chain from
# its start, ~2 ms for 16 MiB here against ~60 ms for 512 MiB.
SEGMENT_BYTES = 16 << 20


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
        self, pool: ConnectionPool, conn: sqlite3.Connection, segments: list[tuple[int, int]]
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
